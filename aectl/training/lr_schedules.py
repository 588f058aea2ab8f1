"""Learning rate lr(t) = base · f(t): a pure function of the optimizer step t and the epoch,
and, for plateau, of how many times the lr was reduced so far (state the trainer keeps in the
checkpoint, so a resume continues the same curve).

`base` is `trainer.lr` of the running process: a resume with `trainer.lr=…` rescales the rest of
the curve (its shape, position and plateau reductions stay the checkpoint's).
"""

import math
from dataclasses import asdict, dataclass

from aectl.config import LR_SCHEDULES  # noqa: F401 (the names of kinds live in config/schema.py)


def lr_at(
    step: int,
    epoch: int,
    reductions: int = 0,
    *,
    base_lr: float,
    kind: str = "constant",
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    step_size: int = 30,
    gamma: float = 0.1,
    factor: float = 0.1,
    total_steps: int = 1,
) -> float:
    """The lr of optimizer step `step` (0-based), taken in epoch `epoch` (0-based), after
    `reductions` reductions of the plateau schedule.

    constant: base
    cosine:   base · (t + 1) / W for t < W (linear warm-up, the first step already trains), then
              min_lr + (base − min_lr) · ½ (1 + cos(π (t − W) / (T − 1 − W))): min_lr at the run's
              last step t = T − 1 and past it
              (Loshchilov & Hutter 2017, SGDR eq. 5, one cycle; warm-up as Goyal et al. 2017)
    step:     base · gamma^⌊epoch / step_size⌋ (step_size in epochs, like torch's StepLR per epoch)
    plateau:  max(min_lr, base · factor^reductions)
    burda:    base · 10^(−i/7) in stage i = `burda_stage(epoch)`, stage i lasting 3^i epochs,
              i = 0, …, 7: 3280 epochs in all, the last stage's lr past them (Burda et al. 2016, §5)
    """
    if kind == "constant":
        return base_lr
    if kind == "cosine":
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        last = total_steps - 1  # the run's last step trains at min_lr exactly, as do steps past it
        done = (step - warmup_steps) / (last - warmup_steps) if step < last else 1.0
        return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * done))
    if kind == "step":
        return base_lr * gamma ** (epoch // step_size)
    if kind == "plateau":
        return max(min_lr, base_lr * factor ** reductions)
    if kind == "burda":
        return base_lr * 10 ** (-burda_stage(epoch) / 7)
    raise ValueError(f"unknown lr schedule {kind!r}")


BURDA_STAGES = 8  # i = 0..7: 1 + 3 + … + 3^7 = 3280 epochs


def burda_stage(epoch: int) -> int:
    """The stage i of 0-based `epoch` in Burda et al.'s schedule: stage i covers the 3^i epochs
    from (3^i − 1)/2 on (epoch 0; 1–3; 4–12; …; 1093–3279), and the last stage goes on past them."""
    stage, end = 0, 1
    while epoch >= end and stage < BURDA_STAGES - 1:
        stage += 1
        end += 3 ** stage
    return stage


@dataclass
class Plateau:
    """Whether the watched score (trainer.monitor's val metric, lower is better: the trainer
    negates a metric where higher is better) still improves: shared by the plateau schedule and
    early stopping.

    An epoch improves when its score is below the best so far by more than `min_delta` (an
    absolute amount, in the metric's units); `bad_epochs` counts the epochs since the last one that
    did. `reductions` is the plateau schedule's count of lr reductions (unused by early stopping).
    """

    best: float = math.inf
    bad_epochs: int = 0
    reductions: int = 0

    def observe(self, score: float, min_delta: float, patience: int) -> bool:
        """Record an epoch's score; True once `patience` epochs in a row did not improve."""
        if score < self.best - min_delta:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        return patience > 0 and self.bad_epochs >= patience

    def state(self) -> dict:
        return asdict(self)
