"""Where and with what a run trains: the device, the optimizer, the seed of each epoch."""

import torch

from aectl.errors import ConfigError


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
