"""`trainer.monitor`: the one number a run is judged by. A name <split>/<metric> of the run's
final metrics (metrics.json: of the last weights, or of best.pt when early stopping ended the
run), and whether smaller is better. A list of names is a multi-objective search (one
direction per metric, in that order); its FIRST name picks best.pt, early stopping and the plateau lr.
It is the objective of a hyperparameter search (hydra/sweeper=aectl_optuna), and its metric on
the validation split picks best.pt and drives early stopping and the plateau lr schedule."""

import math

from aectl.config import VARIATIONAL_KINDS
from aectl.config.errors import ConfigError

SPLITS = ("val", "train")  # never test: choosing hyperparameters on it would leak it into the result
LOWER_IS_BETTER = ("loss", "recon", "mse", "neg_elbo", "kl", "nll")
HIGHER_IS_BETTER = ("psnr", "psnr_denoised", "active_units")
MONITORS = tuple(f"{s}/{m}" for s in SPLITS for m in (*LOWER_IS_BETTER[:-1], *HIGHER_IS_BETTER))


def check_monitor(name: str, model_kind: str, noise_kind: str) -> None:
    """Refuse a monitor that is not a metric, or one this run will not compute."""
    if name not in MONITORS:
        raise ConfigError("trainer.monitor", name, "one of " + ", ".join(MONITORS))
    metric = name.split("/", 1)[1]
    if metric in ("neg_elbo", "kl", "active_units") and model_kind not in VARIATIONAL_KINDS:
        raise ConfigError("trainer.monitor", name, f"a metric of this model ({metric} is computed for model="
                          + ", ".join(VARIATIONAL_KINDS) + " only)")
    if metric == "psnr_denoised" and noise_kind == "none":
        raise ConfigError("trainer.monitor", name, "a metric of this run (psnr_denoised needs a noise other than none)")


def names(monitor) -> list[str]:
    """trainer.monitor as a list of metric names (one name, or a multi-objective list)."""
    return [monitor] if isinstance(monitor, str) else list(monitor)


def primary(monitor) -> str:
    """The metric the run itself watches (best.pt, early stopping, plateau lr): a list's first."""
    return names(monitor)[0]


def check_monitors(monitor, model_kind: str, noise_kind: str) -> None:
    given = names(monitor)
    if not given or len(set(given)) != len(given):
        raise ConfigError("trainer.monitor", monitor, "a metric name, or a list of different metric names")
    for name in given:
        check_monitor(name, model_kind, noise_kind)


def check_monitor_data(name: str, known_range: tuple[float, float] | None) -> None:
    """Refuse a PSNR monitor on data without a known value range (a standardised or unscaled
    table): PSNR = 10·log10(MAX²/MSE) needs MAX, so validation computes none."""
    metric = name.split("/", 1)[1]
    if metric.startswith("psnr") and known_range is None:
        raise ConfigError("trainer.monitor", name, f"a metric of this data ({metric} needs a known value range: "
                          "images, or a table with dataset.scale=minmax); e.g. val/loss or val/mse")


def direction(name: str) -> str:
    """'minimize' or 'maximize': the direction a search over `name` optimizes."""
    metric = name.split("/", 1)[-1]
    if metric in LOWER_IS_BETTER:
        return "minimize"
    if metric in HIGHER_IS_BETTER:
        return "maximize"
    raise ConfigError("trainer.monitor", name, "one of " + ", ".join(MONITORS))


def objective(metrics: dict, name: str) -> float:
    """The value of monitor `name` in a run's final metrics; an error if missing or not finite,
    so a search records the trial as failed instead of ranking a NaN."""
    split, metric = name.split("/", 1)
    value = metrics.get(split, {}).get(metric)
    if value is None:
        raise ValueError(f"trainer.monitor={name}: the run has no such metric "
                         f"(it has {', '.join(split + '/' + k for k in metrics.get(split, {}))})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"trainer.monitor={name}: the run ended with a non-finite value ({value})")
    return value


def watched(name: str) -> str:
    """The metric each epoch's validation watches for `name`: its metric on the val split (a
    train/ monitor too: a checkpoint chosen on the data it trained on would reward overfitting)."""
    return "val/" + name.split("/", 1)[1]


def epoch_score(val: dict, name: str) -> float:
    """This epoch's value of watched(name) from its validation metrics `val`, negated when higher
    is better, so that best.pt, early stopping and the plateau schedule all look for a minimum."""
    value = float(val[name.split("/", 1)[1]])
    return value if direction(name) == "minimize" else -value


def score_value(score: float, name: str) -> float:
    """The metric's own value of an epoch_score (undoes the negation)."""
    return score if direction(name) == "minimize" else -score
