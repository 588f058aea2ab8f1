"""The training objective of a variant: which loss terms apply and how they are weighted.

L = recon + β(t)·KL (VAE) + penalty (sparse AE), each term as reduced in losses.py.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aectl import losses
from aectl.models import ModelOutput

# Terms reported for every batch, in this order (a fixed order lets the trainer stack them
# into one tensor and read them with a single host sync at log time).
TERMS = ("loss", "recon", "kl", "kl_weighted", "beta", "penalty", "mse")


@dataclass(frozen=True)
class Objective:
    likelihood: str  # bernoulli | gaussian
    variational: bool  # add the KL(q(z|x) ‖ N(0, I)) term
    penalty: str = "none"  # none | kl_sparsity | l1
    rho: float = 0.05  # kl_sparsity target ρ
    penalty_beta: float = 3.0  # kl_sparsity weight β
    l1_weight: float = 1e-3  # l1 activity weight

    def __call__(self, out: ModelOutput, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, terms): the scalar to minimise and the detached TERMS stacked in one vector.
        `x` is the clean target (a denoising AE sees the noisy input, not this)."""
        recon = losses.reconstruction_nll(out.recon, x, self.likelihood).mean()
        zero = recon.new_zeros(())
        kl = losses.gaussian_kl(out.mu, out.logvar).mean() if self.variational else zero
        if self.penalty == "kl_sparsity":
            penalty = self.penalty_beta * losses.kl_sparsity(out.z, self.rho)
        elif self.penalty == "l1":
            penalty = self.l1_weight * losses.l1_activity(out.z)
        else:
            penalty = zero
        loss = recon + beta * kl + penalty
        with torch.no_grad():
            mean = out.recon.sigmoid() if self.likelihood == "bernoulli" else out.recon
            mse = F.mse_loss(mean.float(), x)
            terms = torch.stack([loss, recon, kl, beta * kl, zero + beta, penalty, mse]).float()
        return loss, terms.detach()
