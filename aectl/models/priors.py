"""Priors p(z) of the variational models: the standard normal, and the VampPrior (Tomczak &
Welling 2018), a mixture of the model's own posterior q(z|u_k) at K learned pseudo-inputs u_k."""

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


def mixture_log_prob(z: torch.Tensor, mu_k: torch.Tensor, logvar_k: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k N(z; μ_k, diag σ_k²) for z (..., D) and K components μ_k, logvar_k (K, D),
    shape (...) (Tomczak & Welling 2018, eq. 9). The K quadratic forms come from two matrix
    products, (z − μ)²/σ² = z²·σ⁻² − 2z·μσ⁻² + μ²·σ⁻², so no (..., K, D) tensor is made."""
    precision = (-logvar_k).exp()
    flat = z.reshape(-1, z.shape[-1])
    quadratic = (flat.square() @ precision.T - 2 * flat @ (mu_k * precision).T
                 + (mu_k.square() * precision).sum(-1))
    log_n = -0.5 * (quadratic + logvar_k.sum(-1) + z.shape[-1] * LOG_2PI)  # (M, K)
    return (log_n.logsumexp(-1) - math.log(mu_k.shape[0])).view(z.shape[:-1])


class PseudoInputs(nn.Module):
    """The VampPrior's K pseudo-inputs u_k, learned with the model. They start near 0.05 with a
    spread of 0.01, as in the paper's MNIST code, and are clipped to the data's known range
    (their hard tanh), so they stay inputs the encoder could be given."""

    def __init__(self, num: int, input_shape: Sequence[int], value_range: Sequence[float] | None = None):
        super().__init__()
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.raw = nn.Parameter(0.05 + 0.01 * torch.randn(num, *input_shape))

    def forward(self) -> torch.Tensor:
        if self.value_range is None:
            return self.raw
        return F.hardtanh(self.raw, *self.value_range)


def sample_mixture(mu_k: torch.Tensor, logvar_k: torch.Tensor, n: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws of the mixture (1/K) Σ_k N(μ_k, diag σ_k²): a component uniformly, then its Gaussian."""
    pick = torch.randint(mu_k.shape[0], (n,), generator=generator, device=mu_k.device)
    eps = torch.randn((n, mu_k.shape[1]), generator=generator, device=mu_k.device, dtype=mu_k.dtype)
    return mu_k[pick] + (0.5 * logvar_k[pick]).exp() * eps
