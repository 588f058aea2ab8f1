"""The training loop: reads top to bottom. Components arrive built (aectl.training.build); this module
runs them.

Randomness is re-seeded from (seed, epoch) at the start of every epoch and validation runs on
a forked RNG, so a run resumed from a checkpoint replays exactly the batches, noise and ε of
an uninterrupted one; a checkpoint written mid-epoch (on a signal) also holds the batch index
and the RNG state, to continue inside the epoch. Non-finite values are caught at the loop's
existing sync points (aectl.training.guards).
"""

import logging
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.contrib.logging import logging_redirect_tqdm

from aectl.config import LRScheduleConfig, TrainerConfig
from aectl.datasets import DataSplits
from aectl.datasets.noise import Corruption
from aectl.evaluation.validation import evaluate_split
from aectl.objectives.objective import Objective
from aectl.runs import tracking
from aectl.runs.checkpoint import save_checkpoint
from aectl.runs.signals import Interrupted
from aectl.runtime.distributed import Distributed
from aectl.runtime.progress import progress_bar
from aectl.training import guards, run_record
from aectl.training.lr_schedules import Plateau
from aectl.config.monitoring import primary
from aectl.training.monitor import epoch_score, score_value, watched
from aectl.training.optim import epoch_seed
from aectl.training.pruning import prune_when_told
from aectl.training.training_log import IntervalLog, log_images, val_line, val_log_due

from aectl.training.loop import Loop, Progress, make_loop

log = logging.getLogger(__name__)

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x_in: torch.Tensor, x: torch.Tensor,
               objective: Objective, beta: float, grad_clip: float, autocast,
               skip_nonfinite: bool = False, y: torch.Tensor | None = None,
               upkeep: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on (x_in → x); returns the detached loss terms and the gradient norm
    (None unless clipping or skip_nonfinite computes it), without a host sync. With
    skip_nonfinite (a fused optimizer) a non-finite loss or gradient skips the update. `y`: the
    labels a conditional model takes (model(x_in, y)); None for every other model. `upkeep`: the
    plain module whose `before_optimizer_step` / `after_optimizer_step` run around the update
    (a sparse autoencoder's decoder-norm recipe), or None."""
    with autocast:
        _, loss, terms = objective.step(model, x_in, x, beta, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if upkeep is not None:  # before clipping: the clipped norm is of the gradient the step takes
        upkeep.before_optimizer_step()
    grad_norm = None
    if grad_clip:
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    elif skip_nonfinite:
        grad_norm = guards.grad_norm(model.parameters())
    if skip_nonfinite:
        guards.skip_if_nonfinite(optimizer, loss.detach(), grad_norm)
    optimizer.step()
    if upkeep is not None:
        upkeep.after_optimizer_step()
    return terms, grad_norm


def train_epoch(loop: Loop, data: DataSplits, epoch: int, progress: Progress, interval: IntervalLog, bar,
                stop_requested: Callable[[], int] | None = None, rng: dict | None = None) -> int:
    """One pass over data.train in the order fixed by (seed, epoch), from batch `progress.batch`
    on (resuming a checkpoint written mid-epoch, whose RNG state is `rng`). Returns the signal
    number `stop_requested` gave after a step, or 0 once the epoch is done."""
    torch.manual_seed(epoch_seed(loop.seed, epoch))
    dist, done, y = loop.dist, progress.batch, None
    labels = data.train_labels if loop.conditional else None
    for x in data.batches(data.train, loop.batch_size, shuffle=True, labels=labels):
        if labels is not None:  # a conditional model's batch is (x, y)
            x, y = x
            y = dist.shard(y)
        if done:  # trained before the checkpoint: same permutation, then the RNG where it stopped
            done -= 1
            if not done:
                guards.set_rng_state(rng, x.device)
            continue
        x_in, x = dist.shard(loop.corrupt(x)), dist.shard(x)  # this rank's part of the global batch
        beta = loop.beta_at(progress.step)
        if loop.lr_at is not None:  # set before the step: the lr logged with a step is the one it used
            lr = loop.lr_at(progress.step, epoch, progress.lr_plateau.reductions)
            for group in loop.optimizer.param_groups:
                group["lr"] = lr
        with dist.global_batch():  # the model's draws and batch sums are of the global batch
            terms, grad_norm = train_step(loop.step_model, loop.optimizer, x_in, x, loop.objective, beta,
                                          loop.grad_clip, loop.autocast, loop.skip_nonfinite, y, loop.upkeep)
        progress.step += 1
        progress.batch += 1
        bar.update()
        interval.add(dist.weigh(terms), beta, progress.step, loop.optimizer.param_groups[0]["lr"], bar, grad_norm)
        if stop_requested is not None and (signum := stop_requested()):
            return signum
    return 0


def evaluate(model: nn.Module, x_all: torch.Tensor, data: DataSplits, objective: Objective, corrupt: Corruption,
             beta: float, batch_size: int, seed: int = 0, labels: torch.Tensor | None = None) -> dict[str, float]:
    """The metrics of a split at the target β (aectl.evaluation.validation: the same definitions as
    `aectl eval`), on a fixed seed: comparable across epochs, and invisible to training.
    `labels`: the split's, for a conditional model (its batches are then (x, y))."""
    return evaluate_split(model, data.batches(x_all, batch_size, labels=labels), objective, corrupt, beta,
                          data.known_range, corrupt.noisy, seed)

class Training:
    """One run of `fit`: its loop, progress and non-finite watch, restored from a checkpoint when
    resuming, and the checkpoints, validation and final metrics it writes."""

    def __init__(self, loop: Loop, data: DataSplits, target_beta: float, settings: TrainerConfig, run_dir: Path,
                 tracker, checkpoint_meta: dict, resume: dict | None, lr_schedule: LRScheduleConfig | None = None):
        self.loop, self.data, self.target_beta, self.settings = loop, data, target_beta, settings
        self.lr_schedule = lr_schedule or LRScheduleConfig()
        self.run_dir, self.tracker, self.meta, self.resume = run_dir, tracker, checkpoint_meta, resume
        last = run_dir / "checkpoints" / "last.pt"
        self.watch = guards.NonFiniteWatch(settings.on_nonfinite, settings.max_skipped_batches,
                                           last if last.is_file() else None)
        self.progress = Progress()
        if resume is not None:
            self._restore(resume)
        self.eval_batch = max(settings.batch_size, 512)
        self.start = time.perf_counter()
        self.bar = progress_bar(total=settings.epochs * math.ceil(len(data.train) / settings.batch_size),
                                initial=self.progress.step, unit="step", dynamic_ncols=True, mininterval=0.5,
                                disable=not settings.progress or not loop.dist.is_main)
        self.interval = IntervalLog(tracker, settings.log_every, settings.batch_size, data.train.device,
                                    loop.objective, loop.dist, self.watch)

    def _restore(self, resume: dict) -> None:
        optimizer, settings = self.loop.optimizer, self.settings
        optimizer.load_state_dict(resume["optimizer"])
        for group in optimizer.param_groups:  # the config wins: `trainer.lr=…` at resume applies
            group.update(lr=settings.lr, weight_decay=settings.weight_decay)
        history = resume.get("history", {})
        self.progress = Progress(resume["step"], resume["epoch"], resume["best_val_loss"], resume.get("batch", 0),
                                 list(history.get("val_loss", [])), history.get("train_time_s", 0.0),
                                 Plateau(**resume.get("lr_plateau", {})), Plateau(**resume.get("early_stopping", {})),
                                 resume.get("stopped_early"),
                                 # checkpoints from before the monitor was watched: the val loss was
                                 score_history=list(history.get("score", history.get("val_loss", []))))
        self.watch = guards.NonFiniteWatch(settings.on_nonfinite, settings.max_skipped_batches, self.watch.last_good,
                                           **resume.get("nonfinite", {}))

    def elapsed(self) -> float:
        """Training time of the whole run, over every resume."""
        return self.progress.train_time_s + time.perf_counter() - self.start

    def checkpoint(self, name: str) -> Path | None:
        model, progress = self.loop.model, self.progress
        self.watch.check_weights(model, progress.step)  # a checkpoint never holds non-finite weights
        if not self.loop.dist.is_main:
            return None
        path = self.run_dir / "checkpoints" / name
        save_checkpoint(path, {
            **self.meta, "state_dict": model.state_dict(), "optimizer": self.loop.optimizer.state_dict(),
            "step": progress.step, "epoch": progress.epoch, "batch": progress.batch,
            "best_val_loss": progress.best_val_loss,
            "rng": guards.rng_state(next(model.parameters()).device), "nonfinite": self.watch.state(),
            "history": {"val_loss": progress.val_history, "score": progress.score_history,
                        "train_time_s": self.elapsed()},
            "lr_plateau": progress.lr_plateau.state(), "early_stopping": progress.early_stop.state(),
            "stopped_early": progress.stopped_early})
        if name == "last.pt":
            self.watch.last_good = path
        return path

    def flush_interval(self) -> None:
        """The last, partial log_every interval: a short run has curves too."""
        if self.interval.steps:
            self.interval.write(self.progress.step, self.loop.optimizer.param_groups[0]["lr"], self.bar)

    def interrupt(self, signum: int) -> Interrupted:
        path = self.checkpoint("last.pt")
        self.flush_interval()
        self.tracker.flush()
        return Interrupted(signum, self.progress.step, path)

    def evaluate(self, split: str) -> dict[str, float]:
        labels = getattr(self.data, f"{split}_labels") if self.loop.conditional else None
        return evaluate(self.loop.model, getattr(self.data, split), self.data, self.loop.objective, self.loop.corrupt,
                        self.target_beta, self.eval_batch, labels=labels)

    def end_epoch(self) -> None:
        """Validate at the target β, log, and write best.pt / last.pt."""
        progress, settings, model = self.progress, self.settings, self.loop.model
        val = self.evaluate("val")
        progress.val_history.append(val["loss"])
        self.tracker.scalars(tracking.VAL, val, progress.step)
        self.interval.show_val(val["loss"], self.bar)
        if progress.epoch % settings.images_every == 0 or progress.epoch == settings.epochs:
            log_images(model, self.data.as_float(self.data.val[:32]), self.loop.corrupt, self.tracker, progress.step,
                       self.data.val_labels[:32] if self.loop.conditional else None)
        score = epoch_score(val, primary(settings.monitor))
        best_before = min(progress.score_history, default=math.inf)
        progress.score_history.append(score)
        if val_log_due(progress.epoch, settings.epochs):
            best = min(progress.score_history)
            log.info(val_line(progress.epoch, settings.epochs, progress.step, val, watched(primary(settings.monitor)),
                              score_value(best, primary(settings.monitor)), progress.score_history.index(best) + 1))
        progress.best_val_loss = min(progress.best_val_loss, val["loss"])
        if score < best_before:
            self.checkpoint("best.pt")
        self.watch_plateaus(score)
        if progress.epoch % settings.save_every == 0 or progress.epoch == settings.epochs or progress.stopped_early:
            self.checkpoint("last.pt")
        if settings.keep_every and progress.epoch % settings.keep_every == 0:
            self.checkpoint(f"epoch_{progress.epoch:04d}.pt")
        self.tracker.flush()

    def watch_plateaus(self, score: float) -> None:
        """The plateau schedule's reductions and early stopping, from this epoch's score of the
        monitored metric; both counters go into the checkpoint, so a resume counts on where it stopped."""
        progress, r, settings = self.progress, self.lr_schedule, self.settings
        metric = watched(primary(settings.monitor))
        if r.kind == "plateau" and progress.lr_plateau.observe(score, r.min_delta, r.patience):
            progress.lr_plateau.reductions += 1
            progress.lr_plateau.bad_epochs = 0  # a fresh count of patience epochs at the new lr
            log.info("%s did not improve by more than %g for %d epochs: lr reduced ×%g (reduction %d)",
                     metric, r.min_delta, r.patience, r.factor, progress.lr_plateau.reductions)
        patience = settings.early_stopping_patience
        if progress.early_stop.observe(score, settings.early_stopping_min_delta, patience):
            history = progress.score_history
            best_epoch = history.index(min(history)) + 1  # best.pt's epoch: the run's result
            best = score_value(min(history), primary(settings.monitor))
            reason = (f"{metric} did not improve by more than {settings.early_stopping_min_delta:g} for {patience} "
                      f"epochs (best {best:.5g} at epoch {best_epoch})")
            progress.stopped_early = {"epoch": progress.epoch, "best_epoch": best_epoch, "reason": reason}
            log.info("early stopping after epoch %d: %s; the run's result is checkpoints/best.pt", progress.epoch,
                     reason)


def fit(model: nn.Module, data: DataSplits, objective: Objective, corrupt: Corruption,
        beta_at: Callable[[int], float], target_beta: float, settings: TrainerConfig, run_dir: Path,
        tracker, checkpoint_meta: dict, resume: dict | None = None, dist: Distributed | None = None,
        stop_requested: Callable[[], int] | None = None, lr_at: Callable[[int, int, int], float] | None = None,
        lr_schedule: LRScheduleConfig | None = None, report: Callable[[int, float], bool] | None = None) -> dict:
    """Train `model` on data.train, validate each epoch, checkpoint, and return the final metrics.

    `beta_at(step)` gives the KL weight; validation uses `target_beta` (annealing is a training
    device, the model is judged on the objective it converges to). `checkpoint_meta` (model
    kind/kwargs, config) is stored in every checkpoint; `resume` is a loaded checkpoint.
    `dist` splits batches across torchrun's ranks (aectl.runtime.distributed); only its main rank writes.
    `stop_requested()` (a signal number or 0) is read after every step: non-zero saves last.pt
    mid-epoch and raises signals.Interrupted. `lr_at(step, epoch, reductions)` sets the lr of each
    step (aectl.training.lr_schedules); `lr_schedule` says whether the monitored val metric drives it (plateau).
    Early stopping (settings.early_stopping_patience) ends the run after an epoch, with best.pt's
    weights as its final metrics; so does `report(epoch, value)` returning True (a search's pruner).
    """
    run = Training(make_loop(model, objective, corrupt, beta_at, settings, dist or Distributed(), lr_at), data,
                   target_beta, settings, run_dir, tracker, checkpoint_meta, resume, lr_schedule)
    progress = run.progress
    if progress.epoch >= settings.epochs or _still_stopped(progress, settings):
        run.bar.close()
        if progress.epoch >= settings.epochs:
            log.info("the checkpoint already finished all %d epochs: nothing to train", settings.epochs)
        else:
            log.info("the run stopped early at epoch %d: nothing to train (a larger "
                     "trainer.early_stopping_patience continues it)", progress.epoch)
        return {}
    progress.stopped_early = None  # a resume with a larger patience continues a stopped run
    if resume is not None:
        log.info("resuming at epoch %d, batch %d, step %d", progress.epoch, progress.batch, progress.step)
    model.train()
    with logging_redirect_tqdm():
        for epoch in range(progress.epoch, settings.epochs):
            run.bar.set_description(f"epoch {epoch + 1}/{settings.epochs}")
            signum = train_epoch(run.loop, data, epoch, progress, run.interval, run.bar, stop_requested,
                                 resume["rng"] if progress.batch else None)
            run.interval.check(progress.step)  # nothing non-finite is validated or saved
            if signum:
                raise run.interrupt(signum)
            progress.epoch, progress.batch = epoch + 1, 0
            run.end_epoch()
            prune_when_told(run, report)
            signum = stop_requested() if stop_requested is not None else 0  # read once: a read may consume it
            if progress.stopped_early:
                break
            if signum and progress.epoch < settings.epochs:
                raise run.interrupt(signum)  # it came during validation: stop at the epoch boundary
    run.flush_interval()
    run.bar.close()
    if progress.stopped_early:
        run_record.load_best(run)
    return run_record.final_metrics(run)


def _still_stopped(progress: Progress, settings: TrainerConfig) -> bool:
    """Whether a resumed run that early stopping ended is still stopped under this patience."""
    patience = settings.early_stopping_patience
    return bool(progress.stopped_early) and 0 < patience <= progress.early_stop.bad_epochs
