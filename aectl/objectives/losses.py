"""Pure loss terms. Convention: every term is summed over features and averaged over the batch,
so VAE numbers are per-example nats and compare with papers.

Likelihoods of the decoder p(x|z), each normalised (a true log-density or log-mass):
  bernoulli              −log p = BCE(logits, x). A probability mass for binary x; on grey
                         levels it is a cross-entropy, not a normalised likelihood.
  continuous_bernoulli   the Bernoulli cross-entropy minus log C(λ), a density on [0, 1]
                         (Loaiza-Ganem & Cunningham 2019, eq. 7).
  gaussian               N(x; x̂, σ²I) with a fixed σ: ‖x − x̂‖²/(2σ²) + D/2·log(2πσ²).
"""

import math

import torch
import torch.nn.functional as F

from aectl.config import LIKELIHOODS  # noqa: F401 (the names of kinds live in config/schema.py)
# the decoder's fixed σ, a model default: σ = 1/√2 makes the gaussian NLL the plain squared error plus D/2·log π
from aectl.models.networks import DEFAULT_SIGMA
from aectl.models.priors import standard_normal_log_prob


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(λ), λ = sigmoid(logits), elementwise: C(λ) = 2·atanh(1 − 2λ)/(1 − 2λ), C(½) = 2
    (Loaiza-Ganem & Cunningham 2019, eq. 7). In logits l: C = l / tanh(l/2), even in l; near
    l = 0 its Taylor series 2·(1 + l²/12) avoids 0/0."""
    l = logits.abs()
    small = l < 1e-2
    safe = torch.where(small, torch.ones_like(l), l)
    exact = torch.log(safe) - torch.log(torch.tanh(safe / 2))
    return torch.where(small, math.log(2) + torch.log1p(l.square() / 12), exact)


def gaussian_log_norm(num_features: int, sigma: float) -> float:
    """The gaussian NLL's constant: D/2·log(2πσ²)."""
    return 0.5 * num_features * math.log(2 * math.pi * sigma ** 2)


def reconstruction_nll(recon: torch.Tensor, x: torch.Tensor, likelihood: str,
                       sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """−log p(x|z) per example, shape (batch,). `recon` is the decoder's output: logits for the
    two Bernoulli likelihoods, the mean x̂ for the gaussian one."""
    if likelihood == "gaussian":
        squared = (recon - x).square().flatten(1).sum(1)
        return squared / (2 * sigma ** 2) + gaussian_log_norm(x[0].numel(), sigma)
    per_element = F.binary_cross_entropy_with_logits(recon, x, reduction="none")
    if likelihood == "continuous_bernoulli":
        per_element = per_element - continuous_bernoulli_log_norm(recon)
    return per_element.flatten(1).sum(1)


def reconstruction_batch_mean(recon: torch.Tensor, x: torch.Tensor, likelihood: str,
                              sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """reconstruction_nll(...).mean(), with the sum fused into the loss kernel: the training
    step's form (fewer kernels per step than a per-example sum and a mean)."""
    if likelihood == "gaussian":
        squared = F.mse_loss(recon, x, reduction="sum") / len(x)
        return squared / (2 * sigma ** 2) + gaussian_log_norm(x[0].numel(), sigma)
    total = F.binary_cross_entropy_with_logits(recon, x, reduction="sum")
    if likelihood == "continuous_bernoulli":
        total = total - continuous_bernoulli_log_norm(recon).sum()
    return total / len(x)


def log_likelihood(recon: torch.Tensor, x: torch.Tensor, likelihood: str,
                   sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """log p(x|z) per example (normalised), for likelihood estimates."""
    return -reconstruction_nll(recon, x, likelihood, sigma)


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


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last axis: −½ Σ_j (log 2π + log σ_j² + (z_j − μ_j)²/σ_j²)."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).square() * (-logvar).exp()).sum(-1)


def two_layer_log_terms(draw, x: torch.Tensor, likelihood: str, sigma: float = DEFAULT_SIGMA):
    """(log p(x|z1), log p(z1|z2) + log p(z2), log q(z1|x) + log q(z2|z1)), each (k, N), of the
    k joint draws of a two-stochastic-layer model (aectl.models.hierarchical.JointSample) against
    the targets x (N, ...): log w = the first + the second − the third (Burda et al. 2016, §5)."""
    k, n = draw.z1.shape[:2]
    target = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
    log_px_z = log_likelihood(draw.recon.flatten(0, 1), target, likelihood, sigma).view(k, n)
    log_p = gaussian_log_density(draw.z1, draw.prior_mu1, draw.prior_logvar1) + standard_normal_log_prob(draw.z2)
    log_q = (gaussian_log_density(draw.z1, draw.mu1, draw.logvar1)
             + gaussian_log_density(draw.z2, draw.mu2, draw.logvar2))
    return log_px_z, log_p, log_q


def importance_weighted_bound(log_w: torch.Tensor) -> torch.Tensor:
    """L_k per example from the log-weights log w_i = log p(x, z_i) − log q(z_i|x), shape (k, N):
    log (1/k) Σ_i w_i (Burda et al. 2016, eq. 8), by a logsumexp."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """ESS = 1 / Σ_i w̃_i² of the normalised weights w̃ = softmax(log w) over the k samples, per
    example, in [1, k]: k when the weights are equal, 1 when one sample carries them all."""
    return 1 / torch.softmax(log_w, 0).square().sum(0)


def vq_commitment(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """‖z_e − sg[e]‖² summed over positions and dimensions, averaged over the batch: pulls the
    encoder towards its codes, not the codes (van den Oord et al. 2017, eq. 3, third term)."""
    return (z_e - z_q.detach()).square().flatten(1).sum(1).mean()


def vq_codebook(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """‖sg[z_e] − e‖², reduced as vq_commitment: moves the chosen codes towards the encoder's
    outputs (eq. 3, second term); the EMA codebook replaces it."""
    return (z_e.detach() - z_q).square().flatten(1).sum(1).mean()
