"""`trainer.monitor`: the one number a run is judged by, as the objective of a hyperparameter
search (hydra/sweeper=aectl_optuna). A name <split>/<metric> of the run's final metrics
(metrics.json, computed on the best checkpoint), and whether smaller is better."""

import math

from aectl.config import VARIATIONAL_KINDS
from aectl.errors import ConfigError

SPLITS = ("val", "train")  # never test: choosing hyperparameters on it would leak it into the result
LOWER_IS_BETTER = ("loss", "recon", "mse", "neg_elbo", "nll")
HIGHER_IS_BETTER = ("psnr", "psnr_denoised", "active_units")
MONITORS = tuple(f"{s}/{m}" for s in SPLITS for m in (*LOWER_IS_BETTER[:-1], *HIGHER_IS_BETTER))


def check_monitor(name: str, model_kind: str, noise_kind: str) -> None:
    """Refuse a monitor that is not a metric, or one this run will not compute."""
    if name not in MONITORS:
        raise ConfigError("trainer.monitor", name, "one of " + ", ".join(MONITORS))
    metric = name.split("/", 1)[1]
    if metric == "neg_elbo" and model_kind not in VARIATIONAL_KINDS:
        raise ConfigError("trainer.monitor", name, "a metric of this model (neg_elbo is computed for model="
                          + ", ".join(VARIATIONAL_KINDS) + " only)")
    if metric == "psnr_denoised" and noise_kind == "none":
        raise ConfigError("trainer.monitor", name, "a metric of this run (psnr_denoised needs a noise other than none)")


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
