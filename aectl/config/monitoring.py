"""The metrics `trainer.monitor` may name, per model kind and noise, and the direction each is
optimized in: what a config may ask for, checked before anything runs."""

from aectl.config.errors import ConfigError
from aectl.config.schema import VARIATIONAL_KINDS

SPLITS = ("val", "train")  # never test: choosing hyperparameters on it would leak it into the result
LOWER_IS_BETTER = ("loss", "recon", "mse", "neg_elbo", "fvu", "nll")
HIGHER_IS_BETTER = ("psnr", "psnr_denoised", "active_units", "explained_variance")
MONITORS = tuple(f"{s}/{m}" for s in SPLITS for m in (*LOWER_IS_BETTER[:-1], *HIGHER_IS_BETTER))


def check_monitor(name: str, model_kind: str, noise_kind: str) -> None:
    """Refuse a monitor that is not a metric, or one this run will not compute."""
    if name not in MONITORS:
        raise ConfigError("trainer.monitor", name, "one of " + ", ".join(MONITORS))
    metric = name.split("/", 1)[1]
    if metric in ("neg_elbo", "active_units") and model_kind not in VARIATIONAL_KINDS:
        raise ConfigError("trainer.monitor", name, f"a metric of this model ({metric} is computed for model="
                          + ", ".join(VARIATIONAL_KINDS) + " only)")
    if metric in ("fvu", "explained_variance") and model_kind != "sae":
        raise ConfigError("trainer.monitor", name, f"a metric of this model ({metric} is computed for model=sae only)")
    if metric == "psnr_denoised" and noise_kind == "none":
        raise ConfigError("trainer.monitor", name, "a metric of this run (psnr_denoised needs a noise other than none)")


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
