"""Evaluation metrics as pure tensor functions (no file I/O), one per question `aectl eval` asks.

Conventions: per-example quantities have shape (N,) and callers average them over
the examples; VAE numbers are in nats per example. Functions that run the model do so under
`torch.no_grad()` and do not change its train/eval mode.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aectl.datasets import noise
from aectl.models import mean_reconstruction, reparameterize
from aectl.objectives import losses

PSNR_MIN_MSE = 1e-10  # relative to MAX²: identical images score 10·log10(1e10) = 100 dB, not inf
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def per_element_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the features of each example, shape (N,)."""
    return (x_hat - x).square().flatten(1).mean(1)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,): 10·log10(MAX² / MSE_image).

    The MSE is clamped below at MAX²·1e-10, so a perfect reconstruction scores 100 dB (finite,
    averageable) instead of +inf. Average over images (not over the MSE) to report a data set.
    """
    mse = per_element_mse(x_hat, x).clamp_min(max_val ** 2 * PSNR_MIN_MSE)
    return 10 * torch.log10(max_val ** 2 / mse)


def active_units(mu_all: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Number of active latent units and the per-unit variances (Burda et al. 2016, §5.2).

    Unit j is active when A_j = Var_x(E_{q(z|x)}[z_j]) > threshold; `mu_all` (N, K) holds the
    posterior means of N examples, and the variance is the population one (divide by N).
    """
    variances = mu_all.var(0, unbiased=False)
    return int((variances > threshold).sum()), variances


def latent_means(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The code used as a representation: μ(x) of q(z|x) for a VAE, the code z for an AE."""
    with torch.no_grad():
        code = model.encode(x)
    return code[0] if isinstance(code, tuple) else code


def reconstruct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Deterministic reconstruction E[x|z] in data space, z = μ(x) for a VAE (no sampling)."""
    with torch.no_grad():
        return mean_reconstruction(model, model.decode(latent_means(model, x)))


def _log_weights(model: nn.Module, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 eps: torch.Tensor) -> torch.Tensor:
    """log w_s = log p(x|z_s) + log p(z_s) − log q(z_s|x), z_s = μ + σ⊙ε_s, shape (S, N).

    All S·N decoder inputs go through one forward pass. For the N(0, I) prior, with z − μ = σ⊙ε,
    log p(z) − log q(z|x) = −½ Σ_j (z_j² − ε_j² − log σ_j²); the log 2π terms cancel. A VampPrior's
    log p(z) is the model's (`log_prior`).
    """
    s, n = eps.shape[:2]
    z = reparameterize(mu, logvar, eps)                                  # (S, N, K)
    recon = model.decode(z.reshape(s * n, -1)).view(s, n, -1)
    log_px_z = _sampled_log_likelihood(recon, x.reshape(n, -1), model.likelihood, model.sigma)
    if getattr(model, "pseudo_inputs", None) is not None:
        return log_px_z + model.log_prior(z) - losses.gaussian_log_density(z, mu, logvar)
    return log_px_z - 0.5 * (z.square() - eps.square() - logvar).sum(-1)


def _sampled_log_likelihood(recon: torch.Tensor, x: torch.Tensor, likelihood: str, sigma: float) -> torch.Tensor:
    """log p(x|z_s) of decoder outputs (S, N, D) for inputs x (N, D), shape (S, N): the numbers
    of `losses.log_likelihood` on x repeated S times (up to float rounding), with x broadcast
    rather than copied and a single (S, N, D) temporary: fresh temporaries per decoder pass were
    most of the estimate's overhead (page faults). Bernoulli: BCE(l, x) = softplus(l) − x·l."""
    if likelihood == "gaussian":
        squared = torch.sub(recon, x).square_().sum(-1)
        return -(squared / (2 * sigma ** 2) + losses.gaussian_log_norm(x.shape[1], sigma))
    nll = F.softplus(recon).addcmul_(recon, x, value=-1)
    if likelihood == "continuous_bernoulli":
        nll -= losses.continuous_bernoulli_log_norm(recon)
    return -nll.sum(-1)


@torch.no_grad()
def iw_log_likelihood(model: nn.Module, x: torch.Tensor, k: int, *, chunk: int = 4096,
                      generator: torch.Generator | None = None,
                      eps: torch.Tensor | None = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per example, shape (N,) (Burda et al. 2016, eq. 8):

        log p(x) ≈ log (1/k) Σ_{i=1..k} p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x),

    a lower bound in expectation that equals the ELBO for k = 1 and tightens as k grows. Computed
    with a streaming logsumexp; each decoder pass holds at most `chunk` rows (examples × samples:
    all examples with ⌊chunk/N⌋ samples each, or slices of `chunk` examples), so memory is
    bounded for any k and N.

    Noise: `eps` (k, N, K) uses these standard normal draws exactly (z_i = μ + σ⊙eps[i]);
    otherwise draws come from `generator` (on x's device) or, if None, the global torch RNG,
    in sample-chunk order, so the estimate is reproducible from a seed.
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"k={k}, chunk={chunk}: both must be ≥ 1")
    if eps is not None and eps.shape[:2] != (k, x.shape[0]):
        raise ValueError(f"eps has shape {tuple(eps.shape)}, expected ({k}, {x.shape[0]}, K)")
    n = x.shape[0]
    if hasattr(model, "sample_joint") and eps is not None:
        raise ValueError("eps: a two-layer model draws z1 and z2 itself; pass a generator")
    if n > chunk:  # more examples than one pass may hold: estimate slice by slice (a cvae's labels too)
        part = getattr(model, "rows", lambda start, stop: model)
        return torch.cat([iw_log_likelihood(part(i, i + chunk), x[i:i + chunk], k, chunk=chunk, generator=generator,
                                            eps=None if eps is None else eps[:, i:i + chunk])
                          for i in range(0, n, chunk)])
    if hasattr(model, "sample_joint"):
        return _two_layer_iw(model, x, k, max(1, chunk // n), generator)
    mu, logvar = model.encode(x)
    k_chunk = max(1, chunk // n)
    total = torch.full((n,), -torch.inf, device=mu.device, dtype=mu.dtype)
    for start in range(0, k, k_chunk):
        s = min(k_chunk, k - start)
        e = (eps[start:start + s] if eps is not None else
             torch.randn((s, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype))
        total = torch.logaddexp(total, _log_weights(model, x, mu, logvar, e).logsumexp(0))
    return total - math.log(k)


def _two_layer_iw(model: nn.Module, x: torch.Tensor, k: int, k_chunk: int,
                  generator: torch.Generator | None) -> torch.Tensor:
    """`iw_log_likelihood` of a two-stochastic-layer model: its joint draws, `k_chunk` at a time."""
    total = None
    for start in range(0, k, k_chunk):
        draw = model.sample_joint(x, min(k_chunk, k - start), generator)
        log_px_z, log_p, log_q = losses.two_layer_log_terms(draw, x, model.likelihood, model.sigma)
        part = (log_px_z + log_p - log_q).logsumexp(0)
        total = part if total is None else torch.logaddexp(total, part)
    return total - math.log(k)


@torch.no_grad()
def elbo(model: nn.Module, x: torch.Tensor, *, kl: str = "analytic",
         generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Single-sample ELBO per example, shape (N,) (Kingma & Welling 2014, eq. 7 / eq. 10):

        ELBO = log p(x|z) − KL(q(z|x) ‖ p(z)),   z = μ + σ⊙ε, ε ~ N(0, I).

    kl="analytic": the closed-form KL (`losses.gaussian_kl`), as in training.
    kl="sample": the Monte-Carlo KL log q(z|x) − log p(z) at the same z, the k = 1 case of
    `iw_log_likelihood` (identical given the same ε). `eps` (N, K) / `generator` as there.
    """
    if kl not in ("analytic", "sample"):
        raise ValueError(f"kl={kl!r}; allowed: analytic, sample")
    if hasattr(model, "sample_joint"):  # two stochastic layers: the one-draw bound L_1 is the ELBO
        return iw_log_likelihood(model, x, 1, generator=generator)
    if kl == "analytic" and getattr(model, "pseudo_inputs", None) is not None:
        raise ValueError("kl='analytic': a VampPrior's KL has no closed form; use kl='sample'")
    mu, logvar = model.encode(x)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    std = (0.5 * logvar).exp()
    z = reparameterize(mu, logvar, eps)
    log_px_z = losses.log_likelihood(model.decode(z), x, model.likelihood, model.sigma)
    if kl == "analytic":
        return log_px_z - losses.gaussian_kl(mu, logvar)
    normal = torch.distributions.Normal
    log_q = normal(mu, std).log_prob(z).sum(1)
    log_p = model.log_prior(z) if hasattr(model, "log_prior") else \
        normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(1)
    return log_px_z - (log_q - log_p)


def sparsity_stats(codes: torch.Tensor, rho: float) -> dict[str, float]:
    """Distribution of the mean activations ρ̂_j = (1/N) Σ_i h_j(x_i) of a (0, 1) code (N, m)
    (Ng, Sparse autoencoder notes §3): mean and quantiles of ρ̂, the penalty Σ_j KL(ρ ‖ ρ̂_j)
    (`losses.kl_sparsity`, ρ̂ clamped away from 0 and 1), and the fraction of units with
    ρ/2 ≤ ρ̂_j ≤ 2ρ."""
    rho_hat = codes.double().mean(0)
    qs = torch.quantile(rho_hat, torch.tensor(QUANTILES, dtype=rho_hat.dtype, device=rho_hat.device))
    stats = {"rho_hat_mean": rho_hat.mean().item()}
    stats |= {f"rho_hat_q{round(q * 100):02d}": v.item() for q, v in zip(QUANTILES, qs)}
    stats["kl_sparsity"] = losses.kl_sparsity(codes.double(), rho).item()
    stats["frac_within_2x"] = ((rho_hat >= rho / 2) & (rho_hat <= 2 * rho)).double().mean().item()
    return stats


def linear_probe(z_train, y_train, z_eval, y_eval, *, max_iter: int = 1000) -> float:
    """Accuracy on the eval split of a multinomial logistic regression on standardized latent
    means fitted on the train split (the linear-evaluation protocol). Takes tensors or arrays.

    The fit's BLAS runs on one thread: with more, the products' sums are split over threads,
    so the L-BFGS path, and the accuracy, would depend on the machine's core count; and on a
    busy machine the threads mostly wait for each other (10× the CPU time of one thread).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    z_train, y_train, z_eval, y_eval = (_numpy(a) for a in (z_train, y_train, z_eval, y_eval))
    if len(set(y_train.tolist())) < 2:
        raise ValueError("linear_probe needs at least two classes in the train labels")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    with threadpool_limits(limits=1, user_api="blas"):
        return float(probe.fit(z_train, y_train).score(z_eval, y_eval))


def _numpy(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a


class DenoisingPSNR(NamedTuple):
    """Per-image PSNR (N,) of the reconstruction from the noisy input, and of the noisy input."""

    denoised: torch.Tensor
    noisy: torch.Tensor


def denoising_psnr(model: nn.Module, x: torch.Tensor, corruption: noise.Corruption, *,
                   generator: torch.Generator | None = None, max_val: float = 1.0) -> DenoisingPSNR:
    """Corrupt the clean x with `corruption` (pass a seeded torch.Generator on x's device for
    reproducible noise; None uses the global RNG), reconstruct deterministically (`reconstruct`:
    the decoder's mean at z = μ) and score both the reconstruction and the noisy input against
    the clean x (Vincent et al. 2010)."""
    x_noisy = corruption(x, generator=generator)
    x_hat = reconstruct(model, x_noisy)
    return DenoisingPSNR(psnr(x_hat, x, max_val), psnr(x_noisy, x, max_val))
