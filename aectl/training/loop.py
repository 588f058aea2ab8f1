"""What the training loop carries: where training stands (Progress, restored from a checkpoint)
and what an optimizer step needs (Loop, built once per run by make_loop)."""

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from aectl.config import TrainerConfig
from aectl.datasets.noise import Corruption
from aectl.objectives.objective import Objective
from aectl.runtime.distributed import Distributed
from aectl.training.lr_schedules import Plateau
from aectl.training.optim import make_optimizer


@dataclass
class Progress:
    """Where training stands: what a checkpoint must restore besides weights and optimizer."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf  # the lowest val loss so far
    batch: int = 0  # batches done in the current epoch (non-zero in a checkpoint written mid-epoch)
    val_history: list[float] = field(default_factory=list)  # val loss after each epoch, over every resume
    train_time_s: float = 0.0  # training time before this process (the resumed segments)
    lr_plateau: Plateau = field(default_factory=Plateau)  # lr_schedule=plateau: its best, bad epochs, reductions
    early_stop: Plateau = field(default_factory=Plateau)  # early stopping's best and bad epochs (counted even when off)
    stopped_early: dict | None = None  # {epoch, best_epoch, reason} once early stopping ended the run
    pruned: dict | None = None  # {epoch, value} once a search's pruner ended the trial (aectl.runs.optuna_study)
    # trainer.monitor watched on val after each epoch, as a score to minimise (aectl.training.monitor.epoch_score),
    # over every resume: best.pt holds the weights of the lowest; early stopping and the plateau count on it
    score_history: list[float] = field(default_factory=list)


@dataclass
class Loop:
    """What an optimizer step needs, built once per run."""

    model: nn.Module  # the plain module (its state_dict is what checkpoints hold)
    step_model: nn.Module  # the module the step calls: `model`, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    objective: Objective
    corrupt: Corruption
    beta_at: Callable[[int], float]
    autocast: contextlib.AbstractContextManager
    grad_clip: float
    batch_size: int
    seed: int
    dist: Distributed = field(default_factory=Distributed)  # torchrun ranks: shards and reductions
    skip_nonfinite: bool = False  # trainer.on_nonfinite=skip_batch (a fused optimizer skips bad batches)
    # (step, epoch, plateau reductions) → the lr of that step (aectl.training.lr_schedules);
    # None: trainer.lr throughout
    lr_at: Callable[[int, int, int], float] | None = None
    conditional: bool = False  # a cvae: batches carry the labels, and the model takes them
    # the plain model when it keeps something up around each optimizer step (a sparse autoencoder's
    # unit-norm decoder: aectl.models.sae), else None
    upkeep: nn.Module | None = None


def make_loop(model: nn.Module, objective: Objective, corrupt: Corruption, beta_at: Callable[[int], float],
              settings: TrainerConfig, dist: Distributed | None = None,
              lr_at: Callable[[int, int, int], float] | None = None) -> Loop:
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16"
                else contextlib.nullcontext())
    dist = dist or Distributed()
    step_model = dist.wrap(model)
    skip = settings.on_nonfinite == "skip_batch"
    return Loop(model, torch.compile(step_model) if settings.compile else step_model,
                make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay, fused=skip),
                objective, corrupt, beta_at, autocast, settings.grad_clip, settings.batch_size, settings.seed, dist,
                skip, lr_at, getattr(model, "conditional", False),
                model if hasattr(model, "after_optimizer_step") else None)
