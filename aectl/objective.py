"""The training objective of a variant: which loss terms apply and how they are weighted.

L = recon + β(t)·KL (VAE) + penalty (sparse AE), each term as reduced in losses.py: summed over
features, averaged over the batch.
"""

from dataclasses import dataclass

import torch

from aectl import losses
from aectl.config import VARIATIONAL_KINDS
from aectl.models import ModelOutput

# Terms computed on the device for every batch, in this order (a fixed order lets the trainer
# stack them into one tensor and read them with a single host sync at log time). β and β·KL are
# derived on the host from the step's β (see `Objective.named`): no kernels spent on them.
TERMS = ("loss", "recon", "kl", "penalty")


@dataclass(frozen=True)
class Objective:
    likelihood: str  # bernoulli | continuous_bernoulli | gaussian
    variational: bool  # add the KL(q(z|x) ‖ N(0, I)) term (a cvae's q(z|x,y): the model's mu/logvar)
    penalty: str = "none"  # none | kl_sparsity | l1
    rho: float = 0.05  # kl_sparsity target ρ
    penalty_beta: float = 3.0  # kl_sparsity weight β
    l1_weight: float = 1e-3  # l1 activity weight
    sigma: float = losses.DEFAULT_SIGMA  # gaussian likelihood: the decoder's fixed σ

    def __call__(self, out: ModelOutput, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, terms): the scalar to minimise and the detached TERMS stacked in one vector.
        `x` is the clean target (a denoising AE sees the noisy input, not this). Each term costs
        kernels on every step, so only the ones that apply are computed."""
        recon = losses.reconstruction_batch_mean(out.recon, x, self.likelihood, self.sigma)
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
            zero = recon.new_zeros(()) if kl is None or penalty is None else None
            terms = torch.stack([loss, recon, zero if kl is None else kl, zero if penalty is None else penalty])
        return loss, terms.detach().float()

    def named(self, values, beta: float) -> dict[str, float]:
        """TERMS values (a row, in order) by name, keeping only the terms this objective has:
        `kl`, `kl_weighted` = β·KL and `beta` for a VAE, `penalty` when there is one."""
        terms = dict(zip(TERMS, values))
        named = {"loss": terms["loss"], "recon": terms["recon"]}
        if self.variational:
            named.update(kl=terms["kl"], kl_weighted=beta * terms["kl"], beta=beta)
        if self.penalty != "none":
            named["penalty"] = terms["penalty"]
        return named


def make_objective(model_kind: str, likelihood: str, sigma: float, penalty: dict) -> Objective:
    """The objective of a model kind with its likelihood and penalty section (plain data, as in
    a checkpoint's config), so training and `aectl eval` build the same one."""
    return Objective(likelihood=likelihood, variational=model_kind in VARIATIONAL_KINDS,
                     penalty=penalty.get("kind", "none"),
                     rho=penalty.get("rho", 0.05), penalty_beta=penalty.get("beta", 3.0),
                     l1_weight=penalty.get("weight", 1e-3), sigma=sigma)
