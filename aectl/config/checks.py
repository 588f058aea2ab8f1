"""Range and choice checks of a composed config: `validate` (training) and `validate_eval`
raise `ConfigError` naming the first bad key, the bad value and what is allowed. The rules that
tie a field to the option that reads it live in option_fields.py."""

from typing import Any

from aectl.config import (
    ACTIVATIONS,
    ARCHS,
    BINARIZE,
    DATASETS,
    DEVICES,
    LIKELIHOODS,
    LR_SCHEDULES,
    MODEL_KINDS,
    NOISES,
    ON_NONFINITE,
    OPTIMIZERS,
    PENALTIES,
    PRECISIONS,
    SCALES,
    SCHEDULES,
    SPLITS,
    VARIATIONAL_KINDS,
    BetaScheduleConfig,
    DatasetConfig,
    EvalConfig,
    LRScheduleConfig,
    ModelConfig,
    TrainConfig,
)
from aectl.config.errors import ConfigError, check as _check
from aectl.config.monitoring import check_monitors
from aectl.config.option_fields import check_fields_apply
from aectl.config.sae_checks import validate_sae
from aectl.config.variational_checks import validate_hvae, validate_prior


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, "one of " + ", ".join(allowed))


def _is_size(size: Any) -> bool:
    if isinstance(size, bool):
        return False
    if isinstance(size, int):
        return size > 0
    return (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size))


def in_memory_choice(value: Any) -> str:
    """dataset.in_memory as one of auto | true | false (YAML may give a bool or a string)."""
    text = str(value).lower()
    if text not in ("auto", "true", "false"):
        raise ConfigError("dataset.in_memory", value, "one of auto, true, false")
    return text


def validate_dataset(d: DatasetConfig) -> None:
    """The dataset section's ranges and choices, and the fields each dataset needs."""
    _choice("dataset.name", d.name, DATASETS)
    _choice("dataset.binarize", d.binarize, BINARIZE)
    _choice("dataset.scale", d.scale, SCALES)
    if d.name in ("tensor_file", "image_folder"):
        _check("dataset.path", d.path, bool(d.path),
               f"the {'file (.npy, .npz, .pt or .csv)' if d.name == 'tensor_file' else 'folder of images'} "
               f"to read, e.g. dataset.path=data/{'train.csv' if d.name == 'tensor_file' else 'images'}")
    _check("dataset.label_column", d.label_column,
           d.label_column is None or (isinstance(d.label_column, (int, str)) and not isinstance(d.label_column, bool)),
           "a column name or an integer index")
    _check("dataset.size", d.size, _is_size(d.size), "an integer > 0 or [height, width]")
    _check("dataset.channels", d.channels, d.channels in (1, 3), "1 (grayscale) or 3 (RGB)")
    in_memory_choice(d.in_memory)
    _check("dataset.workers", d.workers, d.workers >= -1, "an integer ≥ 0, or -1 for min(4, CPUs)")
    if d.name == "activations":
        _check("dataset.path", d.path, bool(d.path), "a file or folder of activations (.npy, .safetensors, .npz, "
               ".pt), e.g. dataset.path=activations/")
    _choice("dataset.normalize", d.normalize, ("none", "mean_squared_norm"))
    _check("dataset.chunk_rows", d.chunk_rows, d.chunk_rows > 0, "an integer > 0")
    _check("dataset.val_fraction", d.val_fraction, 0 < d.val_fraction < 1, "a fraction in (0, 1)")
    _check("dataset.test_fraction", d.test_fraction, 0 <= d.test_fraction < 1, "a fraction in [0, 1)")
    _check("dataset.test_fraction", d.test_fraction, d.val_fraction + d.test_fraction < 1,
           "val_fraction + test_fraction < 1")
    _check("dataset.limit", d.limit, d.limit >= 0, "an integer ≥ 0 (0 = all)")
    _check("dataset.num_samples", d.num_samples, d.num_samples > 0, "an integer > 0")
    _check("dataset.shape", d.shape, len(d.shape) == 3 and all(v > 0 for v in d.shape), "[C, H, W], each > 0")
    _check("dataset.n_directions", d.n_directions, d.n_directions > 0, "an integer > 0")
    _check("dataset.dim", d.dim, d.dim > 0, "an integer > 0")
    _check("dataset.active_prob", d.active_prob, 0 < d.active_prob <= 1, "a probability in (0, 1]")


def validate(cfg: TrainConfig) -> None:
    """Check ranges and choices; raise ConfigError naming the first bad key."""
    m, d, n, p, s, t = cfg.model, cfg.dataset, cfg.noise, cfg.penalty, cfg.beta_schedule, cfg.trainer
    _choice("model.kind", m.kind, MODEL_KINDS)
    _choice("model.arch", m.arch, ARCHS)
    if m.kind != "sae":  # an sae's activation is its sparsity (sae_checks.py)
        _choice("model.activation", m.activation, ACTIVATIONS)
    _choice("model.code_activation", m.code_activation, ACTIVATIONS)
    _choice("model.output_activation", m.output_activation, ACTIVATIONS)
    _choice("model.likelihood", m.likelihood, LIKELIHOODS)
    _check("model.latent_dim", m.latent_dim, m.latent_dim > 0, "an integer > 0")
    _check("model.hidden_dims", m.hidden_dims, all(h > 0 for h in m.hidden_dims), "widths > 0")
    _check("model.conv_channels", m.conv_channels,
           len(m.conv_channels) > 0 and all(c > 0 for c in m.conv_channels), "a non-empty list of channels > 0")

    validate_vq(m)
    validate_sae(cfg)
    validate_prior(cfg)
    validate_hvae(cfg)
    validate_dataset(d)

    _choice("noise.kind", n.kind, NOISES)
    _check("noise.sigma", n.sigma, n.sigma >= 0, "a standard deviation ≥ 0")
    _check("noise.p", n.p, 0 <= n.p <= 1, "a probability in [0, 1]")
    _check("noise.v_max", n.v_max, n.v_min is None or n.v_max is None or n.v_min < n.v_max,
           f"greater than noise.v_min={n.v_min}")

    _choice("penalty.kind", p.kind, PENALTIES)
    _check("penalty.rho", p.rho, 0 < p.rho < 1, "a target activation in (0, 1)")
    _check("penalty.beta", p.beta, p.beta >= 0, "a weight ≥ 0")
    _check("penalty.weight", p.weight, p.weight >= 0, "a weight ≥ 0")
    # The VAE check first: for model=vae penalty=kl_sparsity the conflict is the penalty itself,
    # not the code activation the sparsity penalty would need.
    validate_iwae(cfg)
    if m.kind in VARIATIONAL_KINDS and p.kind != "none":
        _check("penalty.kind", p.kind, False, f"none for model={m.kind} (the KL term is its regulariser)")
    if m.kind == "vqvae" and p.kind != "none":
        _check("penalty.kind", p.kind, False, "none for model=vqvae (its code is a codebook vector)")
    if p.kind == "kl_sparsity":
        _check("model.code_activation", m.code_activation, m.code_activation == "sigmoid",
               "sigmoid when penalty=kl_sparsity (ρ̂ must lie in (0, 1))")

    _check("beta", cfg.beta, cfg.beta >= 0, "a KL weight ≥ 0")
    _choice("beta_schedule.kind", s.kind, SCHEDULES)
    _check("beta_schedule.warmup_steps", s.warmup_steps, s.warmup_steps >= 0, "an integer ≥ 0")
    _check("beta_schedule.k", s.k, s.k > 0, "a steepness > 0")
    _check("beta_schedule.cycles", s.cycles, s.cycles > 0, "an integer > 0")
    _check("beta_schedule.ratio", s.ratio, 0 < s.ratio <= 1, "a share in (0, 1]")

    _check("trainer.epochs", t.epochs, t.epochs > 0, "an integer > 0")
    _check("trainer.batch_size", t.batch_size, t.batch_size > 0, "an integer > 0")
    _check("trainer.lr", t.lr, t.lr > 0, "a learning rate > 0")
    _choice("trainer.optimizer", t.optimizer, OPTIMIZERS)
    _check("trainer.weight_decay", t.weight_decay, t.weight_decay >= 0, "a value ≥ 0")
    _check("trainer.grad_clip", t.grad_clip, t.grad_clip >= 0, "a norm ≥ 0 (0 = off)")
    _choice("trainer.device", t.device, DEVICES)
    _check("trainer.threads", t.threads, t.threads >= 0, "an integer ≥ 0 (0 = torch's default)")
    _check("trainer.log_every", t.log_every, t.log_every > 0, "an integer > 0")
    _check("trainer.images_every", t.images_every, t.images_every > 0, "an integer > 0")
    _check("trainer.save_every", t.save_every, t.save_every > 0, "an integer > 0")
    _check("trainer.keep_every", t.keep_every, t.keep_every >= 0, "an integer ≥ 0 (0 = keep none)")
    _choice("trainer.on_nonfinite", t.on_nonfinite, ON_NONFINITE)
    _check("trainer.max_skipped_batches", t.max_skipped_batches, t.max_skipped_batches > 0, "an integer > 0")
    _choice("trainer.precision", t.precision, PRECISIONS)
    _check("trainer.early_stopping_patience", t.early_stopping_patience, t.early_stopping_patience >= 0,
           "an integer ≥ 0 (0 = off)")
    _check("trainer.early_stopping_min_delta", t.early_stopping_min_delta, t.early_stopping_min_delta >= 0,
           MIN_DELTA_ALLOWED)
    _check("model.sigma", m.sigma, m.sigma > 0, "a standard deviation > 0")
    validate_pretraining(cfg)
    validate_lr_schedule(cfg.lr_schedule, t.lr)
    check_monitors(t.monitor, m.kind, n.kind)
    check_fields_apply(cfg)
    validate_kind_fields(cfg)


def validate_kind_fields(cfg: TrainConfig) -> None:
    """The fields that belong to some model kinds or likelihoods only."""
    m, s = cfg.model, cfg.beta_schedule
    if m.kind not in VARIATIONAL_KINDS:
        _check("beta", cfg.beta, cfg.beta == 1.0, f"1.0 for model={m.kind}: beta weighs the KL term of model=vae")
        _check("beta_schedule.kind", s.kind, s.kind == "constant",
               f"constant for model={m.kind}: the schedule anneals the KL term of model=vae")
    else:
        _check("model.code_activation", m.code_activation, m.code_activation == "identity",
               f"identity for model={m.kind} (its code is the Gaussian posterior's μ and log σ²)")
    if m.likelihood != "gaussian":
        _check("model.output_activation", m.output_activation, m.output_activation == ModelConfig.output_activation,
               f"unset for model.likelihood={m.likelihood} (its decoder emits logits; output_activation "
               "squashes the gaussian mean)")


def validate_iwae(cfg: TrainConfig) -> None:
    """model.k belongs to model=iwae and model=hvae; the importance-weighted bound (k > 1) has no
    KL weight and no penalty."""
    m = cfg.model
    _check("model.k", m.k, isinstance(m.k, int) and not isinstance(m.k, bool) and m.k >= 1, "an integer ≥ 1")
    if m.kind == "sae":  # the active latents of topk and batchtopk (sae_checks.py)
        return
    if m.kind not in ("iwae", "hvae"):
        _check("model.k", m.k, m.k == ModelConfig.k,
               f"unset for model={m.kind} (k is the importance samples of model=iwae and model=hvae)")
        return
    if m.kind == "hvae" and m.k == 1:  # the ELBO, which β weighs as a VAE's
        return
    kind = "model=iwae" if m.kind == "iwae" else f"model=hvae with model.k={m.k}"
    _check("penalty.kind", cfg.penalty.kind, cfg.penalty.kind == "none",
           f"none for {kind} (its bound is the objective)")
    _check("beta", cfg.beta, cfg.beta == 1.0, f"1.0 for {kind} (the importance-weighted bound has no KL weight)")
    _check("beta_schedule.kind", cfg.beta_schedule.kind, cfg.beta_schedule.kind == "constant",
           f"constant for {kind} (the importance-weighted bound has no KL weight to anneal)")
    _check("model.code_activation", m.code_activation, m.code_activation == "identity",
           f"identity for {kind} (its code is the Gaussian posterior's μ and log σ²)")


def validate_pretraining(cfg: TrainConfig) -> None:
    t, m = cfg.trainer, cfg.model
    _check("trainer.pretrain_epochs", t.pretrain_epochs,
           isinstance(t.pretrain_epochs, int) and not isinstance(t.pretrain_epochs, bool) and t.pretrain_epochs >= 0,
           "an integer ≥ 0 (epochs per layer; 0 = off)")
    stacked_mlp = (m.kind, m.arch) == ("stacked_ae", "mlp")
    _check("trainer.pretrain_epochs", t.pretrain_epochs, t.pretrain_epochs == 0 or stacked_mlp,
           f"0 for model={m.kind} model.arch={m.arch} (greedy pretraining is for model=stacked_ae with model.arch=mlp)")


VQ_FIELDS = ("num_embeddings", "embedding_dim", "commitment", "ema", "ema_decay", "dead_code_steps")


def validate_vq(m: ModelConfig) -> None:
    """The VQ-VAE's ranges, and its fields refused on the other kinds (they would do nothing)."""
    defaults = ModelConfig()
    if m.kind != "vqvae":
        for name in VQ_FIELDS:
            _check(f"model.{name}", getattr(m, name), getattr(m, name) == getattr(defaults, name),
                   f"unset for model={m.kind} (only model=vqvae has a codebook)")
        return
    _check("model.num_embeddings", m.num_embeddings, m.num_embeddings >= 2, "an integer ≥ 2")
    _check("model.embedding_dim", m.embedding_dim, m.embedding_dim >= 1, "an integer ≥ 1")
    _check("model.commitment", m.commitment, m.commitment >= 0, "a weight ≥ 0")
    _check("model.ema_decay", m.ema_decay, 0 < m.ema_decay < 1, "a decay in (0, 1)")
    _check("model.ema_decay", m.ema_decay, m.ema or m.ema_decay == defaults.ema_decay,
           "unset unless model.ema=true (the codebook loss has no decay)")
    _check("model.dead_code_steps", m.dead_code_steps, m.dead_code_steps >= 0, "an integer ≥ 0 (0 = off)")
    _check("model.code_activation", m.code_activation, m.code_activation == "identity",
           "identity for model=vqvae (the code is the nearest codebook vector)")
    if m.arch == "mlp":
        _check("model.latent_dim", m.latent_dim, m.latent_dim % m.embedding_dim == 0,
               f"a multiple of model.embedding_dim={m.embedding_dim} (the code is split into vectors of that size)")
    else:
        _check("model.latent_dim", m.latent_dim, m.latent_dim == defaults.latent_dim,
               "unset for model=vqvae model.arch=conv (the code is a grid of embedding_dim vectors, one per cell "
               "of the encoder's last feature map); use model.arch=mlp for a latent_dim-sized code")
        _check("model.hidden_dims", m.hidden_dims, not m.hidden_dims,
               "[] for model=vqvae model.arch=conv (the code is the conv feature map, with no MLP layers)")


# min_delta is compared with trainer.monitor's metric (aectl/training/monitor.py), in that metric's units
MIN_DELTA_ALLOWED = "an improvement ≥ 0, in the units of trainer.monitor's metric"


def validate_lr_schedule(r: LRScheduleConfig, lr: float) -> None:
    """The lr schedule's ranges; min_lr is checked against trainer.lr, the schedule's base."""
    _choice("lr_schedule.kind", r.kind, LR_SCHEDULES)
    _check("lr_schedule.warmup_steps", r.warmup_steps, r.warmup_steps >= 0, "an integer ≥ 0")
    _check("lr_schedule.min_lr", r.min_lr, 0 <= r.min_lr < lr, f"a learning rate ≥ 0 and below trainer.lr={lr}")
    _check("lr_schedule.step_size", r.step_size, r.step_size > 0, "an integer > 0 (epochs)")
    _check("lr_schedule.gamma", r.gamma, 0 < r.gamma <= 1, "a factor in (0, 1]")
    _check("lr_schedule.factor", r.factor, 0 < r.factor < 1, "a factor in (0, 1)")
    _check("lr_schedule.patience", r.patience, r.patience > 0, "an integer > 0 (epochs)")
    _check("lr_schedule.min_delta", r.min_delta, r.min_delta >= 0, MIN_DELTA_ALLOWED)


def check_schedule_fits(s: BetaScheduleConfig, total_steps: int) -> None:
    """A cyclical schedule needs at least two optimizer steps per cycle: with fewer, every step
    starts a cycle and β stays 0 for the whole run."""
    if s.kind == "cyclical" and s.cycles > total_steps // 2:
        raise ConfigError("beta_schedule.cycles", s.cycles, f"at most {total_steps // 2} (this run has "
                          f"{total_steps} optimizer steps; a cycle needs at least 2 for β to rise above 0)")


def validate_eval(cfg: EvalConfig) -> None:
    """Check the eval fields; dataset overrides are checked once merged with the checkpoint's."""
    _check("ckpt", cfg.ckpt, bool(cfg.ckpt),
           "a checkpoint file, run folder or multirun folder, e.g. ckpt=outputs/<date>/<time>")
    _choice("split", cfg.split, SPLITS)
    _check("k", cfg.k, cfg.k >= 1, "an integer ≥ 1")
    _check("limit", cfg.limit, cfg.limit >= 0, "an integer ≥ 0 (0 = the whole split)")
    _check("batch_size", cfg.batch_size, cfg.batch_size > 0, "an integer > 0")
    _choice("device", cfg.device, DEVICES)
    _check("threads", cfg.threads, cfg.threads >= 0, "an integer ≥ 0 (0 = torch's default)")
    _check("max_embed", cfg.max_embed, cfg.max_embed > 0, "an integer > 0")
