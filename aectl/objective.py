"""The training objective of a variant: which loss terms apply and how they are weighted.

L = recon + β(t)·KL (VAE) + penalty (sparse AE), each term as reduced in losses.py.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aectl import losses
from aectl.models import ModelOutput

# Terms computed on the device for every batch, in this order (a fixed order lets the trainer
# stack them into one tensor and read them with a single host sync at log time). β and β·KL are
# derived on the host from the step's β (see `weighted_terms`): no kernels spent on them.
TERMS = ("loss", "recon", "kl", "penalty", "mse")


def weighted_terms(terms: dict[str, float], beta: float) -> dict[str, float]:
    """The logged terms: TERMS plus `beta` and `kl_weighted` = β·KL."""
    return {**terms, "kl_weighted": beta * terms["kl"], "beta": beta}


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
        `x` is the clean target (a denoising AE sees the noisy input, not this). Each term costs
        kernels on every step, so only the ones that apply are computed."""
        recon = losses.reconstruction_batch_mean(out.recon, x, self.likelihood)
        loss, kl, penalty = recon, None, None
        if self.variational:
            kl = losses.gaussian_kl(out.mu, out.logvar).mean()
            loss = loss + beta * kl
        if self.penalty == "kl_sparsity":
            penalty = self.penalty_beta * losses.kl_sparsity(out.z, self.rho)
        elif self.penalty == "l1":
            penalty = self.l1_weight * losses.l1_activity(out.z)
        if penalty is not None:
            loss = loss + penalty
        with torch.no_grad():
            if self.likelihood == "bernoulli":
                mse = F.mse_loss(out.recon.sigmoid().float(), x)
            else:  # the squared error is already summed: per element it is recon / D
                mse = recon / x[0].numel()
            zero = recon.new_zeros(()) if kl is None or penalty is None else None
            terms = torch.stack([loss, recon, zero if kl is None else kl, zero if penalty is None else penalty, mse])
        return loss, terms.detach().float()
