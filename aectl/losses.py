"""Pure loss terms. Convention (design §2): every term is summed over features and averaged
over the batch, so VAE numbers are per-example nats and compare with papers."""

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def reconstruction_nll(recon: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-example reconstruction loss, shape (batch,).

    bernoulli: −log p(x|z) with `recon` the decoder's logits (BCE with logits).
    gaussian:  ‖x − x̂‖², the squared error of design §2; it is −log N(x; x̂, ½I) minus the
               constant D/2·log π (see `gaussian_log_norm`).
    """
    if likelihood == "bernoulli":
        per_element = F.binary_cross_entropy_with_logits(recon, x, reduction="none")
    else:
        per_element = (recon - x).square()
    return per_element.flatten(1).sum(1)


def reconstruction_batch_mean(recon: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """reconstruction_nll(...).mean(), with the reduction fused into the loss kernel: the
    training step's form (fewer kernels per step than a per-example sum and a mean)."""
    if likelihood == "bernoulli":
        total = F.binary_cross_entropy_with_logits(recon, x, reduction="sum")
    else:
        total = F.mse_loss(recon, x, reduction="sum")
    return total / len(x)


def gaussian_log_norm(num_features: int) -> float:
    """Constant that turns the gaussian squared error into an exact NLL: D/2·log π."""
    return 0.5 * num_features * math.log(math.pi)


def log_likelihood(recon: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Exact log p(x|z) per example (normalised), for likelihood estimates."""
    nll = reconstruction_nll(recon, x, likelihood)
    if likelihood == "gaussian":
        nll = nll + gaussian_log_norm(x[0].numel())
    return -nll


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per example (Kingma & Welling 2014, appendix B):
    −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def kl_sparsity(code: torch.Tensor, rho: float, eps: float = 1e-6) -> torch.Tensor:
    """Σ_j KL(ρ ‖ ρ̂_j) with ρ̂_j the mean activation of unit j over the batch (Ng, Sparse
    autoencoder notes §3). `code` must lie in (0, 1); ρ̂ is clamped away from 0 and 1."""
    rho_hat = code.mean(0).clamp(eps, 1 - eps)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


def l1_activity(code: torch.Tensor) -> torch.Tensor:
    """Σ_j |h_j| per example, averaged over the batch (the L1 activity penalty)."""
    return code.abs().flatten(1).sum(1).mean()
