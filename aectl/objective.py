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
# VQ-VAE: β_c·‖z_e − sg[e]‖², ‖sg[z_e] − e‖², and the batch's codebook usage and perplexity.
TERMS += ("commitment", "codebook", "batch_usage", "batch_perplexity")


@dataclass(frozen=True)
class Objective:
    likelihood: str  # bernoulli | continuous_bernoulli | gaussian
    variational: bool  # add the KL(q(z|x) ‖ N(0, I)) term (a cvae's q(z|x,y): the model's mu/logvar)
    penalty: str = "none"  # none | kl_sparsity | l1
    rho: float = 0.05  # kl_sparsity target ρ
    penalty_beta: float = 3.0  # kl_sparsity weight β
    l1_weight: float = 1e-3  # l1 activity weight
    sigma: float = losses.DEFAULT_SIGMA  # gaussian likelihood: the decoder's fixed σ
    vq: bool = False  # VQ-VAE: add the commitment term (and the codebook term unless ema)
    commitment: float = 0.25  # VQ-VAE: β_c, the commitment weight
    ema: bool = False  # VQ-VAE: the codebook is kept by EMA, so no codebook term

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
        vq_terms = [None] * 4
        if self.vq:
            vq_terms = self._vq_terms(out)
            loss = loss + vq_terms[0] + (0 if vq_terms[1] is None else vq_terms[1])
        with torch.no_grad():
            zero = recon.new_zeros(())
            values = [loss, recon, kl, penalty, *vq_terms]
            terms = torch.stack([zero if v is None else v.to(zero.dtype) for v in values])
        return loss, terms.detach().float()

    def _vq_terms(self, out: ModelOutput) -> list:
        """VQ-VAE (van den Oord et al. 2017, eq. 3): [β_c·‖z_e − sg[e]‖², ‖sg[z_e] − e‖² (None
        with the EMA codebook), the batch's usage, its perplexity]."""
        from aectl import quantizer

        z_e, z_q = out.vq.z_e, out.vq.z_q
        commitment = self.commitment * losses.vq_commitment(z_e, z_q)
        codebook = None if self.ema else losses.vq_codebook(z_e, z_q)
        with torch.no_grad():
            counts = quantizer.code_counts(out.vq.indices, out.vq.num_embeddings)
            usage, perplexity = quantizer.code_usage(counts), quantizer.code_perplexity(counts)
        return [commitment, codebook, usage, perplexity]

    def named(self, values, beta: float) -> dict[str, float]:
        """TERMS values (a row, in order) by name, keeping only the terms this objective has:
        `kl`, `kl_weighted` = β·KL and `beta` for a VAE, `penalty` when there is one."""
        terms = dict(zip(TERMS, values))
        named = {"loss": terms["loss"], "recon": terms["recon"]}
        if self.variational:
            named.update(kl=terms["kl"], kl_weighted=beta * terms["kl"], beta=beta)
        if self.penalty != "none":
            named["penalty"] = terms["penalty"]
        if self.vq:
            named["commitment"] = terms["commitment"]
            if not self.ema:
                named["codebook"] = terms["codebook"]
            named.update(batch_usage=terms["batch_usage"], batch_perplexity=terms["batch_perplexity"])
        return named


def make_objective(model_kind: str, likelihood: str, sigma: float, penalty: dict, commitment: float = 0.25,
                   ema: bool = False) -> Objective:
    """The objective of a model kind with its likelihood and penalty section (plain data, as in
    a checkpoint's config), so training and `aectl eval` build the same one; `commitment` and
    `ema` are the VQ-VAE's."""
    return Objective(likelihood=likelihood, variational=model_kind in VARIATIONAL_KINDS,
                     penalty=penalty.get("kind", "none"),
                     rho=penalty.get("rho", 0.05), penalty_beta=penalty.get("beta", 3.0),
                     l1_weight=penalty.get("weight", 1e-3), sigma=sigma, vq=model_kind == "vqvae",
                     commitment=commitment, ema=ema)
