"""The fields of the variational models' prior (model.prior, model.pseudo_inputs) and of the
two-stochastic-layer model (model.latent_dims, model.top_hidden_dims): ranged where they apply,
refused where they would do nothing."""

from aectl.config.errors import check as _check
from aectl.config.schema import PRIORS, ModelConfig, TrainConfig

VAMP_KINDS = ("vae", "iwae")


def validate_prior(cfg: TrainConfig) -> None:
    m = cfg.model
    _check("model.prior", m.prior, m.prior in PRIORS, "one of " + ", ".join(PRIORS))
    if m.prior == "gaussian":
        _check("model.pseudo_inputs", m.pseudo_inputs, m.pseudo_inputs == ModelConfig.pseudo_inputs,
               "unset unless model.prior=vamp (the pseudo-inputs of the VampPrior)")
        return
    _check("model.prior", m.prior, m.kind in VAMP_KINDS,
           f"gaussian for model={m.kind}: the VampPrior is for model=vae and model=iwae (a cvae's pseudo-inputs "
           "would need labels; model=hvae's prior is p(z2) p(z1|z2))")
    _check("model.pseudo_inputs", m.pseudo_inputs, isinstance(m.pseudo_inputs, int) and m.pseudo_inputs >= 1,
           "an integer ≥ 1")


def validate_hvae(cfg: TrainConfig) -> None:
    m = cfg.model
    if m.kind != "hvae":
        _check("model.latent_dims", m.latent_dims, not m.latent_dims,
               f"unset for model={m.kind} (the sizes of model=hvae's two stochastic layers; this model's is "
               "model.latent_dim)")
        _check("model.top_hidden_dims", m.top_hidden_dims, m.top_hidden_dims == ModelConfig().top_hidden_dims,
               f"unset for model={m.kind} (the widths between model=hvae's two stochastic layers)")
        return
    _check("model.latent_dims", m.latent_dims, len(m.latent_dims) == 2 and all(d > 0 for d in m.latent_dims),
           "two sizes > 0, [z1, z2], e.g. [100, 50]")
    _check("model.latent_dim", m.latent_dim, m.latent_dim == ModelConfig.latent_dim,
           "unset for model=hvae (its sizes are model.latent_dims)")
    _check("model.top_hidden_dims", m.top_hidden_dims, all(h > 0 for h in m.top_hidden_dims), "widths > 0")
    _check("model.arch", m.arch, m.arch == "mlp", "mlp for model=hvae")
    _check("noise.kind", cfg.noise.kind, cfg.noise.kind == "none",
           "none for model=hvae (its bound is of the input it encodes)")
