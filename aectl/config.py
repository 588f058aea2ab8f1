"""The config schema: one dataclass per config group, a comment per field, and range checks.

Hydra composes the YAML of `configs/` on top of these dataclasses, so an unknown key or a
wrong type is refused during composition; `validate` then checks ranges and choices and
raises `ConfigError` naming the key. This module never imports torch (it is on the CLI's
start-up path).
"""

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional

from aectl.errors import ConfigError
from aectl.monitor import check_monitor

MODEL_KINDS = ("ae", "stacked_ae", "sparse_ae", "dae", "vae", "cvae", "vqvae")
MODEL_KINDS += ("iwae",)  # importance-weighted AE (Burda et al. 2016): the VAE's networks, the k-sample bound
# Kinds with a Gaussian posterior q(z|x) and a N(0, I) prior: the KL term and the VAE metrics (ELBO,
# IW log p(x), active units) apply, and beta and beta_schedule for vae and cvae (model=iwae trains on
# the k-sample bound: validate_iwae keeps beta at 1 and the schedule constant).
# cvae conditions q(z|x,y) and p(x|z,y) on the dataset's label y (needs a labelled dataset).
VARIATIONAL_KINDS = ("vae", "cvae", "iwae")
ARCHS = ("mlp", "conv")
ACTIVATIONS = ("relu", "gelu", "elu", "leaky_relu", "tanh", "sigmoid", "identity")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
NOISES = ("none", "gaussian", "salt_pepper", "masking")
PENALTIES = ("none", "kl_sparsity", "l1")
PENALTIES += ("contractive",)  # λ·‖J_f(x)‖²_F of the encoder (Rifai et al. 2011)
SCHEDULES = ("constant", "linear", "sigmoid", "cyclical")
LR_SCHEDULES = ("constant", "cosine", "step", "plateau")
DATASETS = ("digits", "synthetic", "mnist", "fashion_mnist", "kmnist", "cifar10", "binarized_mnist",
            "tensor_file", "image_folder")
BINARIZE = ("none", "threshold", "dynamic")
SCALES = ("minmax", "standard", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
ON_NONFINITE = ("stop", "skip_batch")


@dataclass
class ModelConfig:
    kind: str = "vae"  # ae | stacked_ae | sparse_ae | dae | vae | cvae (conditional VAE: labelled data) | vqvae | iwae
    arch: str = "mlp"  # mlp | conv (conv works for any H×W the dataset gives)
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])  # encoder widths; decoder mirrors
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])  # conv arch: channels per stride-2 layer
    latent_dim: int = 8  # K, size of the code z
    activation: str = "relu"  # hidden-layer activation
    code_activation: str = "identity"  # activation on the AE code (sigmoid for the sparse AE)
    # p(x|z): bernoulli (BCE on logits; a likelihood for binary data only) | continuous_bernoulli
    # (normalised on [0, 1], for grey levels) | gaussian (N(x; x̂, σ²I) with σ = model.sigma)
    likelihood: str = "gaussian"
    output_activation: str = "sigmoid"  # gaussian likelihood only: squashes x̂ into the data range
    sigma: float = 0.5 ** 0.5  # gaussian likelihood only: the decoder's fixed σ (1/√2: the loss is the squared error + D/2·log π)
    k: int = 1  # iwae only: importance samples per example of the training bound L_k (k=1 is the VAE's ELBO)
    # VQ-VAE (van den Oord et al. 2017); conv: one code per cell of the encoder's last feature map,
    # mlp: latent_dim values split into latent_dim/embedding_dim codes
    num_embeddings: int = 512  # vqvae: K, codes in the codebook (≥ 2)
    embedding_dim: int = 16  # vqvae: D, size of each code vector
    commitment: float = 0.25  # vqvae: β_c, weight of the commitment term ‖z_e − sg[e]‖²
    ema: bool = False  # vqvae: keep the codebook by EMA (appendix A.1) instead of the codebook loss ‖sg[z_e] − e‖²
    ema_decay: float = 0.99  # vqvae with ema: decay γ of the moving averages, in (0, 1)
    dead_code_steps: int = 100  # vqvae: a code unused this many steps in a row takes a random encoder output (0 = off)


@dataclass
class DatasetConfig:
    name: str = "digits"  # one of DATASETS; configs/dataset/<name>.yaml documents each
    root: Optional[str] = None  # folder of downloadable datasets (torchvision layout); None = default_data_root()
    download: bool = True  # fetch missing files into root (mnist family, cifar10, binarized_mnist)
    binarize: str = "none"  # none | threshold (x > 0.5 once, at load) | dynamic (fresh Bernoulli draw per batch)
    path: Optional[str] = None  # tensor_file: the .npy/.npz/.pt/.csv file; image_folder: the folder
    key: Optional[str] = None  # tensor_file (.npz/.pt): name of the data array (default "x", else the first)
    label_key: Optional[str] = None  # tensor_file (.npz/.pt): name of the label array (default "y" if present)
    label_column: Any = None  # tensor_file (.csv): label column, by header name or index (negative from the end)
    scale: str = "minmax"  # tensor_file: minmax ([0, 1] on train) | standard (mean 0, std 1 on train) | none
    size: Any = 32  # image_folder: resize to size×size, or [height, width]
    channels: int = 3  # image_folder: 1 (grayscale) or 3 (RGB)
    in_memory: Any = "auto"  # image_folder: auto (decode once if it fits in RAM) | true | false (stream)
    workers: int = -1  # image_folder streamed: DataLoader worker processes (-1 = min(4, CPUs))
    val_fraction: float = 0.1  # share held out for validation (carved from train if the dataset has no val split)
    test_fraction: float = 0.1  # share held out for testing (only if the dataset has no test split)
    split_seed: int = 0  # the seeded split (and fixed val/test binarization) is the same for every run
    limit: int = 0  # use at most this many training examples (0 = all)
    num_samples: int = 512  # synthetic: number of examples
    shape: list[int] = field(default_factory=lambda: [1, 8, 8])  # synthetic: C, H, W


@dataclass
class NoiseConfig:
    kind: str = "none"  # none | gaussian | salt_pepper | masking
    sigma: float = 0.3  # gaussian: standard deviation
    clip: bool = True  # gaussian: clip x̃ to [v_min, v_max]
    p: float = 0.25  # salt_pepper / masking: corruption probability per entry
    v_min: Optional[float] = None  # gaussian clip / salt_pepper: smallest data value (pepper); None = the train split's minimum
    v_max: Optional[float] = None  # gaussian clip / salt_pepper: largest data value (salt); None = the train split's maximum


@dataclass
class PenaltyConfig:
    kind: str = "none"  # none | kl_sparsity | l1 | contractive
    rho: float = 0.05  # kl_sparsity: target mean activation ρ
    beta: float = 3.0  # kl_sparsity: weight β of Σ_j KL(ρ‖ρ̂_j)
    weight: float = 1e-3  # l1: weight of Σ_j |h_j|; contractive: λ of ‖J_f(x)‖²_F


@dataclass
class BetaScheduleConfig:
    kind: str = "constant"  # constant | linear | sigmoid | cyclical
    warmup_steps: int = 1000  # linear: steps to reach the full β
    k: float = 0.0025  # sigmoid: steepness of the logistic
    x0: int = 2500  # sigmoid: step of the midpoint
    cycles: int = 4  # cyclical: number of cycles M over the run
    ratio: float = 0.5  # cyclical: share R of each cycle spent rising


@dataclass
class LRScheduleConfig:
    kind: str = "constant"  # constant | cosine | step | plateau: lr(t) = trainer.lr · f(t) (aectl/lr_schedules.py)
    warmup_steps: int = 0  # cosine: optimizer steps of linear warm-up from trainer.lr/warmup_steps to trainer.lr
    min_lr: float = 0.0  # cosine: the lr at the run's last step; plateau: the lr is never reduced below it
    step_size: int = 30  # step: epochs (not optimizer steps) between two multiplications by gamma
    gamma: float = 0.1  # step: factor applied every step_size epochs
    factor: float = 0.1  # plateau: factor applied when the val loss stops improving
    patience: int = 10  # plateau: epochs in a row without an improvement of the val loss before a reduction
    min_delta: float = 0.0  # plateau: an epoch improves when its val loss is below the best by more than this


@dataclass
class TrainerConfig:
    epochs: int = 100  # passes over the training split
    batch_size: int = 128  # examples per optimizer step
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0  # L2 / decoupled weight decay
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    threads: int = 1  # CPU threads for torch (0 = torch's default)
    seed: int = 0  # seeds weights, batches and noise
    log_every: int = 50  # steps between scalar logs (never a per-step host sync)
    images_every: int = 5  # epochs between image logs (the last epoch always logs)
    progress: bool = True  # tqdm progress bar
    compile: bool = False  # torch.compile the model (CUDA)
    precision: str = "fp32"  # fp32 | bf16 (autocast, CUDA)
    resume: Optional[str] = None  # run folder or .pt to continue from; auto: this run folder's, else the newest
    save_every: int = 1  # epochs between writes of checkpoints/last.pt
    on_nonfinite: str = "stop"  # stop | skip_batch: what a non-finite loss or gradient does (aectl/guards.py)
    max_skipped_batches: int = 10  # skip_batch: stop after this many skipped batches in a row
    # early stopping on the val loss (the only monitor for now): end the run, with best.pt as
    # its result, after this many epochs in a row without an improvement (0 = off)
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0  # early stopping: improving means a val loss below the best by more than this
    # greedy layer-wise pretraining (model=stacked_ae, mlp; aectl/pretraining.py): epochs per encoder
    # layer, trained as a shallow AE before trainer.epochs of end-to-end fine-tuning (0 = off)
    pretrain_epochs: int = 0
    # what `aectl train` returns to a hyperparameter search (hydra/sweeper=aectl_optuna): a final metric
    # <split>/<metric> (aectl/monitor.py); lower is better for loss/recon/mse/neg_elbo, higher for psnr/active_units
    monitor: str = "val/loss"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    penalty: PenaltyConfig = field(default_factory=PenaltyConfig)
    beta_schedule: BetaScheduleConfig = field(default_factory=BetaScheduleConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    beta: float = 1.0  # target KL weight of the VAE: β(t) = beta · f(t); <1 anneals, >1 is a β-VAE


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, "one of " + ", ".join(allowed))


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


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
    _check("dataset.val_fraction", d.val_fraction, 0 < d.val_fraction < 1, "a fraction in (0, 1)")
    _check("dataset.test_fraction", d.test_fraction, 0 <= d.test_fraction < 1, "a fraction in [0, 1)")
    _check("dataset.test_fraction", d.test_fraction, d.val_fraction + d.test_fraction < 1,
           "val_fraction + test_fraction < 1")
    _check("dataset.limit", d.limit, d.limit >= 0, "an integer ≥ 0 (0 = all)")
    _check("dataset.num_samples", d.num_samples, d.num_samples > 0, "an integer > 0")
    _check("dataset.shape", d.shape, len(d.shape) == 3 and all(v > 0 for v in d.shape), "[C, H, W], each > 0")


def validate(cfg: TrainConfig) -> None:
    """Check ranges and choices; raise ConfigError naming the first bad key."""
    m, d, n, p, s, t = cfg.model, cfg.dataset, cfg.noise, cfg.penalty, cfg.beta_schedule, cfg.trainer
    _choice("model.kind", m.kind, MODEL_KINDS)
    _choice("model.arch", m.arch, ARCHS)
    _choice("model.activation", m.activation, ACTIVATIONS)
    _choice("model.code_activation", m.code_activation, ACTIVATIONS)
    _choice("model.output_activation", m.output_activation, ACTIVATIONS)
    _choice("model.likelihood", m.likelihood, LIKELIHOODS)
    _check("model.latent_dim", m.latent_dim, m.latent_dim > 0, "an integer > 0")
    _check("model.hidden_dims", m.hidden_dims, all(h > 0 for h in m.hidden_dims), "widths > 0")
    _check("model.conv_channels", m.conv_channels,
           len(m.conv_channels) > 0 and all(c > 0 for c in m.conv_channels), "a non-empty list of channels > 0")

    validate_vq(m)
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
    _choice("trainer.on_nonfinite", t.on_nonfinite, ON_NONFINITE)
    _check("trainer.max_skipped_batches", t.max_skipped_batches, t.max_skipped_batches > 0, "an integer > 0")
    _choice("trainer.precision", t.precision, PRECISIONS)
    _check("trainer.early_stopping_patience", t.early_stopping_patience, t.early_stopping_patience >= 0,
           "an integer ≥ 0 (0 = off)")
    _check("trainer.early_stopping_min_delta", t.early_stopping_min_delta, t.early_stopping_min_delta >= 0,
           "a val-loss difference ≥ 0")
    _check("model.sigma", m.sigma, m.sigma > 0, "a standard deviation > 0")
    validate_pretraining(cfg)
    validate_lr_schedule(cfg.lr_schedule, t.lr)
    check_monitor(t.monitor, m.kind, n.kind)
    check_fields_apply(cfg)


def validate_iwae(cfg: TrainConfig) -> None:
    """model.k belongs to model=iwae; the IWAE bound has no KL weight and no penalty."""
    m = cfg.model
    _check("model.k", m.k, isinstance(m.k, int) and not isinstance(m.k, bool) and m.k >= 1, "an integer ≥ 1")
    if m.kind != "iwae":
        _check("model.k", m.k, m.k == ModelConfig.k,
               f"unset for model={m.kind} (k is the importance samples of model=iwae)")
        return
    _check("penalty.kind", cfg.penalty.kind, cfg.penalty.kind == "none",
           "none for model=iwae (its bound is the objective)")
    _check("beta", cfg.beta, cfg.beta == 1.0, "1.0 for model=iwae (the importance-weighted bound has no KL weight)")
    _check("beta_schedule.kind", cfg.beta_schedule.kind, cfg.beta_schedule.kind == "constant",
           "constant for model=iwae (the importance-weighted bound has no KL weight to anneal)")
    _check("model.code_activation", m.code_activation, m.code_activation == "identity",
           "identity for model=iwae (its code is the Gaussian posterior's μ and log σ²)")


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


def validate_lr_schedule(r: LRScheduleConfig, lr: float) -> None:
    """The lr schedule's ranges; min_lr is checked against trainer.lr, the schedule's base."""
    _choice("lr_schedule.kind", r.kind, LR_SCHEDULES)
    _check("lr_schedule.warmup_steps", r.warmup_steps, r.warmup_steps >= 0, "an integer ≥ 0")
    _check("lr_schedule.min_lr", r.min_lr, 0 <= r.min_lr < lr, f"a learning rate ≥ 0 and below trainer.lr={lr}")
    _check("lr_schedule.step_size", r.step_size, r.step_size > 0, "an integer > 0 (epochs)")
    _check("lr_schedule.gamma", r.gamma, 0 < r.gamma <= 1, "a factor in (0, 1]")
    _check("lr_schedule.factor", r.factor, 0 < r.factor < 1, "a factor in (0, 1)")
    _check("lr_schedule.patience", r.patience, r.patience > 0, "an integer > 0 (epochs)")
    _check("lr_schedule.min_delta", r.min_delta, r.min_delta >= 0, "a val-loss difference ≥ 0")


# The fields each option of a group reads; a field it does not read must keep its default, so
# that `noise=masking noise.sigma=0.5` is refused instead of silently ignored.
NOISE_FIELDS = {"none": (), "gaussian": ("sigma", "clip", "v_min", "v_max"), "salt_pepper": ("p", "v_min", "v_max"),
                "masking": ("p",)}
PENALTY_FIELDS = {"none": (), "kl_sparsity": ("rho", "beta"), "l1": ("weight",)}
PENALTY_FIELDS["contractive"] = ("weight",)
SCHEDULE_FIELDS = {"constant": (), "linear": ("warmup_steps",), "sigmoid": ("k", "x0"), "cyclical": ("cycles", "ratio")}
LR_SCHEDULE_FIELDS = {"constant": (), "cosine": ("warmup_steps", "min_lr"), "step": ("step_size", "gamma"),
                      "plateau": ("factor", "patience", "min_delta", "min_lr")}
_SPLIT_FIELDS = ("binarize", "val_fraction", "test_fraction", "split_seed", "limit")
_DOWNLOADED = (*_SPLIT_FIELDS, "root", "download")
DATASET_FIELDS = {
    "digits": _SPLIT_FIELDS, "synthetic": (*_SPLIT_FIELDS, "num_samples", "shape"),
    "mnist": _DOWNLOADED, "fashion_mnist": _DOWNLOADED, "kmnist": _DOWNLOADED, "cifar10": _DOWNLOADED,
    "binarized_mnist": _DOWNLOADED,
    "tensor_file": (*_SPLIT_FIELDS, "path", "key", "label_key", "label_column", "scale"),
    "image_folder": (*_SPLIT_FIELDS, "path", "size", "channels", "in_memory", "workers"),
}


def _unused_fields(section, group: str, option: str, used: tuple[str, ...], skip: tuple[str, ...] = ()) -> None:
    """Refuse a field set away from its default that the chosen option does not read."""
    defaults = type(section)()
    for f in fields(section):
        if f.name in (*used, *skip) or getattr(section, f.name) == getattr(defaults, f.name):
            continue
        reads = ", ".join(used) if used else "none"
        raise ConfigError(f"{group}.{f.name}", getattr(section, f.name),
                          f"{group}={option} does not use {f.name} (its fields: {reads}); "
                          f"remove it or choose a {group} that has it")


def _option_tables(cfg: TrainConfig) -> dict:
    """group → (its chosen option, the table of the fields each option reads)."""
    return {"noise": (cfg.noise.kind, NOISE_FIELDS), "penalty": (cfg.penalty.kind, PENALTY_FIELDS),
            "beta_schedule": (cfg.beta_schedule.kind, SCHEDULE_FIELDS),
            "lr_schedule": (cfg.lr_schedule.kind, LR_SCHEDULE_FIELDS), "dataset": (cfg.dataset.name, DATASET_FIELDS)}


def drop_fields_of_switched_options(cfg: TrainConfig, overrides: list[str]) -> list[str]:
    """`experiment=mnist_vae lr_schedule=constant`: the preset's fields of the option it chose
    (its cosine's warm-up) mean nothing to the option the command line switched to; they go back
    to their defaults instead of being refused. Returns the `key=value` settings dropped."""
    tables, given = _option_tables(cfg), {o.lstrip("+").partition("=")[0] for o in overrides}
    dropped = []
    for group in given & set(tables):
        option, table = tables[group]
        section = getattr(cfg, group)
        defaults = type(section)()
        for f in fields(section):
            value = getattr(section, f.name)
            if f.name not in (*table[option], "kind", "name") and f"{group}.{f.name}" not in given \
                    and value != getattr(defaults, f.name):
                dropped.append(f"{group}.{f.name}={value}")
                setattr(section, f.name, getattr(defaults, f.name))
    return dropped


def check_given_fields(cfg: TrainConfig, overrides: list[str]) -> None:
    """A field given on the command line that the chosen option does not read is refused even at
    its default value (`dataset=mnist dataset.size=32`): it says the user meant something else."""
    options = _option_tables(cfg)
    for override in overrides:
        key = override.lstrip("+").partition("=")[0]
        group, _, name = key.partition(".")
        if key == "model.k" and cfg.model.kind != "iwae":  # even at its default: k is the IWAE's
            raise ConfigError(key, cfg.model.k, f"unset for model={cfg.model.kind} (k is the importance samples "
                                                "of model=iwae)")
        if group in options and name not in ("kind", "name", ""):
            option, table = options[group]
            if name not in table[option]:
                value = getattr(getattr(cfg, group), name, override.partition("=")[2])
                raise ConfigError(key, value, f"{group}={option} does not use {name} (its fields: "
                                              f"{', '.join(table[option]) or 'none'}); remove it or choose a {group} "
                                              "that has it")


def check_fields_apply(cfg: TrainConfig) -> None:
    """Every field set must do something: refuse what the chosen options would silently ignore."""
    m, d, n, p, s = cfg.model, cfg.dataset, cfg.noise, cfg.penalty, cfg.beta_schedule
    _unused_fields(n, "noise", n.kind, NOISE_FIELDS[n.kind], ("kind",))
    _unused_fields(p, "penalty", p.kind, PENALTY_FIELDS[p.kind], ("kind",))
    _unused_fields(s, "beta_schedule", s.kind, SCHEDULE_FIELDS[s.kind], ("kind",))
    r = cfg.lr_schedule
    _unused_fields(r, "lr_schedule", r.kind, LR_SCHEDULE_FIELDS[r.kind], ("kind",))
    _unused_fields(d, "dataset", d.name, DATASET_FIELDS[d.name], ("name",))
    if d.name == "binarized_mnist" and d.binarize != "none":
        raise ConfigError("dataset.binarize", d.binarize, "none for dataset=binarized_mnist (it is binary already, "
                          "a fixed binarization); for dynamic binarization use dataset=mnist dataset.binarize=dynamic")
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


def check_schedule_fits(s: BetaScheduleConfig, total_steps: int) -> None:
    """A cyclical schedule needs at least two optimizer steps per cycle: with fewer, every step
    starts a cycle and β stays 0 for the whole run."""
    if s.kind == "cyclical" and s.cycles > total_steps // 2:
        raise ConfigError("beta_schedule.cycles", s.cycles, f"at most {total_steps // 2} (this run has "
                          f"{total_steps} optimizer steps; a cycle needs at least 2 for β to rise above 0)")


SPLITS = ("train", "val", "test")

# `aectl eval`'s dataset section: every DatasetConfig field, None = keep the checkpoint's value.
# Built from DatasetConfig so that `dataset.<field>=...` and `dataset=<name>` accept exactly its fields.
DatasetOverrides = make_dataclass("DatasetOverrides", [(f.name, Optional[Any], field(default=None))
                                                       for f in fields(DatasetConfig)])


@dataclass
class EvalConfig:
    """`aectl eval`: model, data and noise come from the checkpoint; these fields say what to compute."""

    ckpt: Optional[str] = None  # checkpoint file, run folder (→ checkpoints/last.pt) or multirun folder (every job)
    split: str = "test"  # train | val | test: the split the metrics are computed on
    k: int = 100  # importance samples per example for the VAE's log p(x) estimate (Burda et al. 2016)
    batch_size: int = 256  # examples per forward pass (the IW estimate decodes batch_size·k rows per batch)
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | mps
    threads: int = 1  # CPU threads for torch (0 = torch's default)
    seed: int = 0  # seeds input noise, posterior and prior samples: the same seed gives the same numbers
    projector: bool = True  # write the TensorBoard projector (latent means, labels, sprite) into the run
    max_embed: int = 1000  # examples of the split shown in the projector
    progress: bool = True  # tqdm progress bar over the batches of the IW estimate
    limit: int = 0  # evaluate the first N examples of the split only (0 = all): quick IW estimates
    dataset: DatasetOverrides = field(default_factory=DatasetOverrides)  # fields set here override the checkpoint's


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
