"""What training writes as it goes: to TensorBoard, the interval means of the loss terms (the
loop's only host sync) and, every few epochs, images and latent histograms of a batch; to the
log, a validation line every few epochs, so a run of any length gives a readable log."""

import itertools
import math
import time

import torch
from torch import nn

from aectl.datasets.noise import Corruption
from aectl.models import ModelOutput, mean_reconstruction
from aectl.objectives.objective import TERMS, Objective
from aectl.runs import tracking
from aectl.runtime.distributed import Distributed
from aectl.training import guards

# About this many validation lines in a run's log, at any length (TensorBoard, metrics.json and
# the progress bar's postfix have every epoch's val loss).
VAL_LINES = 20


def val_log_every(epochs: int) -> int:
    """Epochs between two validation log lines: the smallest of 1, 2, 5, 10, 20, 50, … that gives
    at most VAL_LINES lines over `epochs`."""
    steps = (m * 10 ** e for e in itertools.count() for m in (1, 2, 5))
    return next(every for every in steps if math.ceil(epochs / every) <= VAL_LINES)


def val_log_due(epoch: int, epochs: int) -> bool:
    """Whether epoch `epoch` (1-based) of `epochs` gets a validation log line: on the cadence
    and at the last epoch. A new best off the cadence gets no line of its own (every epoch may
    be one): the next line says where the best is."""
    return epoch % val_log_every(epochs) == 0 or epoch == epochs


def val_line(epoch: int, epochs: int, step: int, val: dict[str, float], metric: str, best: float,
             best_epoch: int) -> str:
    """"epoch 45/100 step 540: val loss 12.3 (best 11.9 at epoch 43)": this epoch's val loss
    and, for the metric that picks best.pt (`metric`, val/<name>), its best value and epoch."""
    name = metric.split("/", 1)[1]
    line = f"epoch {epoch}/{epochs} step {step}: val loss {val['loss']:.5g}"
    if name != "loss":
        line += f", {metric} {val[name]:.5g}"
    label = "" if name == "loss" else f" {metric}"
    if best_epoch == epoch:
        return f"{line} (new best{label})"
    return f"{line} (best{label} {best:.5g} at epoch {best_epoch})"


@torch.no_grad()
def log_images(model: nn.Module, x: torch.Tensor, corrupt: Corruption, tracker, step: int,
               labels: torch.Tensor | None = None) -> None:
    """Inputs, noisy inputs, reconstructions, prior samples and latent histograms of a batch.
    With `labels` (a conditional model) everything is given the batch's labels: the samples are
    z ~ N(0, I) decoded with those labels."""
    from torchvision.utils import make_grid

    trained = model
    model = model if labels is None else model.given(labels)
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
    trained.train()


class IntervalLog:
    """Keeps each step's loss terms (and gradient norm) in a device buffer and writes their means
    every `every` steps: the only host sync of the loop. The same read shows `watch` every
    step's values, so non-finite ones are caught without a sync of their own (aectl.training.guards)."""

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
        self.postfix: dict[str, str] = {}  # the progress bar's: the interval's loss, the last val loss, speed

    def show_val(self, val_loss: float, bar) -> None:
        """The last validation's loss in the progress bar, next to the training loss."""
        self.postfix["val_loss"] = f"{val_loss:.4g}"
        self._show(bar)

    def _show(self, bar) -> None:
        bar.set_postfix(**{k: self.postfix[k] for k in ("loss", "val_loss", "samples_s") if k in self.postfix})

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
            self.postfix.update(loss=f"{means['loss']:.4g}", samples_s=f"{speed:.0f}")
            self._show(bar)
        self.tracker.scalar(tracking.CHARTS_LR, lr, step)
        self.tracker.scalar(tracking.CHARTS_SPEED, speed, step)
        if self.watch.skip:
            self.tracker.scalar(tracking.TRAIN_SKIPPED, self.watch.skipped, step)
        self.read, self.betas, self.steps, self.start = [], [], 0, time.perf_counter()
