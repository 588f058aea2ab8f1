"""The training loop: reads top to bottom. Components arrive built; this module runs them.

Randomness is re-seeded from (seed, epoch) at the start of every epoch and evaluation runs on
a forked RNG, so a run resumed from a checkpoint replays exactly the batches, noise and ε of
an uninterrupted one.
"""

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from aectl import tracking
from aectl.checkpoint import save_checkpoint
from aectl.config import TrainerConfig
from aectl.data import DataSplits
from aectl.distributed import Distributed
from aectl.errors import ConfigError
from aectl.models import ModelOutput
from aectl.objective import TERMS, Objective

log = logging.getLogger(__name__)
Corrupt = Callable[[torch.Tensor], torch.Tensor]


def resolve_device(name: str) -> torch.device:
    """auto → cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", name, "CUDA is not available on this machine; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("trainer.device", name, "MPS is not available on this machine; use auto or cpu")
    return torch.device(name)


def make_optimizer(kind: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


@dataclass
class Progress:
    """Where training stands: what a checkpoint must restore besides weights and optimizer."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x_in: torch.Tensor, x: torch.Tensor,
               objective: Objective, beta: float, grad_clip: float, autocast) -> torch.Tensor:
    """One optimizer step on (x_in → x); returns the detached loss terms (no host sync)."""
    with autocast:
        loss, terms = objective(model(x_in), x, beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return terms


@torch.no_grad()
def evaluate(model: nn.Module, x_all: torch.Tensor, data: DataSplits, objective: Objective, corrupt: Corrupt,
             beta: float, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Mean loss terms over a split at the target β, plus PSNR and code statistics. Runs on a
    forked RNG with a fixed seed: comparable across epochs, and invisible to training."""
    was_training = model.training
    model.eval()
    devices = [x_all.device] if x_all.device.type == "cuda" else []
    sums, psnr_sum, mus, codes = torch.zeros(len(TERMS), device=x_all.device), 0.0, [], []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for x in data.batches(x_all, batch_size):
            out = model(corrupt(x))
            _, terms = objective(out, x, beta)
            sums += terms * len(x)
            mean = out.recon.sigmoid() if objective.likelihood == "bernoulli" else out.recon
            mse = (mean.float() - x).square().flatten(1).mean(1).clamp_min(1e-10)
            psnr_sum += (10 * torch.log10(1 / mse)).sum()
            mus.append(out.mu if out.mu is not None else out.z)
    model.train(was_training)
    metrics = dict(zip(TERMS, (sums / len(x_all)).tolist()))
    metrics["psnr"] = float(psnr_sum / len(x_all))
    code = torch.cat(mus)
    if objective.variational:
        metrics["active_units"] = int((code.float().var(0, unbiased=False) > 0.01).sum())
    if objective.penalty != "none":
        metrics["rho_hat_mean"] = float(code.float().mean())
    return metrics


@torch.no_grad()
def log_images(model: nn.Module, x: torch.Tensor, corrupt: Corrupt, tracker, step: int) -> None:
    """Inputs, noisy inputs, reconstructions, prior samples and latent histograms of a batch."""
    from torchvision.utils import make_grid

    model.eval()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(step)
        x_in = corrupt(x)
        out: ModelOutput = model(x_in)
        mean = lambda r: (r.sigmoid() if model.likelihood == "bernoulli" else r).float().clamp(0, 1)  # noqa: E731
        grid = lambda t: make_grid(t.cpu(), nrow=8, pad_value=1.0)  # noqa: E731
        tracker.image(tracking.IMG_INPUT, grid(x), step)
        if x_in is not x:
            tracker.image(tracking.IMG_NOISY, grid(x_in.clamp(0, 1)), step)
        tracker.image(tracking.IMG_RECON, grid(mean(out.recon)), step)
        tracker.histogram(tracking.HIST_Z, out.z, step)
        if out.mu is not None:
            tracker.histogram(tracking.HIST_MU, out.mu, step)
            tracker.histogram(tracking.HIST_LOGVAR, out.logvar, step)
            z = torch.randn(len(x), out.mu.shape[1], device=x.device)
            tracker.image(tracking.IMG_SAMPLES, grid(mean(model.decode(z))), step)
    model.train()


class IntervalLog:
    """Sums the per-step loss terms on the device and writes their means every `every` steps:
    the only host sync of the loop."""

    def __init__(self, tracker, every: int, batch_size: int, device: torch.device, dist: Distributed | None = None):
        self.tracker, self.every, self.batch_size, self.dist = tracker, every, batch_size, dist or Distributed()
        self.sums = torch.zeros(len(TERMS), device=device)
        self.steps, self.start = 0, time.perf_counter()

    def add(self, terms: torch.Tensor, step: int, lr: float, bar) -> None:
        self.sums += terms
        self.steps += 1
        if step % self.every:
            return
        means = dict(zip(TERMS, (self.dist.all_reduce(self.sums) / self.steps).tolist()))
        speed = self.steps * self.batch_size / (time.perf_counter() - self.start)
        self.tracker.scalars(tracking.TRAIN, means, step)
        self.tracker.scalar(tracking.CHARTS_LR, lr, step)
        self.tracker.scalar(tracking.CHARTS_SPEED, speed, step)
        bar.set_postfix(loss=f"{means['loss']:.4g}", samples_s=f"{speed:.0f}")
        self.sums.zero_()
        self.steps, self.start = 0, time.perf_counter()


@dataclass
class Loop:
    """What an optimizer step needs, built once per run."""

    model: nn.Module  # the plain module (its state_dict is what checkpoints hold)
    step_model: nn.Module  # the module the step calls: `model`, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    objective: Objective
    corrupt: Corrupt
    beta_at: Callable[[int], float]
    autocast: contextlib.AbstractContextManager
    grad_clip: float
    batch_size: int
    seed: int
    dist: Distributed = field(default_factory=Distributed)  # torchrun ranks: shards and reductions


def make_loop(model: nn.Module, objective: Objective, corrupt: Corrupt, beta_at: Callable[[int], float],
              settings: TrainerConfig, dist: Distributed | None = None) -> Loop:
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16"
                else contextlib.nullcontext())
    dist = dist or Distributed()
    step_model = dist.wrap(model)
    return Loop(model, torch.compile(step_model) if settings.compile else step_model,
                make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay),
                objective, corrupt, beta_at, autocast, settings.grad_clip, settings.batch_size, settings.seed, dist)


def train_epoch(loop: Loop, data: DataSplits, epoch: int, progress: Progress, interval: IntervalLog, bar) -> None:
    """One pass over data.train in the order fixed by (seed, epoch)."""
    torch.manual_seed(epoch_seed(loop.seed, epoch))
    dist = loop.dist
    for x in data.batches(data.train, loop.batch_size, shuffle=True):
        x_in, x = dist.shard(loop.corrupt(x)), dist.shard(x)  # this rank's part of the global batch
        with dist.own_rng(loop.seed, progress.step):
            terms = train_step(loop.step_model, loop.optimizer, x_in, x, loop.objective,
                               loop.beta_at(progress.step), loop.grad_clip, loop.autocast)
        progress.step += 1
        bar.update()
        interval.add(dist.weigh(terms), progress.step, loop.optimizer.param_groups[0]["lr"], bar)


def fit(model: nn.Module, data: DataSplits, objective: Objective, corrupt: Corrupt,
        beta_at: Callable[[int], float], target_beta: float, settings: TrainerConfig, run_dir: Path,
        tracker, checkpoint_meta: dict, resume: dict | None = None, dist: Distributed | None = None) -> dict:
    """Train `model` on data.train, validate each epoch, checkpoint, and return the final metrics.

    `beta_at(step)` gives the KL weight; validation uses `target_beta` (annealing is a training
    device, the model is judged on the objective it converges to). `checkpoint_meta` (model
    kind/kwargs, config) is stored in every checkpoint; `resume` is a loaded checkpoint.
    `dist` splits batches across torchrun's ranks (aectl.distributed); only its main rank writes.
    """
    dist = dist or Distributed()
    loop = make_loop(model, objective, corrupt, beta_at, settings, dist)
    progress = Progress()
    if resume is not None:
        loop.optimizer.load_state_dict(resume["optimizer"])
        progress = Progress(resume["step"], resume["epoch"], resume["best_val_loss"])
        if progress.epoch >= settings.epochs:
            log.info("the checkpoint already finished all %d epochs: nothing to train", settings.epochs)
            return {}
        log.info("resuming at epoch %d, step %d", progress.epoch, progress.step)
    eval_batch = max(settings.batch_size, 512)

    def checkpoint(name: str) -> None:
        if not dist.is_main:
            return
        save_checkpoint(run_dir / "checkpoints" / name, {
            **checkpoint_meta, "state_dict": model.state_dict(), "optimizer": loop.optimizer.state_dict(),
            "step": progress.step, "epoch": progress.epoch, "best_val_loss": progress.best_val_loss,
            "rng": {"cpu": torch.get_rng_state()}})

    bar = tqdm(total=settings.epochs * math.ceil(len(data.train) / settings.batch_size), initial=progress.step,
               unit="step", disable=not settings.progress or not dist.is_main, dynamic_ncols=True, mininterval=0.5)
    interval = IntervalLog(tracker, settings.log_every, settings.batch_size, data.train.device, dist)
    val_history, train_start = [], time.perf_counter()
    model.train()
    with logging_redirect_tqdm():
        for epoch in range(progress.epoch, settings.epochs):
            bar.set_description(f"epoch {epoch + 1}/{settings.epochs}")
            train_epoch(loop, data, epoch, progress, interval, bar)
            progress.epoch = epoch + 1
            val = evaluate(model, data.val, data, objective, corrupt, target_beta, eval_batch)
            val_history.append(val["loss"])
            tracker.scalars(tracking.VAL, val, progress.step)
            log.info("epoch %d/%d step %d: val loss %.5g", progress.epoch, settings.epochs, progress.step,
                     val["loss"])
            if progress.epoch % settings.images_every == 0 or progress.epoch == settings.epochs:
                log_images(model, data.as_float(data.val[:32]), corrupt, tracker, progress.step)
            if val["loss"] < progress.best_val_loss:
                progress.best_val_loss = val["loss"]
                checkpoint("best.pt")
            if progress.epoch % settings.save_every == 0 or progress.epoch == settings.epochs:
                checkpoint("last.pt")
            tracker.flush()
    bar.close()
    metrics = {split: evaluate(model, getattr(data, split), data, objective, corrupt, target_beta, eval_batch)
               for split in ("train", "val", "test") if len(getattr(data, split))}
    metrics.update(best_val_loss=progress.best_val_loss, val_loss_history=val_history, epochs=progress.epoch,
                   steps=progress.step, train_time_s=round(time.perf_counter() - train_start, 3))
    if dist.is_main:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
