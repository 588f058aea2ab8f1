"""Input corruptions for denoising autoencoders (Vincent et al. 2010), applied to each batch on the fly.

Each is a pure function of (x, parameters, generator); the clean x is never modified.
"""

from dataclasses import dataclass

import torch

from aectl.config import NOISES  # noqa: F401 (the names of kinds live in config/schema.py)


def gaussian(x: torch.Tensor, sigma: float, clip: bool = True, lo: float = 0.0, hi: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """x̃ = x + ε, ε ~ N(0, σ²), optionally clipped to the data range [lo, hi]."""
    noisy = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return noisy.clamp(lo, hi) if clip else noisy


def salt_pepper(x: torch.Tensor, p: float, v_min: float = 0.0, v_max: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """x̃ = x with prob. 1−p, v_min with prob. p/2, v_max with prob. p/2 (per entry)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noisy = torch.where(u < p / 2, torch.full_like(x, v_min), x)
    return torch.where((u >= p / 2) & (u < p), torch.full_like(x, v_max), noisy)


def masking(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x̃ = x · m, m ~ Bernoulli(1 − p) per entry."""
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x * keep


def corrupt(x: torch.Tensor, kind: str, *, sigma: float = 0.3, clip: bool = True, p: float = 0.25,
            v_min: float = 0.0, v_max: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the noise `kind` to x; `none` returns x itself."""
    if kind == "none":
        return x
    if kind == "gaussian":
        return gaussian(x, sigma, clip, v_min, v_max, generator)
    if kind == "salt_pepper":
        return salt_pepper(x, p, v_min, v_max, generator)
    if kind == "masking":
        return masking(x, p, generator)
    raise ValueError(f"unknown noise {kind!r}")


@dataclass(frozen=True)
class Corruption:
    """A noise kind with its parameters, applied as `corruption(x)` to each batch. The range
    [v_min, v_max] (clip range, pepper and salt values) is the data's: callers resolve it from
    the train split when the config leaves it unset."""

    kind: str = "none"
    sigma: float = 0.3
    clip: bool = True
    p: float = 0.25
    v_min: float = 0.0
    v_max: float = 1.0

    @property
    def noisy(self) -> bool:
        return self.kind != "none"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.kind, sigma=self.sigma, clip=self.clip, p=self.p, v_min=self.v_min,
                       v_max=self.v_max, generator=generator)
