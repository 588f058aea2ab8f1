"""The metrics `trainer.monitor` may name, per model kind and noise, and the direction each is
optimized in: what a config may ask for, checked before anything runs. A list of names is a
multi-objective search (one direction per metric, in that order); its FIRST name is the one the
run itself watches (best.pt, early stopping, the plateau lr)."""

from aectl.config.errors import ConfigError
from aectl.config.schema import VARIATIONAL_KINDS

SPLITS = ("val", "train")  # never test: choosing hyperparameters on it would leak it into the result
LOWER_IS_BETTER = ("loss", "recon", "mse", "neg_elbo", "kl", "fvu", "l0", "nll")
HIGHER_IS_BETTER = ("psnr", "psnr_denoised", "active_units", "explained_variance")
MONITORS = tuple(f"{s}/{m}" for s in SPLITS for m in (*LOWER_IS_BETTER[:-1], *HIGHER_IS_BETTER))


def check_monitor(name: str, model_kind: str, noise_kind: str) -> None:
    """Refuse a monitor that is not a metric, or one this run will not compute."""
    if name not in MONITORS:
        raise ConfigError("trainer.monitor", name, "one of " + ", ".join(MONITORS))
    metric = name.split("/", 1)[1]
    if metric in ("neg_elbo", "kl", "active_units") and model_kind not in VARIATIONAL_KINDS:
        raise ConfigError("trainer.monitor", name, f"a metric of this model ({metric} is computed for model="
                          + ", ".join(VARIATIONAL_KINDS) + " only)")
    if metric in ("fvu", "explained_variance", "l0") and model_kind != "sae":
        raise ConfigError("trainer.monitor", name, f"a metric of this model ({metric} is computed for model=sae only)")
    if metric == "psnr_denoised" and noise_kind == "none":
        raise ConfigError("trainer.monitor", name, "a metric of this run (psnr_denoised needs a noise other than none)")


def names(monitor) -> list[str]:
    """trainer.monitor as a list of metric names (one name, or a multi-objective list)."""
    return [monitor] if isinstance(monitor, str) else list(monitor)


def primary(monitor) -> str:
    """The metric the run itself watches (best.pt, early stopping, plateau lr): a list's first."""
    return names(monitor)[0]


def check_monitors(monitor, model_kind: str, noise_kind: str) -> None:
    """Refuse an empty or repeating list, and each name check_monitor refuses."""
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
