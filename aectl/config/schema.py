"""The config schema: one dataclass per config group, a comment per field, and the names of
every group's options.

Hydra composes the YAML of `configs/` on top of these dataclasses, so an unknown key or a
wrong type is refused during composition; `checks.validate` then checks ranges and
choices, and `option_fields` the fields each chosen option reads. These modules never import
torch (they are on the CLI's start-up path).
"""

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Optional

MODEL_KINDS = ("ae", "stacked_ae", "sparse_ae", "dae", "vae", "cvae", "vqvae")
MODEL_KINDS += ("iwae",)  # importance-weighted AE (Burda et al. 2016): the VAE's networks, the k-sample bound
# Kinds with a Gaussian posterior q(z|x) and a N(0, I) prior: the KL term and the VAE metrics (ELBO,
# IW log p(x), active units) apply, and beta and beta_schedule for vae and cvae (model=iwae trains on
# the k-sample bound: validate_iwae keeps beta at 1 and the schedule constant).
# cvae conditions q(z|x,y) and p(x|z,y) on the dataset's label y (needs a labelled dataset).
VARIATIONAL_KINDS = ("vae", "cvae", "iwae")
# two stochastic layers, q(z1|x) q(z2|z1) and p(z2) p(z1|z2) p(x|z1) (Burda et al. 2016, §5): the ELBO
# (model.k=1, with β) or the k-sample bound; its code is z1
MODEL_KINDS += ("hvae",)
VARIATIONAL_KINDS += ("hvae",)
PRIORS = ("gaussian", "vamp")  # vae, iwae: p(z) = N(0, I) or the VampPrior (Tomczak & Welling 2018)
# the sparse autoencoder of dictionary learning on activations (aectl/models/sae.py): model.activation is one of
# SAE_ACTIVATIONS, and the sae fields of ModelConfig apply (aectl/config/sae_checks.py)
MODEL_KINDS += ("sae",)
SAE_ACTIVATIONS = ("topk", "batchtopk", "jumprelu", "relu_l1")
B_DEC_INITS = ("mean", "geometric_median", "zeros")
ARCHS = ("mlp", "conv")
ACTIVATIONS = ("relu", "gelu", "elu", "leaky_relu", "tanh", "sigmoid", "identity")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
NOISES = ("none", "gaussian", "salt_pepper", "masking")
PENALTIES = ("none", "kl_sparsity", "l1")
PENALTIES += ("contractive",)  # λ·‖J_f(x)‖²_F of the encoder (Rifai et al. 2011)
SCHEDULES = ("constant", "linear", "sigmoid", "cyclical")
LR_SCHEDULES = ("constant", "cosine", "step", "plateau")
LR_SCHEDULES += ("burda",)  # Burda et al. 2016's: trainer.lr·10^(−i/7) for 3^i epochs, i = 0..7 (3280 epochs)
DATASETS = ("digits", "synthetic", "mnist", "fashion_mnist", "kmnist", "cifar10", "binarized_mnist",
            "tensor_file", "image_folder")
DATASETS += ("sparse_synthetic",)  # sparse combinations of known unit directions: ground truth for SAEs
DATASETS += ("activations",)  # (N, D) rows saved from another network, read from disk in chunks
BINARIZE = ("none", "threshold", "dynamic")
SCALES = ("minmax", "standard", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
ON_NONFINITE = ("stop", "skip_batch")


@dataclass
class ModelConfig:
    kind: str = "vae"  # ae | stacked_ae | sparse_ae | dae | vae | cvae (conditional VAE: labelled data) | vqvae | iwae | sae | hvae
    arch: str = "mlp"  # mlp | conv (conv works for any H×W the dataset gives)
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])  # encoder widths; decoder mirrors
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])  # conv arch: channels per stride-2 layer
    latent_dim: int = 8  # K, size of the code z
    activation: str = "relu"  # hidden-layer activation; sae: topk | batchtopk | jumprelu | relu_l1
    code_activation: str = "identity"  # activation on the AE code (sigmoid for the sparse AE)
    # p(x|z): bernoulli (BCE on logits; a likelihood for binary data only) | continuous_bernoulli
    # (normalised on [0, 1], for grey levels) | gaussian (N(x; x̂, σ²I) with σ = model.sigma)
    likelihood: str = "gaussian"
    output_activation: str = "sigmoid"  # gaussian likelihood only: squashes x̂ into the data range
    sigma: float = 0.5 ** 0.5  # gaussian likelihood only: the decoder's fixed σ (1/√2: the loss is the squared error + D/2·log π)
    # vae, iwae: the prior p(z): gaussian (N(0, I)) | vamp (the VampPrior: a mixture of q(z|u_k) over
    # pseudo_inputs learned inputs u_k; its KL is estimated at the sampled z, as it has no closed form)
    prior: str = "gaussian"
    pseudo_inputs: int = 500  # vamp: K, the pseudo-inputs (Tomczak & Welling 2018 use 500 on MNIST)
    latent_dims: list[int] = field(default_factory=list)  # hvae: [K1, K2], the sizes of z1 and z2 (Burda: [100, 50])
    top_hidden_dims: list[int] = field(default_factory=lambda: [150, 150])  # hvae: widths of q(z2|z1) and p(z1|z2)
    # iwae, hvae: importance samples per example of the training bound L_k (k=1 is the ELBO);
    # sae with topk/batchtopk: active latents per example (batchtopk: on average over the batch)
    k: int = 1
    # VQ-VAE (van den Oord et al. 2017); conv: one code per cell of the encoder's last feature map,
    # mlp: latent_dim values split into latent_dim/embedding_dim codes
    num_embeddings: int = 512  # vqvae: K, codes in the codebook (≥ 2)
    embedding_dim: int = 16  # vqvae: D, size of each code vector
    commitment: float = 0.25  # vqvae: β_c, weight of the commitment term ‖z_e − sg[e]‖²
    ema: bool = False  # vqvae: keep the codebook by EMA (appendix A.1) instead of the codebook loss ‖sg[z_e] − e‖²
    ema_decay: float = 0.99  # vqvae with ema: decay γ of the moving averages, in (0, 1)
    dead_code_steps: int = 100  # vqvae: a code unused this many steps in a row takes a random encoder output (0 = off)
    # sae (aectl/models/sae.py): the dictionary's size, one of the two (the other 0)
    num_latents: int = 0  # sae: latents in the dictionary
    expansion_factor: float = 0.0  # sae: num_latents = expansion_factor × the input's size
    dead_steps: int = 1000  # sae: a latent inactive this many steps in a row is dead (AuxK; the train metric)
    normalize_decoder: bool = True  # sae: decoder rows at unit norm, their parallel gradient removed (Bricken et al. 2023)
    b_dec_init: str = "mean"  # sae: mean | geometric_median | zeros: the pre-encoder bias b_dec from the train split
    k_aux: int = 512  # sae topk/batchtopk: dead latents the AuxK term reconstructs the residual from (Gao et al. 2024, §A.2)
    aux_coefficient: float = 0.03125  # sae topk/batchtopk: α of the AuxK term (1/32, Gao et al. 2024, §A.2)
    threshold_decay: float = 0.999  # sae batchtopk: decay of the running threshold used at inference (Bussmann et al. 2024)
    bandwidth: float = 0.001  # sae jumprelu: ε of the straight-through rectangle kernel (Rajamanoharan et al. 2024)
    init_threshold: float = 0.001  # sae jumprelu: every latent's threshold θ at the start
    l0_coefficient: float = 1.0  # sae jumprelu: λ of the L0 penalty
    l1_coefficient: float = 5.0  # sae relu_l1: λ of Σ_i z_i‖W_dec,i‖ (Conerly et al. 2024)


@dataclass
class DatasetConfig:
    name: str = "digits"  # one of DATASETS; configs/dataset/<name>.yaml documents each
    root: Optional[str] = None  # folder of downloadable datasets (torchvision layout); None = default_data_root()
    download: bool = True  # fetch missing files into root (mnist family, cifar10, binarized_mnist)
    binarize: str = "none"  # none | threshold (x > 0.5 once, at load) | dynamic (fresh Bernoulli draw per batch)
    path: Optional[str] = None  # tensor_file: the .npy/.npz/.pt/.csv file; image_folder, activations: a file or folder
    key: Optional[str] = None  # tensor_file, activations (.npz/.pt/.safetensors): the data array's name (default "x" or "activations", else the first)
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
    # sparse_synthetic: x = Σ_i c_i d_i over n_directions random unit d_i in dim dimensions, each c_i
    # non-zero with probability active_prob, then uniform in (0, 1]; seeded by split_seed
    n_directions: int = 512  # sparse_synthetic: the true directions (more than dim: superposition)
    dim: int = 128  # sparse_synthetic: dimensions of x
    active_prob: float = 0.01  # sparse_synthetic: the probability that a direction is active in an example
    normalize: str = "none"  # activations: none | mean_squared_norm (scaled so the mean ‖x‖² of train rows is D)
    chunk_rows: int = 16384  # activations: train rows read from disk at once (memory: chunk_rows × D × 4 bytes)


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
    kind: str = "constant"  # constant | cosine | step | plateau | burda: lr(t) = trainer.lr · f(t) (aectl/training/lr_schedules.py)
    warmup_steps: int = 0  # cosine: optimizer steps of linear warm-up from trainer.lr/warmup_steps to trainer.lr
    min_lr: float = 0.0  # cosine: the lr at the run's last step; plateau: the lr is never reduced below it
    step_size: int = 30  # step: epochs (not optimizer steps) between two multiplications by gamma
    gamma: float = 0.1  # step: factor applied every step_size epochs
    factor: float = 0.1  # plateau: factor applied when trainer.monitor's val metric stops improving
    patience: int = 10  # plateau: epochs in a row without an improvement of the metric before a reduction
    min_delta: float = 0.0  # plateau: an epoch improves when it beats the best by more than this


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
    keep_every: int = 0  # epochs between kept copies checkpoints/epoch_<N>.pt, for curves against epochs (0 = none)
    on_nonfinite: str = "stop"  # stop | skip_batch: what a non-finite loss or gradient does (aectl/training/guards.py)
    max_skipped_batches: int = 10  # skip_batch: stop after this many skipped batches in a row
    # early stopping on trainer.monitor's metric on val: end the run, with best.pt as its
    # result, after this many epochs in a row without an improvement (0 = off)
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0  # early stopping: improving means beating the best by more than this
    # greedy layer-wise pretraining (model=stacked_ae, mlp; aectl/training/pretraining.py): epochs per encoder
    # layer, trained as a shallow AE before trainer.epochs of end-to-end fine-tuning (0 = off)
    pretrain_epochs: int = 0
    # the metric a run is judged by (aectl/training/monitor.py): <split>/<metric> of its final metrics, returned
    # to a search (hydra/sweeper=aectl_optuna); its val metric picks best.pt and drives early stopping
    # and the plateau lr; lower is better for loss/recon/mse/neg_elbo/kl, higher for psnr/active_units.
    # A list ([val/kl, val/recon]) is a multi-objective search; its FIRST metric picks best.pt etc.
    monitor: Any = "val/loss"


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
    progress: bool = True  # progress bars over the split's batches (the IW estimate) and the probe's train codes
    limit: int = 0  # evaluate the first N examples of the split only (0 = all): quick IW estimates
    dataset: DatasetOverrides = field(default_factory=DatasetOverrides)  # fields set here override the checkpoint's
