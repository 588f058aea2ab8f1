"""The training loop: reads top to bottom. Components arrive built; this module runs them.

Randomness is re-seeded from (seed, epoch) at the start of every epoch and evaluation runs on
a forked RNG, so a run resumed from a checkpoint replays exactly the batches, noise and ε of
an uninterrupted one; a checkpoint written mid-epoch (on a signal) also holds the batch index
and the RNG state, to continue inside the epoch. Non-finite values are caught at the loop's
existing sync points (aectl.guards).
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
from tqdm.contrib.logging import logging_redirect_tqdm

from aectl import guards, tracking
from aectl.checkpoint import save_checkpoint
from aectl.config import TrainerConfig
from aectl.data import DataSplits
from aectl.distributed import Distributed
from aectl.errors import ConfigError
from aectl.models import ModelOutput, mean_reconstruction
from aectl.noise import Corruption
from aectl.objective import TERMS, Objective
from aectl.progress import progress_bar
from aectl.signals import Interrupted
from aectl.validation import evaluate_split, mean_image_psnr

log = logging.getLogger(__name__)
Corrupt = Corruption


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


def make_optimizer(kind: str, params, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.Optimizer:
    """`fused` (trainer.on_nonfinite=skip_batch): the fused kernel, which can skip a step on a
    flag computed on the device (aectl.guards)."""
    extra = {"fused": True} if fused else {}
    try:
        if kind == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
        if kind == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, **extra)
    except RuntimeError as err:
        raise ConfigError("trainer.on_nonfinite", "skip_batch", f"stop (this torch has no fused {kind} for these "
                          f"parameters: {str(err).splitlines()[0]})") from None


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


@dataclass
class Progress:
    """Where training stands: what a checkpoint must restore besides weights and optimizer."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    batch: int = 0  # batches done in the current epoch (non-zero in a checkpoint written mid-epoch)
    val_history: list[float] = field(default_factory=list)  # val loss after each epoch, over every resume
    train_time_s: float = 0.0  # training time before this process (the resumed segments)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x_in: torch.Tensor, x: torch.Tensor,
               objective: Objective, beta: float, grad_clip: float, autocast,
               skip_nonfinite: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on (x_in → x); returns the detached loss terms and the gradient norm
    (None unless clipping or skip_nonfinite computes it), without a host sync. With
    skip_nonfinite (a fused optimizer) a non-finite loss or gradient skips the update."""
    with autocast:
        loss, terms = objective(model(x_in), x, beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = None
    if grad_clip:
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    elif skip_nonfinite:
        grad_norm = guards.grad_norm(model.parameters())
    if skip_nonfinite:
        guards.skip_if_nonfinite(optimizer, loss.detach(), grad_norm)
    optimizer.step()
    return terms, grad_norm


def evaluate(model: nn.Module, x_all: torch.Tensor, data: DataSplits, objective: Objective, corrupt: Corrupt,
             beta: float, batch_size: int, seed: int = 0) -> dict[str, float]:
    """The metrics of a split at the target β (aectl.validation: the same definitions as
    `aectl eval`), on a fixed seed: comparable across epochs, and invisible to training."""
    return evaluate_split(model, data.batches(x_all, batch_size), objective, corrupt, beta, data.known_range,
                          corrupt.noisy, seed)


@torch.no_grad()
def log_images(model: nn.Module, x: torch.Tensor, corrupt: Corrupt, tracker, step: int) -> None:
    """Inputs, noisy inputs, reconstructions, prior samples and latent histograms of a batch."""
    from torchvision.utils import make_grid

    model.eval()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(step)
        x_in = corrupt(x)
        out: ModelOutput = model(x_in)
        mean = lambda r: mean_reconstruction(model, r).float().clamp(0, 1)  # noqa: E731
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
    """Keeps each step's loss terms (and gradient norm) in a device buffer and writes their means
    every `every` steps: the only host sync of the loop. The same read shows `watch` every
    step's values, so non-finite ones are caught without a sync of their own (aectl.guards)."""

    def __init__(self, tracker, every: int, batch_size: int, device: torch.device, objective: Objective,
                 dist: Distributed | None = None, watch: guards.NonFiniteWatch | None = None):
        self.tracker, self.every, self.batch_size, self.dist = tracker, every, batch_size, dist or Distributed()
        self.objective = objective
        self.watch = watch or guards.NonFiniteWatch("stop", 1)
        self.rows = torch.zeros(every, len(TERMS) + 1, device=device)  # TERMS, then the gradient norm
        self.term_rows, self.norm_rows = self.rows[:, :len(TERMS)].unbind(0), self.rows[:, len(TERMS)].unbind(0)
        self.read: list[list[float]] = []  # this interval's rows already read and judged
        self.betas: list[float] = []  # each step's β (known on the host: no device work)
        self.steps, self.start = 0, time.perf_counter()

    def add(self, terms: torch.Tensor, beta: float, step: int, lr: float, bar,
            grad_norm: torch.Tensor | None = None) -> None:
        self.term_rows[self.steps].copy_(terms)
        self.betas.append(beta)
        if grad_norm is not None:
            self.norm_rows[self.steps].copy_(grad_norm)
        self.steps += 1
        if step % self.every == 0:
            self.write(step, lr, bar)

    def check(self, step: int) -> None:
        """Read the rows not read yet (summed over ranks) and let the watch judge them: before
        anything is validated or saved, and at log time."""
        rows = self.dist.all_reduce(self.rows[len(self.read):self.steps].clone()).tolist()
        self.watch.inspect(rows, step - len(rows) + 1)
        self.read.extend(rows)

    def write(self, step: int, lr: float, bar) -> None:
        self.check(step)
        # Skipped batches (skip_batch) are left out of the means; β·KL is averaged step by step.
        finite = [self.objective.named(row, beta)
                  for row, beta in zip(self.read, self.betas) if guards.blame(row) is None]
        speed = self.steps * self.batch_size / (time.perf_counter() - self.start)
        if finite:
            means = {name: sum(terms[name] for terms in finite) / len(finite) for name in finite[0]}
            self.tracker.scalars(tracking.TRAIN, means, step)
            bar.set_postfix(loss=f"{means['loss']:.4g}", samples_s=f"{speed:.0f}")
        self.tracker.scalar(tracking.CHARTS_LR, lr, step)
        self.tracker.scalar(tracking.CHARTS_SPEED, speed, step)
        if self.watch.skip:
            self.tracker.scalar(tracking.TRAIN_SKIPPED, self.watch.skipped, step)
        self.read, self.betas, self.steps, self.start = [], [], 0, time.perf_counter()


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
    skip_nonfinite: bool = False  # trainer.on_nonfinite=skip_batch (a fused optimizer skips bad batches)


def make_loop(model: nn.Module, objective: Objective, corrupt: Corrupt, beta_at: Callable[[int], float],
              settings: TrainerConfig, dist: Distributed | None = None) -> Loop:
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16"
                else contextlib.nullcontext())
    dist = dist or Distributed()
    step_model = dist.wrap(model)
    skip = settings.on_nonfinite == "skip_batch"
    return Loop(model, torch.compile(step_model) if settings.compile else step_model,
                make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay, fused=skip),
                objective, corrupt, beta_at, autocast, settings.grad_clip, settings.batch_size, settings.seed, dist,
                skip)


def train_epoch(loop: Loop, data: DataSplits, epoch: int, progress: Progress, interval: IntervalLog, bar,
                stop_requested: Callable[[], int] | None = None, rng: dict | None = None) -> int:
    """One pass over data.train in the order fixed by (seed, epoch), from batch `progress.batch`
    on (resuming a checkpoint written mid-epoch, whose RNG state is `rng`). Returns the signal
    number `stop_requested` gave after a step, or 0 once the epoch is done."""
    torch.manual_seed(epoch_seed(loop.seed, epoch))
    dist, done = loop.dist, progress.batch
    for x in data.batches(data.train, loop.batch_size, shuffle=True):
        if done:  # trained before the checkpoint: same permutation, then the RNG where it stopped
            done -= 1
            if not done:
                guards.set_rng_state(rng, x.device)
            continue
        x_in, x = dist.shard(loop.corrupt(x)), dist.shard(x)  # this rank's part of the global batch
        beta = loop.beta_at(progress.step)
        with dist.own_rng(loop.seed, progress.step):
            terms, grad_norm = train_step(loop.step_model, loop.optimizer, x_in, x, loop.objective, beta,
                                          loop.grad_clip, loop.autocast, loop.skip_nonfinite)
        progress.step += 1
        progress.batch += 1
        bar.update()
        interval.add(dist.weigh(terms), beta, progress.step, loop.optimizer.param_groups[0]["lr"], bar, grad_norm)
        if stop_requested is not None and (signum := stop_requested()):
            return signum
    return 0


def fit(model: nn.Module, data: DataSplits, objective: Objective, corrupt: Corrupt,
        beta_at: Callable[[int], float], target_beta: float, settings: TrainerConfig, run_dir: Path,
        tracker, checkpoint_meta: dict, resume: dict | None = None, dist: Distributed | None = None,
        stop_requested: Callable[[], int] | None = None) -> dict:
    """Train `model` on data.train, validate each epoch, checkpoint, and return the final metrics.

    `beta_at(step)` gives the KL weight; validation uses `target_beta` (annealing is a training
    device, the model is judged on the objective it converges to). `checkpoint_meta` (model
    kind/kwargs, config) is stored in every checkpoint; `resume` is a loaded checkpoint.
    `dist` splits batches across torchrun's ranks (aectl.distributed); only its main rank writes.
    `stop_requested()` (a signal number or 0) is read after every step: non-zero saves last.pt
    mid-epoch and raises signals.Interrupted.
    """
    dist = dist or Distributed()
    loop = make_loop(model, objective, corrupt, beta_at, settings, dist)
    progress = Progress()
    last = run_dir / "checkpoints" / "last.pt"
    watch = guards.NonFiniteWatch(settings.on_nonfinite, settings.max_skipped_batches,
                                  last if last.is_file() else None)
    if resume is not None:
        loop.optimizer.load_state_dict(resume["optimizer"])
        for group in loop.optimizer.param_groups:  # the config wins: `trainer.lr=…` at resume applies
            group.update(lr=settings.lr, weight_decay=settings.weight_decay)
        history = resume.get("history", {})
        progress = Progress(resume["step"], resume["epoch"], resume["best_val_loss"], resume.get("batch", 0),
                            list(history.get("val_loss", [])), history.get("train_time_s", 0.0))
        watch = guards.NonFiniteWatch(settings.on_nonfinite, settings.max_skipped_batches, watch.last_good,
                                      **resume.get("nonfinite", {}))
        if progress.epoch >= settings.epochs:
            log.info("the checkpoint already finished all %d epochs: nothing to train", settings.epochs)
            return {}
        log.info("resuming at epoch %d, batch %d, step %d", progress.epoch, progress.batch, progress.step)
    eval_batch = max(settings.batch_size, 512)
    device = next(model.parameters()).device
    start = time.perf_counter()

    def elapsed() -> float:  # training time of the whole run, over every resume
        return progress.train_time_s + time.perf_counter() - start

    def checkpoint(name: str) -> Path | None:
        watch.check_weights(model, progress.step)  # a checkpoint never holds non-finite weights
        if not dist.is_main:
            return None
        save_checkpoint(run_dir / "checkpoints" / name, {
            **checkpoint_meta, "state_dict": model.state_dict(), "optimizer": loop.optimizer.state_dict(),
            "step": progress.step, "epoch": progress.epoch, "batch": progress.batch,
            "best_val_loss": progress.best_val_loss, "rng": guards.rng_state(device), "nonfinite": watch.state(),
            "history": {"val_loss": progress.val_history, "train_time_s": elapsed()}})
        if name == "last.pt":
            watch.last_good = run_dir / "checkpoints" / name
        return run_dir / "checkpoints" / name

    def flush_interval() -> None:  # the last, partial log_every interval: a short run has curves too
        if interval.steps:
            interval.write(progress.step, loop.optimizer.param_groups[0]["lr"], bar)

    def interrupt(signum: int):
        path = checkpoint("last.pt")
        flush_interval()
        tracker.flush()
        return Interrupted(signum, progress.step, path)

    bar = progress_bar(total=settings.epochs * math.ceil(len(data.train) / settings.batch_size), initial=progress.step,
               unit="step", disable=not settings.progress or not dist.is_main, dynamic_ncols=True, mininterval=0.5)
    interval = IntervalLog(tracker, settings.log_every, settings.batch_size, data.train.device, objective, dist, watch)
    model.train()
    with logging_redirect_tqdm():
        for epoch in range(progress.epoch, settings.epochs):
            bar.set_description(f"epoch {epoch + 1}/{settings.epochs}")
            signum = train_epoch(loop, data, epoch, progress, interval, bar, stop_requested,
                                 resume["rng"] if progress.batch else None)
            interval.check(progress.step)  # nothing non-finite is validated or saved
            if signum:
                raise interrupt(signum)
            progress.epoch, progress.batch = epoch + 1, 0
            val = evaluate(model, data.val, data, objective, corrupt, target_beta, eval_batch)
            progress.val_history.append(val["loss"])
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
            signum = stop_requested() if stop_requested is not None else 0  # read once: a read may consume it
            if signum and progress.epoch < settings.epochs:
                raise interrupt(signum)  # it came during validation: stop at the epoch boundary
    flush_interval()
    bar.close()
    final = {split: evaluate(model, getattr(data, split), data, objective, corrupt, target_beta, eval_batch)
             for split in ("train", "val", "test") if len(getattr(data, split))}
    if len(data.val):
        final["val_psnr_mean_image"] = mean_image_psnr(data.batches(data.train, eval_batch),
                                                       data.batches(data.val, eval_batch), data.known_range)
    final.update(best_val_loss=progress.best_val_loss, val_loss_history=progress.val_history, epochs=progress.epoch,
                 steps=progress.step, train_time_s=round(elapsed(), 3), overrides=checkpoint_meta.get("overrides", []),
                 resumed_with=checkpoint_meta.get("resumed_with", []))
    if dist.is_main:
        (run_dir / "metrics.json").write_text(json.dumps(final, indent=2))
    return final
