"""What the training loop needs to stop cleanly: non-finite checks and RNG snapshots (the
signals themselves are aectl.runs.signals, which the CLI imports without torch).

RNG. A checkpoint written mid-epoch holds the batch index within the epoch and the RNG state
after that batch: the resumed run redraws the epoch's permutation from the epoch seed, skips the
batches already done, restores the RNG state and goes on exactly as the uninterrupted run did.

Non-finite values, without a host sync per step. The loop already keeps every
step's loss terms on the device and reads them at log time; `NonFiniteWatch` looks at those
same rows, plus once before every checkpoint, so nothing non-finite is ever validated or saved:
- `stop` (default): no extra work per step. A non-finite value is seen at the next read (at
  most `trainer.log_every` steps or an epoch later); the steps in between are thrown away with
  the run, which stops naming the first bad step, its term and the last good checkpoint.
  A gradient that overflows while the loss stays finite shows up as a non-finite loss at the
  next step (or in the weights check before a checkpoint), unless `trainer.grad_clip` is set,
  whose gradient norm is recorded and checked too.
- `skip_batch`: the batch's update must not happen, and deciding that on the host would cost a
  sync per step. Instead the optimizer is built fused and given a `found_inf` flag computed on
  the device from the loss and the gradient norm (the mechanism GradScaler uses): the fused
  kernel leaves weights and moments untouched when it is set. Per step this costs a gradient
  norm and two `isfinite`s, no sync; skipped batches are counted at the next read, and the run
  stops after `trainer.max_skipped_batches` in a row. (Fused and foreach optimizers round
  differently, so a skip_batch run is not bit-identical to a stop run; each is reproducible.)
"""

import math
from pathlib import Path

import torch
from torch import nn

from aectl.config.errors import AectlError
from aectl.objectives.objective import TERMS

# A row per step: the TERMS, then the gradient norm (0 where it is not computed).
GRAD_NORM = len(TERMS)
# Order in which a bad row is blamed: the component that went bad, before the sums it spoils.
BLAME = ("recon", "kl", "penalty", "loss")


class NonFiniteError(AectlError):
    """Training met a non-finite loss or gradient and stopped (see NonFiniteWatch)."""


def blame(row: list[float]) -> str | None:
    """Name of the first non-finite quantity of a step's row, or None if all are finite."""
    for name in BLAME:
        if not math.isfinite(row[TERMS.index(name)]):
            return name
    if len(row) > GRAD_NORM and not math.isfinite(row[GRAD_NORM]):
        return "gradients"
    return None


class NonFiniteWatch:
    """Judges the rows of steps read from the device (see the module docstring)."""

    def __init__(self, mode: str, max_in_a_row: int, last_good: Path | None = None, skipped: int = 0,
                 in_a_row: int = 0):
        self.mode, self.max_in_a_row = mode, max_in_a_row
        self.last_good = last_good  # the newest checkpoint known to hold finite weights
        self.skipped, self.in_a_row = skipped, in_a_row  # batches skipped in all, and in a row now

    @property
    def skip(self) -> bool:
        return self.mode == "skip_batch"

    def inspect(self, rows: list[list[float]], first_step: int) -> list[bool]:
        """Rows of steps first_step, first_step + 1, ... → which were finite. Raises
        NonFiniteError on a bad row in stop mode, or at max_skipped_batches in a row."""
        finite = []
        for step, row in enumerate(rows, start=first_step):
            term = blame(row)
            finite.append(term is None)
            if term is None:
                self.in_a_row = 0
                continue
            if not self.skip:
                raise NonFiniteError(f"non-finite {term} at step {step}; training stopped "
                                     f"(trainer.on_nonfinite=stop); {self._last_good()}; try a lower trainer.lr, "
                                     "trainer.grad_clip > 0, or trainer.on_nonfinite=skip_batch")
            self.skipped += 1
            self.in_a_row += 1
            if self.in_a_row >= self.max_in_a_row:
                raise NonFiniteError(f"{self.in_a_row} batches in a row skipped for a non-finite {term} "
                                     f"(steps {step - self.in_a_row + 1}-{step}), the limit of "
                                     f"trainer.max_skipped_batches={self.max_in_a_row}; training stopped; "
                                     f"{self._last_good()}; try a lower trainer.lr or trainer.grad_clip > 0")
        return finite

    def check_weights(self, model: nn.Module, step: int) -> None:
        """Before a checkpoint: the weights must be finite (one host sync)."""
        flags = [p.detach().isfinite().all() for p in model.parameters()]
        if flags and not bool(torch.stack(flags).all()):
            raise NonFiniteError(f"non-finite weights after step {step} (a non-finite gradient); training stopped "
                                 f"before saving them; {self._last_good()}; try a lower trainer.lr, "
                                 "trainer.grad_clip > 0, or trainer.on_nonfinite=skip_batch")

    def state(self) -> dict:
        return {"skipped": self.skipped, "in_a_row": self.in_a_row}

    def _last_good(self) -> str:
        return f"last good checkpoint: {self.last_good}" if self.last_good else "no checkpoint was written yet"


def grad_norm(params) -> torch.Tensor:
    """Total 2-norm of the gradients, on the device (no clipping, no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if hasattr(nn.utils, "get_total_norm"):
        return nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def skip_if_nonfinite(optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
    """Tell a fused optimizer to skip its next step if the loss or the gradients are not finite:
    decided on the device, no host sync."""
    optimizer.grad_scale = None
    optimizer.found_inf = (~(loss.isfinite() & grad_norm.isfinite())).float()


def rng_state(device: torch.device) -> dict:
    """The global RNG states the training loop draws from (CPU, and the accelerator in use)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])
