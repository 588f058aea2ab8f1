"""Is a search's objective the same quantity in every trial? `val/loss` (or `train/loss`) is the
training objective itself: recon + β·KL for a VAE, recon + λ·penalty for a regularised AE, the
reconstruction of noisy inputs for a DAE, −L_k for an IWAE. A search that sweeps a key which
changes that definition ranks trials on different quantities and rewards the cheapest objective
by construction (a smaller β, a lighter penalty, less noise, a larger k always wins). So such a
search is refused unless it monitors a metric the swept keys leave defined the same way:
val/neg_elbo (−ELBO at β = 1), val/mse, val/psnr (of the clean input), or several of them as a
front. The same holds for metrics measured on the noisy input (recon, psnr_denoised) when the
noise is swept."""

from aectl.config.errors import ConfigError
from aectl.config.monitoring import names

# Keys (a swept key equal to one of these or under it) that change what a monitored metric is.
# loss: β and its schedule, the penalty and its weights, the noise a DAE's loss is measured under, and
# the model's family, likelihood, σ, IWAE k and VQ-VAE commitment/codebook update (ranking.objective_key's
# list). recon: measured from the noisy input, in the likelihood's units. psnr_denoised: at the
# trial's own noise level, so less noise is easier to undo. mse, psnr, neg_elbo and active_units are
# of the clean input and β-free: no swept key redefines them.
LOSS_KEYS = ("beta", "beta_schedule", "penalty", "noise", "model.kind", "model.likelihood", "model.sigma",
             "model.k", "model.commitment", "model.ema",
             # an sae's loss: its activation's penalty and the AuxK term, each with its weight
             "model.activation", "model.l1_coefficient", "model.l0_coefficient", "model.aux_coefficient",
             "model.k_aux")
DEFINED_BY = {"loss": LOSS_KEYS, "recon": ("noise", "model.likelihood", "model.sigma"), "psnr_denoised": ("noise",)}

BETA_FREE = "a metric whose definition the swept keys leave alone, e.g. val/neg_elbo, val/mse, val/psnr " \
            "(of the clean input), or a list of them"


def defining_keys(metric: str, swept: list[str]) -> list[str]:
    """The swept keys that change the definition of `metric` (e.g. val/loss)."""
    keys = DEFINED_BY.get(metric.split("/", 1)[-1], ())
    return [k for k in swept if any(k == d or k.startswith(d + ".") for d in keys)]


def check_search_objective(monitor, swept: list[str]) -> None:
    """Refuse, in one line, a search monitoring a metric while sweeping a key that redefines it.
    `monitor`: trainer.monitor (a name or a list of names); `swept`: the search space's keys."""
    metrics = names(monitor)
    for metric in metrics:
        keys = defining_keys(metric, swept)
        if keys:
            value = metrics[0] if len(metrics) == 1 else metrics
            raise ConfigError("trainer.monitor", value,
                              f"{BETA_FREE} (the search sweeps {', '.join(keys)}, which changes what {metric} "
                              f"measures: the trials would be ranked on different quantities)")
