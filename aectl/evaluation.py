"""`aectl eval`: how good is a trained model, and at what? Metrics, pictures and embeddings.

Everything is rebuilt from the checkpoint alone (loaded with weights_only): the model from its
(kind, kwargs) and state_dict, the data and noise from its resolved config, where the command
line may override dataset fields. One pass over the chosen split computes every metric that
applies to the variant. Results go to <run>/eval/ (metrics.json and PNGs), into the
run's TensorBoard (`eval/*` scalars and images, the projector) and to the terminal as a table.

Every random draw (input noise, posterior and prior samples) comes from generators seeded by
`seed`, one per purpose, so a number does not change when another metric is added.
"""

import json
import logging
import math
import shutil
import textwrap
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from aectl import metrics, pictures, tracking
from aectl.checkpoint import load_checkpoint, rebuild_model
from aectl.config import DatasetConfig, EvalConfig, validate_dataset
from aectl.datasets import DataSplits, load_dataset
from aectl.errors import AectlError, ConfigError, DataError
from aectl.noise import Corruption
from aectl.objective import Objective, make_objective
from aectl.progress import progress_bar
from aectl.runfolder import eval_name, find_checkpoints, run_dir_of
from aectl.tables import align_rows, format_metric
from aectl.validation import SplitMetrics

log = logging.getLogger(__name__)

# Every model also faces the three corruptions at the strengths of the published noisy-MNIST
# numbers, whatever it was trained with, so robustness compares across variants.
ROBUSTNESS_NOISE = {"gaussian": {"sigma": 0.3, "clip": True}, "salt_pepper": {"p": 0.25}, "masking": {"p": 0.25}}
IW_CHUNK = 4096  # decoder rows per pass of the IW estimate: bounds memory for any k; on a CPU
# larger passes were no faster (benchmarks/eval_throughput.py --chunks)
PROBE_MAX_TRAIN = 10_000  # train examples the linear probe is fitted on (bounds its cost)
SCATTER_MAX = 5_000  # points drawn in the latent scatter
N_PICTURES = 16  # examples in the reconstruction and denoising grids
N_PRIOR_SAMPLES = 64  # decoded prior samples of a VAE
MAX_TRAVERSED = 10  # latent dims in the traversal grid: the most active ones
MIN_TILE_PX = 28  # image grids are enlarged (nearest neighbour) until a tile is this tall


@dataclass(frozen=True)
class Variant:
    """What the checkpoint's config says about which metrics apply."""

    kind: str  # model kind (ae, stacked_ae, sparse_ae, dae, vae)
    variational: bool  # a VAE: ELBO, KL, IW log-likelihood, active units, prior pictures
    noise: dict  # the trained corruption: kind, sigma, clip, p, v_min, v_max
    penalty: dict  # the trained penalty: kind, rho, beta, weight
    beta: float  # the target KL weight the model was trained for

    @classmethod
    def of(cls, ckpt: dict) -> "Variant":
        config = ckpt["config"]
        return cls(ckpt["model"]["kind"], ckpt["model"]["kind"] == "vae",
                   dict(config.get("noise") or {"kind": "none"}), dict(config.get("penalty") or {"kind": "none"}),
                   float(config.get("beta", 1.0)))

    def objective(self, model: nn.Module) -> Objective:
        return make_objective(self.kind, model.likelihood, model.sigma, self.penalty)

    def trained_noise(self, data_range: tuple[float, float]) -> Corruption:
        """The corruption the model was trained with; a range left unset is the data's."""
        params = {k: self.noise[k] for k in ("sigma", "clip", "p") if k in self.noise}
        low, high = self.noise.get("v_min"), self.noise.get("v_max")
        return Corruption(self.noise["kind"], **params, v_min=data_range[0] if low is None else low,
                          v_max=data_range[1] if high is None else high)


def robustness_noises(data_range: tuple[float, float]) -> dict[str, Corruption]:
    """The three corruptions every model faces, in the data's range."""
    low, high = data_range
    return {kind: Corruption(kind, **params, v_min=low, v_max=high) for kind, params in ROBUSTNESS_NOISE.items()}


# ---------------------------------------------------------------- entry point


def run(settings: EvalConfig, show: bool = True) -> list[dict]:
    """Evaluate every checkpoint `settings.ckpt` names, print (`show`) a table per run and, for a
    sweep, one table comparing its jobs. A job that fails is reported and the others still run."""
    targets = find_checkpoints(settings.ckpt)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = _device(settings.device)
    results, failures, data_cache = [], [], {}
    for path in targets:
        try:
            result = evaluate_checkpoint(path, settings, device, data_cache)
        except AectlError as err:
            if len(targets) == 1:
                raise
            log.warning("aectl eval: skipped %s: %s", path, err)
            failures.append(str(err))
            continue
        if show:
            print(format_table(result), flush=True)
        results.append(result)
    if len(targets) > 1 and results and show:
        print(format_sweep_table(results, Path(settings.ckpt)), flush=True)
    if failures:
        raise AectlError(f"{settings.ckpt}: {len(failures)} of {len(targets)} jobs could not be evaluated; "
                         f"first: {failures[0]}")
    return results


def _device(name: str) -> torch.device:
    from aectl.runtime import resolve_device

    try:
        return resolve_device(name)
    except ConfigError as err:
        raise AectlError(str(err).replace("trainer.device", "device", 1)) from None


# ---------------------------------------------------------------- one checkpoint


def evaluate_checkpoint(path: Path, settings: EvalConfig, device: torch.device,
                        data_cache: dict | None = None) -> dict:
    """All metrics, pictures and the projector of one checkpoint; returns what metrics.json holds."""
    start = time.perf_counter()
    ckpt = load_checkpoint(path)
    variant = Variant.of(ckpt)
    dataset = dataset_config(ckpt["config"].get("dataset") or {}, _set_fields(settings.dataset))
    data = _load_data(dataset, ckpt, path, {} if data_cache is None else data_cache).to(device)
    model = rebuild_model(ckpt).to(device)
    x_all, labels = data.split(settings.split)
    if settings.limit:  # the first N examples: quick estimates (IW with a large k)
        x_all, labels = x_all[:settings.limit], None if labels is None else labels[:settings.limit]
    if len(x_all) == 0:
        raise ConfigError("split", settings.split, f"a split with examples (dataset {dataset.name} has none in it)")
    torch.manual_seed(settings.seed)  # a dynamically binarized train split draws from the global RNG
    keep = max(N_PICTURES, settings.max_embed if settings.projector else 0)
    values, codes, first = split_metrics(model, data, x_all, variant, settings, keep)
    likelihood = likelihood_info(model, values.pop("binary_data"))
    labels = None if labels is None else labels.cpu()
    probe = probe_accuracy(model, data, codes, labels, settings.batch_size)
    if probe is not None:
        values["probe_acc"] = probe[0]

    run_dir, step = run_dir_of(path), ckpt["step"]
    name = eval_name(path, settings.split, settings.k if variant.variational else None, settings.limit)
    out_dir, tag = run_dir / "eval" / name, f"{tracking.EVAL}/{name}"
    tracker = tracking.TensorBoardTracker(run_dir)
    try:
        tracker.scalars(tag, values, step)
        images = write_pictures(model, first, codes, labels, variant, data, settings.split, settings.seed, out_dir,
                                tracker, tag, step)
        if settings.projector:
            write_projector(run_dir, tracker, codes, labels, first, getattr(data, "classes", None), step,
                            settings.max_embed)
    finally:
        tracker.close()
    result = {
        "checkpoint": str(path), "run": str(run_dir), "model": variant.kind, "step": step,
        "epoch": ckpt["epoch"], "dataset": dataset.name, "split": settings.split, "n": len(x_all),
        "limit": settings.limit or None, "name": name,
        "latent_dim": codes.shape[1], "seed": settings.seed, "k": settings.k if variant.variational else None,
        "noise": vars(variant.trained_noise(data_range(data))), "beta": variant.beta if variant.variational else None,
        "robustness_noise": ROBUSTNESS_NOISE, "penalty": variant.penalty, "likelihood": likelihood,
        "psnr_max": None if data.known_range is None else data.known_range[1] - data.known_range[0],
        "probe_train_n": probe[1] if probe else None, "metrics": values, "pictures": images,
        "projector": str(run_dir / f"{step:05d}" / tracking.EVAL_EMBEDDING) if settings.projector else None,
        "time_s": round(time.perf_counter() - start, 3),
    }
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _set_fields(overrides) -> dict:
    """The dataset fields given on the command line (None = not given), as a dict."""
    items = overrides.items() if isinstance(overrides, dict) else vars(overrides).items()
    return {k: v for k, v in items if v is not None}


def dataset_config(saved: dict, overrides: dict) -> DatasetConfig:
    """The checkpoint's dataset section with the command line's dataset fields on top, checked."""
    known = {f.name for f in fields(DatasetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"dataset.{unknown[0]}", overrides[unknown[0]], "a field of the dataset section: "
                          + ", ".join(sorted(known)))
    merged = {k: v for k, v in saved.items() if k in known} | dict(overrides)
    config = DatasetConfig(**merged)
    validate_dataset(config)
    return config


def _load_data(dataset: DatasetConfig, ckpt: dict, path: Path, cache: dict) -> DataSplits:
    """The dataset on the CPU (cached across the jobs of a sweep), transformed as in training
    (the checkpoint's scaler), with the input shape the model was built for."""
    saved = ckpt.get("data") or {}
    key = json.dumps([vars(dataset), saved.get("scaler")], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = load_dataset(**vars(dataset), scaler=saved.get("scaler"))
    data = cache[key]
    expected = list(ckpt["model"]["kwargs"]["input_shape"])
    if data.input_shape != expected:
        raise DataError(f"dataset.name={dataset.name}: examples of shape {data.input_shape}, but the model "
                        f"in {path} takes {expected}; evaluate it on the data it was trained on")
    return data


# ---------------------------------------------------------------- metrics


def data_range(data: DataSplits) -> tuple[float, float]:
    """The range noise values come from: the data's known range, else the train split's."""
    return data.known_range or data.value_range(("train",))


def likelihood_info(model: nn.Module, binary_data: bool) -> dict:
    """What the likelihood numbers are: a Bernoulli mass on grey levels is a cross-entropy,
    not a normalised likelihood, and the tables say so."""
    info = {"kind": model.likelihood, "binary_data": binary_data, "normalised": True}
    if model.likelihood == "gaussian":
        info["sigma"] = model.sigma
    if model.likelihood == "bernoulli" and not binary_data:
        info["normalised"] = False
        info["note"] = ("Bernoulli likelihood on grey levels: recon, −ELBO and the IW estimate are cross-entropies, "
                        "not normalised likelihoods (use model.likelihood=continuous_bernoulli, or binarized data)")
    return info


@torch.no_grad()
def split_metrics(model: nn.Module, data: DataSplits, x_all, variant: Variant, settings: EvalConfig,
                  keep: int) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """One pass over the split: the metrics training's validation computes (aectl.validation,
    at the trained β and noise), the robustness scores and the VAE's IW estimate; returns their
    means, the codes (N, K) on the CPU and the first `keep` inputs (pictures, projector sprite)."""
    device = next(model.parameters()).device
    noises = robustness_noises(data_range(data))
    gens = {name: torch.Generator(device=device).manual_seed(settings.seed + i)
            for i, name in enumerate([*noises, "iw"])}
    trained_noise = variant.trained_noise(data_range(data))
    split = SplitMetrics(variant.objective(model), trained_noise, variant.beta, data.known_range, trained_noise.noisy)
    codes, first = [], []
    batches = math.ceil(len(x_all) / settings.batch_size)
    desc = f"eval {variant.kind}" + (f" (IW k={settings.k})" if variant.variational else "")
    for x in progress_bar(data.batches(x_all, settings.batch_size), total=batches, desc=desc, unit="batch",
                  disable=not settings.progress, leave=False, dynamic_ncols=True):
        codes.append(split.add(model, x))  # kept on the device: no host sync per batch
        if data.known_range is not None:
            for name, corruption in noises.items():
                scores = metrics.denoising_psnr(model, x, corruption, generator=gens[name],
                                                max_val=split.psnr_max)
                split.accumulate(f"psnr_noisy_{name}", scores.noisy)
                split.accumulate(f"psnr_denoised_{name}", scores.denoised)
        if variant.variational:
            split.accumulate("nll_iw", -metrics.iw_log_likelihood(model, x, settings.k, chunk=IW_CHUNK, generator=gens["iw"]))
        if sum(len(f) for f in first) < keep:
            first.append(x)
    codes = torch.cat(codes)
    values = split.result(codes)
    values["binary_data"] = split.data_is_binary()
    return values, codes.cpu(), torch.cat(first)[:keep].cpu()


def probe_accuracy(model: nn.Module, data: DataSplits, codes: torch.Tensor, labels: torch.Tensor | None,
                   batch_size: int) -> tuple[float, int] | None:
    """(accuracy, train examples) of a linear probe fitted on the train split's latent means and
    scored on the evaluated split's; None without labels or with a single class."""
    if labels is None or data.train_labels is None:
        return None
    train_codes, n = [], 0
    for x in data.batches(data.train, batch_size):
        train_codes.append(metrics.latent_means(model, x).float().cpu())
        n += len(x)
        if n >= PROBE_MAX_TRAIN:
            break
    z_train = torch.cat(train_codes)[:PROBE_MAX_TRAIN]
    y_train = data.train_labels[:len(z_train)].cpu()
    if len(y_train.unique()) < 2:
        return None
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # an unconverged probe still scores; keep the terminal table readable
        warnings.simplefilter("ignore", ConvergenceWarning)
        return metrics.linear_probe(z_train, y_train, codes, labels), len(z_train)


# ---------------------------------------------------------------- pictures and projector


@torch.no_grad()
def write_pictures(model: nn.Module, first: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor | None,
                   variant: Variant, data: DataSplits, split: str, seed: int, out_dir: Path, tracker, tag: str,
                   step: int) -> list[str]:
    """PNGs in out_dir and the same images in TensorBoard under <tag>/<picture>; returns the file names."""
    device = next(model.parameters()).device
    x = first[:N_PICTURES].to(device)
    examples = f"{len(x)} {split} examples"
    grids = {"reconstruction": (pictures.reconstruction_grid(x, metrics.reconstruct(model, x)),
                                f"{variant.kind}: {examples} and their reconstructions"
                                + (" (z = μ)" if variant.variational else ""), ["input", "reconstruction"])}
    if variant.noise["kind"] != "none":
        g = torch.Generator(device=device).manual_seed(seed)
        noise = variant.trained_noise(data_range(data))
        x_noisy = noise(x, generator=g)
        grids["denoising"] = (pictures.noisy_denoised_grid(x, x_noisy, metrics.reconstruct(model, x_noisy)),
                              f"{variant.kind}: denoising under the trained {noise.kind} noise",
                              ["clean", "noisy", "denoised"])
    if variant.variational:
        g = torch.Generator(device=device).manual_seed(seed)
        grids["samples"] = (pictures.samples_grid(pictures.prior_samples(model, N_PRIOR_SAMPLES, g)),
                            f"{N_PRIOR_SAMPLES} samples: z ~ N(0, I) decoded to E[x|z]", [])
        most_active = codes.var(0).argsort(descending=True)[:MAX_TRAVERSED].tolist()
        z0 = torch.zeros(codes.shape[1], device=device)  # the prior's mean; one row per traversed dim
        grids["traversal"] = (pictures.traversal_grid(model, z0, dims=most_active),
                              "traversals: z_j from −3 to 3, the other units at 0 (most active first)",
                              [f"z{j}" for j in most_active])
    zoom = max(1, math.ceil(MIN_TILE_PX / first.shape[-2]))  # small images (8×8 digits) enlarged, pixel for pixel
    images = {name: pictures.labelled(grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2), title, rows)
              for name, (grid, title, rows) in grids.items()}
    images["latent_scatter"] = pictures.latent_scatter_png(
        codes[:SCATTER_MAX], None if labels is None else labels[:SCATTER_MAX], None,
        title=f"{variant.kind}: latent {'means' if variant.variational else 'code'}",
        class_names=getattr(data, "classes", None))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        pictures.save_png(image, out_dir / f"{name}.png")
        tracker.image(f"{tag}/{name}", image, step)
    return [f"{name}.png" for name in images]


def write_projector(run_dir: Path, tracker, codes: torch.Tensor, labels: torch.Tensor | None,
                    first: torch.Tensor, classes: list[str] | None, step: int, max_embed: int) -> None:
    """The TensorBoard projector: latent means of the first examples, labels and sprite thumbnails."""
    n = min(max_embed, len(codes), len(first))
    folder = run_dir / f"{step:05d}" / tracking.EVAL_EMBEDDING
    if folder.is_dir():  # an earlier eval of this checkpoint: replace it rather than add beside it
        shutil.rmtree(folder)
    metadata = None
    if labels is not None:
        names = classes if classes else []
        metadata = [names[y] if 0 <= y < len(names) else str(y) for y in labels[:n].tolist()]
    tracker.embedding(codes[:n], metadata, pictures.sprite_images(first, n), step, tracking.EVAL_EMBEDDING)


# ---------------------------------------------------------------- terminal tables

_ROWS = (  # metric → label, in the order shown
    ("loss", "loss: the training objective{at_beta} (per example)"),
    ("recon", "reconstruction −log p(x|z){recon_of} ({unit})"),
    ("kl", "KL(q(z|x) ‖ p(z)) (nats)"),
    ("neg_elbo", "−ELBO = reconstruction + KL ({unit})"),
    ("nll_iw", "−log p(x), IW bound k={k} ({unit})"),
    ("penalty", "penalty (weighted, per batch as in training)"),
    ("mse", "MSE per element (clean input{at_mu})"),
    ("psnr", "PSNR, MAX={psnr_max:g} (dB)"),
    ("active_units", "active units (of K={latent_dim})"),
    ("rho_hat_mean", "sparsity: mean ρ̂ (ρ={rho})"),
    ("frac_within_2x", "sparsity: share of units with ρ/2 ≤ ρ̂ ≤ 2ρ"),
    ("kl_sparsity", "sparsity: Σ_j KL(ρ ‖ ρ̂_j) over the split"),
    ("code_l1", "L1 of the code (per example)"),
    ("probe_acc", "linear probe accuracy"),
)


def _label_context(result: dict) -> dict:
    likelihood, variational = result["likelihood"], result["model"] == "vae"
    noisy = result["noise"]["kind"] != "none"
    of = [s for s, on in (("the noisy input", noisy), ("one z ~ q(z|x)", variational)) if on]
    return {"k": result["k"], "latent_dim": result["latent_dim"], "rho": result["penalty"].get("rho"),
            "psnr_max": result.get("psnr_max") or 1.0, "at_mu": ", z = μ" if variational else "",
            "at_beta": f" at β={result['beta']:g}" if variational else "",
            "recon_of": f" of {', '.join(of)}" if of else "",
            "unit": "nats" if likelihood["normalised"] else "grey-level Bernoulli CE†"}


def _noise_label(name: str, result: dict) -> str:
    kind, params = (result["noise"]["kind"], result["noise"]) if name == "" else \
        (name, result["robustness_noise"][name])
    strength = f"σ={params['sigma']:g}" if kind == "gaussian" else f"p={params['p']:g}"
    return f"{'trained: ' if name == '' else ''}{kind} {strength}"


def _denoising_cell(values: dict, suffix: str) -> str:
    return f"{format_metric(values[f'psnr_noisy{suffix}'])} noisy → {format_metric(values[f'psnr_denoised{suffix}'])} denoised"


def format_table(result: dict) -> str:
    """The metrics of one run as a two-column table (denoising as noisy → denoised PSNR)."""
    values = result["metrics"]
    context = _label_context(result)
    rows = []
    for key, label in _ROWS:
        if key in values:
            rows.append((label.format(**context), format_metric(values[key])))
        if key == "psnr":  # robustness right below the clean PSNR
            rows += [(f"PSNR under {_noise_label(name, result)} (dB)", _denoising_cell(values, f"_{name}" if name else ""))
                     for name in ("", *ROBUSTNESS_NOISE) if f"psnr_noisy{'_' + name if name else ''}" in values]
        if key == "rho_hat_mean" and "rho_hat_q50" in values:
            rows.append(("sparsity: ρ̂ quantiles 5/25/50/75/95%",
                         " / ".join(format_metric(values[f"rho_hat_q{q}"]) for q in ("05", "25", "50", "75", "95"))))
    head = (f"{result['run']}: {result['model']}, step {result['step']}, "
            f"{result['dataset']} {result['split']} split ({result['n']} examples)")
    body = [f"  {line}" for line in align_rows([list(row) for row in rows])]
    note = textwrap.wrap(result["likelihood"]["note"], 96, initial_indent="  † ", subsequent_indent="    ") \
        if "note" in result["likelihood"] else []
    return "\n".join([head, *body, *note, f"  → {Path(result['run']) / 'eval' / result['name']}"])


_SWEEP_COLUMNS = (("psnr", "PSNR"), ("mse", "MSE"), ("recon", "recon"), ("neg_elbo", "−ELBO"),
                  ("nll_iw", "NLL (IW)"), ("active_units", "AU"), ("rho_hat_mean", "mean ρ̂"),
                  ("psnr_denoised_gaussian", "PSNR σ=.3"), ("probe_acc", "probe"))


def format_sweep_table(results: list[dict], root: Path) -> str:
    """One row per job of a sweep, the main metrics side by side."""
    columns = [(key, title) for key, title in _SWEEP_COLUMNS if any(key in r["metrics"] for r in results)]
    rows = [["job", "model", *(title for _, title in columns)]]
    for r in results:
        job = Path(r["run"]).relative_to(root) if Path(r["run"]).is_relative_to(root) else Path(r["run"])
        rows.append([str(job) if str(job) != "." else Path(r["run"]).name, r["model"],
                     *(format_metric(r["metrics"][key]) if key in r["metrics"] else "—" for key, _ in columns)])
    lines = align_rows(rows, right=range(2, len(rows[0])))  # job and model left, the numbers right
    return "\n".join([f"{root}: {len(results)} runs", *lines])
