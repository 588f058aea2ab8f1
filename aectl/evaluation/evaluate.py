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
import time
import warnings
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from aectl.config import DatasetConfig, EvalConfig
from aectl.config.checks import validate_dataset
from aectl.config.errors import AectlError, ConfigError, DataError
from aectl.config.option_fields import check_dataset_overrides
from aectl.datasets import DataSplits, load_dataset
from aectl.datasets.noise import Corruption
from aectl.evaluation.eval_pictures import N_PICTURES, write_pictures, write_projector
from aectl.evaluation.eval_tables import format_sweep_table, format_table
from aectl.evaluation.validation import SplitMetrics
from aectl.evaluation.variant import Variant
from aectl.objectives import metrics, sae
from aectl.runs import tracking
from aectl.runs.checkpoint import load_checkpoint, rebuild_model
from aectl.runs.runfolder import eval_name, find_checkpoints, run_dir_of
from aectl.runtime.progress import note, progress_bar

log = logging.getLogger(__name__)

# A VQ-VAE's prior over codes must be learnt (a PixelCNN, van den Oord et al. 2017, §3.1): no samples.
VQ_NO_SAMPLES = ("no samples: a VQ-VAE needs a learned prior over its codes (a PixelCNN, van den Oord et al. 2017, "
                 "§3.1), which aectl does not train")

# Every model also faces the three corruptions at the strengths of the published noisy-MNIST
# numbers, whatever it was trained with, so robustness compares across variants.
ROBUSTNESS_NOISE = {"gaussian": {"sigma": 0.3, "clip": True}, "salt_pepper": {"p": 0.25}, "masking": {"p": 0.25}}
IW_CHUNK = 4096  # decoder rows per pass of the IW estimate: bounds memory for any k; on a CPU
# larger passes were no faster (benchmarks/eval_throughput.py --chunks)
PROBE_MAX_TRAIN = 10_000  # train examples the linear probe is fitted on (bounds its cost)


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
    from aectl.runtime.device import resolve_device

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
    if variant.conditional and labels is None:
        raise DataError(f"model=cvae needs labels: dataset.name={dataset.name} has none in its {settings.split} split")
    torch.manual_seed(settings.seed)  # a dynamically binarized train split draws from the global RNG
    keep = max(N_PICTURES, settings.max_embed if settings.projector else 0)
    values, codes, first = split_metrics(model, data, x_all, variant, settings, keep, labels)
    likelihood = likelihood_info(model, values.pop("binary_data"))
    labels = None if labels is None else labels.cpu()
    probe = probe_accuracy(model, data, codes, labels, settings.batch_size, variant.conditional, settings.progress)
    if probe is not None:
        values["probe_acc"] = probe[0]

    if variant.kind == "sae" and data.directions is not None:  # ground truth: the decoder rows against it
        values.update(sae.direction_recovery(data.directions, model.W_dec.detach()))
    projector = settings.projector and variant.kind != "sae"  # an sae's rows are no images to show
    if variant.kind == "vqvae":
        log.info("aectl eval: %s", VQ_NO_SAMPLES)
    run_dir, step = run_dir_of(path), ckpt["step"]
    name = eval_name(path, settings.split, settings.k if variant.variational else None, settings.limit)
    out_dir, tag = run_dir / "eval" / name, f"{tracking.EVAL}/{name}"
    tracker = tracking.TensorBoardTracker(run_dir)
    try:
        tracker.table(tag, values, step)
        images = write_pictures(model, first, codes, labels, variant, variant.trained_noise(data_range(data)),
                                getattr(data, "classes", None), settings.split, settings.seed, out_dir, tracker, tag,
                                step)
        if projector:
            write_projector(run_dir, tracker, codes, labels, first, getattr(data, "classes", None), step,
                            settings.max_embed)
    finally:
        tracker.close()
    result = {
        "checkpoint": str(path), "run": str(run_dir), "model": variant.kind, "step": step,
        "epoch": ckpt["epoch"], "dataset": dataset.name, "split": settings.split, "n": len(x_all),
        "limit": settings.limit or None, "name": name,
        "latent_dim": codes.shape[1], **_prior_fields(model), "seed": settings.seed,
        "k": settings.k if variant.variational else None,
        "noise": vars(variant.trained_noise(data_range(data))), "beta": variant.beta if variant.variational else None,
        "robustness_noise": ROBUSTNESS_NOISE, "penalty": variant.penalty, "likelihood": likelihood,
        "psnr_max": None if data.known_range is None else data.known_range[1] - data.known_range[0],
        "probe_train_n": probe[1] if probe else None, "metrics": values, "pictures": images,
        **({"samples": VQ_NO_SAMPLES} if variant.kind == "vqvae" else {}),
        "projector": str(run_dir / f"{step:05d}" / tracking.EVAL_EMBEDDING) if projector else None,
        "time_s": round(time.perf_counter() - start, 3),
    }
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _prior_fields(model: nn.Module) -> dict:
    """What the tables say about a prior other than N(0, I): a VampPrior's pseudo-inputs, a two-layer
    model's sizes."""
    if getattr(model, "pseudo_inputs", None) is not None:
        return {"prior": "vamp", "pseudo_inputs": len(model.pseudo_inputs.raw)}
    if hasattr(model, "latent_dims"):
        return {"latent_dims": list(model.latent_dims), "train_k": model.k}
    return {}


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
    check_dataset_overrides(config.name, overrides)
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
                  keep: int, labels: torch.Tensor | None = None) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """One pass over the split: the metrics training's validation computes (aectl.evaluation.validation,
    at the trained β and noise), the robustness scores and the VAE's IW estimate; returns their
    means, the codes (N, K) on the CPU and the first `keep` inputs (pictures, projector sprite).
    A conditional model is given the split's `labels`: its IW estimate is of log p(x|y)."""
    device = next(model.parameters()).device
    noises = robustness_noises(data_range(data))
    gens = {name: torch.Generator(device=device).manual_seed(settings.seed + i)
            for i, name in enumerate([*noises, "iw"])}
    trained_noise = variant.trained_noise(data_range(data))
    split = SplitMetrics(variant.objective(model), trained_noise, variant.beta, data.known_range, trained_noise.noisy)
    codes, first = [], []
    batches = math.ceil(len(x_all) / settings.batch_size)
    desc = f"eval {variant.kind}" + (f" (IW k={settings.k})" if variant.variational else "")
    y = None
    for x in progress_bar(data.batches(x_all, settings.batch_size, labels=labels if variant.conditional else None),
                          total=batches, desc=desc, unit="batch", disable=not settings.progress, leave=False,
                          dynamic_ncols=True):
        if variant.conditional:
            x, y = x[0], x[1].to(device)
        codes.append(split.add(model, x, y))  # kept on the device: no host sync per batch
        given = model if y is None else model.given(y)  # q(z|x,y), p(x|z,y) for a cvae
        if data.known_range is not None:
            for name, corruption in noises.items():
                scores = metrics.denoising_psnr(given, x, corruption, generator=gens[name],
                                                max_val=split.psnr_max)
                split.accumulate(f"psnr_noisy_{name}", scores.noisy)
                split.accumulate(f"psnr_denoised_{name}", scores.denoised)
        if variant.variational:
            split.accumulate("nll_iw", -metrics.iw_log_likelihood(given, x, settings.k, chunk=IW_CHUNK,
                                                                  generator=gens["iw"]))
        if sum(len(f) for f in first) < keep:
            first.append(x)
    codes = torch.cat(codes)
    values = split.result(codes)
    values["binary_data"] = split.data_is_binary()
    return values, codes.cpu(), torch.cat(first)[:keep].cpu()


def probe_accuracy(model: nn.Module, data: DataSplits, codes: torch.Tensor, labels: torch.Tensor | None,
                   batch_size: int, conditional: bool = False, progress: bool = False) -> tuple[float, int] | None:
    """(accuracy, train examples) of a linear probe fitted on the train split's latent means and
    scored on the evaluated split's; None without labels or with a single class. A conditional
    model's means are of q(z|x,y): the probe then says how much of the label z still holds.
    The train codes get a progress bar; the fit, one call that can take minutes (a sparse AE's
    1000-unit code), a line before it starts and one after."""
    if labels is None or data.train_labels is None:
        return None
    train_codes, n = [], 0
    batches = data.batches(data.train, batch_size, labels=data.train_labels if conditional else None)
    with progress_bar(batches, total=math.ceil(min(len(data.train), PROBE_MAX_TRAIN) / batch_size),
                      desc="probe: encoding the train split", unit="batch", disable=not progress, leave=False,
                      dynamic_ncols=True) as bar:
        for x in bar:
            given = model.given(x[1]) if conditional else model
            x = x[0] if conditional else x
            train_codes.append(metrics.latent_means(given, x).float().cpu())
            n += len(x)
            if n >= PROBE_MAX_TRAIN:
                break
    z_train = torch.cat(train_codes)[:PROBE_MAX_TRAIN]
    y_train = data.train_labels[:len(z_train)].cpu()
    if len(y_train.unique()) < 2:
        return None
    from sklearn.exceptions import ConvergenceWarning

    note(f"probe: fitting a logistic regression on {len(z_train)} train codes of {z_train.shape[1]} dims",
         disable=not progress)
    start = time.perf_counter()
    with warnings.catch_warnings():  # an unconverged probe still scores; keep the terminal table readable
        warnings.simplefilter("ignore", ConvergenceWarning)
        accuracy = metrics.linear_probe(z_train, y_train, codes, labels)
    note(f"probe: fitted in {time.perf_counter() - start:.1f} s", disable=not progress)
    return accuracy, len(z_train)
