"""What a run trains with: the optimizer, and the seed of each epoch."""

import torch

from aectl.config.errors import ConfigError


def make_optimizer(kind: str, params, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.Optimizer:
    """`fused` (trainer.on_nonfinite=skip_batch): the fused kernel, which can skip a step on a
    flag computed on the device (aectl.training.guards)."""
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
