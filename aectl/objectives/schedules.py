"""KL weight β(t) = beta · f(t), f ∈ [0, 1], a pure function of the optimizer step t."""

import math

from aectl.config import SCHEDULES  # noqa: F401 (the names of kinds live in config/schema.py)


def beta_at(
    step: int,
    *,
    beta: float,
    kind: str = "constant",
    warmup_steps: int = 1000,
    k: float = 0.0025,
    x0: int = 2500,
    cycles: int = 4,
    ratio: float = 0.5,
    total_steps: int = 1,
) -> float:
    """β at optimizer step `step` (0-based).

    constant: f = 1
    linear:   f = min(1, t / warmup_steps)                       (KL warm-up)
    sigmoid:  f = 1 / (1 + exp(−k (t − x0)))                     (Bowman et al. 2016)
    cyclical: τ = (t mod ⌈T/M⌉) / (T/M); f = min(1, τ / R)       (Fu et al. 2019, eq. 5)
    """
    if kind == "constant":
        f = 1.0
    elif kind == "linear":
        f = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    elif kind == "sigmoid":
        f = 1.0 / (1.0 + math.exp(-k * (step - x0))) if k * (x0 - step) < 700 else 0.0
    elif kind == "cyclical":
        period = total_steps / cycles
        tau = (step % math.ceil(period)) / period
        f = min(1.0, tau / ratio)
    else:
        raise ValueError(f"unknown beta schedule {kind!r}")
    return beta * f
