"""The sparse autoencoder's fields (model=sae): their ranges, the fields each model.activation
reads, and the other kinds' refusal of them, each a one-line ConfigError naming the key."""

from dataclasses import fields

from aectl.config.errors import ConfigError, check as _check
from aectl.config.schema import B_DEC_INITS, SAE_ACTIVATIONS, ModelConfig, TrainConfig

# What every sae reads, and what each activation adds.
SAE_COMMON = ("num_latents", "expansion_factor", "dead_steps", "normalize_decoder", "b_dec_init")
SAE_ACTIVATION_FIELDS = {
    "topk": ("k", "k_aux", "aux_coefficient"),
    "batchtopk": ("k", "k_aux", "aux_coefficient", "threshold_decay"),
    "jumprelu": ("bandwidth", "init_threshold", "l0_coefficient"),
    "relu_l1": ("l1_coefficient",),
}
SAE_ONLY = tuple(dict.fromkeys(f for names in SAE_ACTIVATION_FIELDS.values() for f in names if f != "k")) + SAE_COMMON
# The other kinds' network fields: an sae is one linear encoder and decoder on the flattened input.
NOT_SAE = ("arch", "hidden_dims", "conv_channels", "latent_dim", "code_activation", "likelihood",
           "output_activation", "sigma")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_sae(cfg: TrainConfig) -> None:
    """model=sae's fields and ranges; the sae fields refused on every other kind."""
    m, defaults = cfg.model, ModelConfig()
    if m.kind != "sae":
        for name in SAE_ONLY:
            _check(f"model.{name}", getattr(m, name), getattr(m, name) == getattr(defaults, name),
                   f"unset for model={m.kind} (only model=sae reads it)")
        return
    _check("model.activation", m.activation, m.activation in SAE_ACTIVATIONS,
           "one of " + ", ".join(SAE_ACTIVATIONS) + " for model=sae")
    for name in NOT_SAE:
        _check(f"model.{name}", getattr(m, name), getattr(m, name) == getattr(defaults, name),
               "unset for model=sae (one linear encoder and decoder on the flattened input; its fields: "
               + ", ".join(SAE_COMMON + SAE_ACTIVATION_FIELDS[m.activation]) + ")")
    used = SAE_COMMON + SAE_ACTIVATION_FIELDS[m.activation]
    for name in (*SAE_ONLY, "k"):
        if name not in used:
            _check(f"model.{name}", getattr(m, name), getattr(m, name) == getattr(defaults, name),
                   f"unset for model.activation={m.activation} (its fields: {', '.join(used)})")
    _check("noise.kind", cfg.noise.kind, cfg.noise.kind == "none", "none for model=sae")
    _check("penalty.kind", cfg.penalty.kind, cfg.penalty.kind == "none",
           "none for model=sae (its sparsity is model.activation's)")
    _check("model.num_latents", m.num_latents, _is_int(m.num_latents) and m.num_latents >= 0,
           "an integer ≥ 1, or 0 with model.expansion_factor")
    _check("model.expansion_factor", m.expansion_factor, m.expansion_factor >= 0, "a factor > 0, or 0 with "
                                                                                  "model.num_latents")
    _check("model.num_latents", m.num_latents, (m.num_latents > 0) != (m.expansion_factor > 0),
           f"exactly one of model.num_latents and model.expansion_factor (now {m.expansion_factor}) set above 0")
    _check("model.dead_steps", m.dead_steps, _is_int(m.dead_steps) and m.dead_steps >= 1, "an integer ≥ 1")
    _check("model.b_dec_init", m.b_dec_init, m.b_dec_init in B_DEC_INITS, "one of " + ", ".join(B_DEC_INITS))
    _check("model.k_aux", m.k_aux, _is_int(m.k_aux) and m.k_aux >= 1, "an integer ≥ 1")
    _check("model.aux_coefficient", m.aux_coefficient, m.aux_coefficient >= 0, "a weight ≥ 0")
    _check("model.threshold_decay", m.threshold_decay, 0 <= m.threshold_decay < 1, "a decay in [0, 1)")
    _check("model.bandwidth", m.bandwidth, m.bandwidth > 0, "a kernel width > 0")
    _check("model.init_threshold", m.init_threshold, m.init_threshold > 0, "a threshold > 0")
    _check("model.l0_coefficient", m.l0_coefficient, m.l0_coefficient >= 0, "a weight ≥ 0")
    _check("model.l1_coefficient", m.l1_coefficient, m.l1_coefficient >= 0, "a weight ≥ 0")
    if m.num_latents:
        check_sae_size(m, m.num_latents)


def num_latents(m: ModelConfig, d_in: int) -> int:
    """The dictionary's size: model.num_latents, or expansion_factor × the input's size."""
    return m.num_latents or max(1, round(m.expansion_factor * d_in))


def check_sae_size(m: ModelConfig, latents: int) -> None:
    """k active latents must leave some inactive: 1 ≤ k < num_latents (topk, batchtopk)."""
    if m.activation in ("topk", "batchtopk"):
        _check("model.k", m.k, _is_int(m.k) and 1 <= m.k < latents,
               f"an integer in [1, {latents}) (fewer than the {latents} latents of model=sae)")


def reset_switched_activation_fields(cfg: TrainConfig, given: set[str]) -> list[str]:
    """`model=sae model.activation=jumprelu`: the preset's topk k goes back to its default (it
    means nothing to jumprelu) instead of being refused. Returns the `key=value` settings dropped."""
    m, defaults, dropped = cfg.model, ModelConfig(), []
    if m.kind != "sae" or "model.activation" not in given or m.activation not in SAE_ACTIVATION_FIELDS:
        return dropped
    for f in fields(m):
        name = f.name
        if name in (*SAE_ONLY, "k") and name not in SAE_COMMON + SAE_ACTIVATION_FIELDS[m.activation] \
                and f"model.{name}" not in given and getattr(m, name) != getattr(defaults, name):
            dropped.append(f"model.{name}={getattr(m, name)}")
            setattr(m, name, getattr(defaults, name))
    return dropped
