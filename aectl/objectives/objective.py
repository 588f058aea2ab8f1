"""The training objective of a variant: which loss terms apply and how they are weighted.

L = recon + β(t)·KL (VAE) + penalty (sparse AE), each term as reduced in losses.py: summed over
features, averaged over the batch. The IWAE minimises −L_k instead (`Objective.step`).
"""

from dataclasses import dataclass

import torch

from aectl.config import VARIATIONAL_KINDS
from aectl.models import ModelOutput
from aectl.objectives import contractive, losses, sae as sae_terms

# Terms computed on the device for every batch, in this order (a fixed order lets the trainer
# stack them into one tensor and read them with a single host sync at log time). β and β·KL are
# derived on the host from the step's β (see `Objective.named`): no kernels spent on them.
TERMS = ("loss", "recon", "kl", "penalty")
TERMS += ("ess",)  # IWAE: mean effective sample size of the normalised importance weights
# VQ-VAE: β_c·‖z_e − sg[e]‖², ‖sg[z_e] − e‖², and the batch's codebook usage and perplexity.
TERMS += ("commitment", "codebook", "batch_usage", "batch_perplexity")
TERMS += ("aux",)  # sparse autoencoder: the AuxK term α·‖e − ê‖² (aectl/objectives/sae.py)


@dataclass(frozen=True)
class Objective:
    likelihood: str  # bernoulli | continuous_bernoulli | gaussian
    variational: bool  # add the KL(q(z|x) ‖ N(0, I)) term (a cvae's q(z|x,y): the model's mu/logvar)
    penalty: str = "none"  # none | kl_sparsity | l1
    rho: float = 0.05  # kl_sparsity target ρ
    penalty_beta: float = 3.0  # kl_sparsity weight β
    l1_weight: float = 1e-3  # l1 activity weight
    sigma: float = losses.DEFAULT_SIGMA  # gaussian likelihood: the decoder's fixed σ
    contractive_weight: float = 1e-3  # contractive: λ of ‖J_f(x)‖²_F
    iw_samples: int = 0  # IWAE: k of the bound L_k (0: not an IWAE)
    vq: bool = False  # VQ-VAE: add the commitment term (and the codebook term unless ema)
    commitment: float = 0.25  # VQ-VAE: β_c, the commitment weight
    ema: bool = False  # VQ-VAE: the codebook is kept by EMA, so no codebook term
    sae: bool = False  # sparse autoencoder: recon is ‖x − x̂‖², plus its aux and sparsity terms
    aux_coefficient: float = 0.0  # sae: α of the AuxK term (topk, batchtopk)
    sparsity_coefficient: float = 0.0  # sae: λ of the L0 (jumprelu) or weighted L1 (relu_l1) penalty
    prior: str = "gaussian"  # gaussian: the KL in closed form | vamp: its Monte Carlo estimate at the sampled z
    hierarchical: bool = False  # model=hvae: −L_k (k = iw_samples, or the β-weighted ELBO when that is 0)

    def step(self, model, x_in: torch.Tensor, x: torch.Tensor, beta: float, y: torch.Tensor | None = None):
        """(out, loss, terms) of one batch: the model's forward pass on the input x_in and the
        objective against the clean x. `out` is a one-sample ModelOutput for every kind. `y`: the
        labels a conditional model takes (model(x_in, y)); None for every other model."""
        if self.hierarchical:
            return self._hierarchical(model, x_in, x, beta)
        if self.iw_samples:
            return self._importance_weighted(model, x_in, x)
        if self.penalty == "contractive":
            return self._contractive(model, x_in, x, beta)
        out = model(x_in) if y is None else model(x_in, y)
        kl = self.kl(model, out) if self.prior != "gaussian" else None
        return (out, *self(out, x, beta, kl=kl))

    def kl(self, model, out: ModelOutput) -> torch.Tensor:
        """KL(q(z|x) ‖ p(z)) per example: in closed form for the N(0, I) prior; for the VampPrior,
        which has none, the one-sample estimate log q(z|x) − log p(z) at the z the decoder saw
        (Tomczak & Welling 2018): unbiased, and the ELBO it gives is the k = 1 IW bound."""
        if self.prior == "gaussian":
            return losses.gaussian_kl(out.mu, out.logvar)
        return losses.gaussian_log_density(out.z, out.mu, out.logvar) - model.log_prior(out.z)

    def _hierarchical(self, model, x_in: torch.Tensor, x: torch.Tensor, beta: float):
        """Two stochastic layers (aectl/models/hierarchical.py): log w = log p(x|z1) + log p(z1|z2)
        + log p(z2) − log q(z1|x) − log q(z2|z1) of k joint draws (Burda et al. 2016, §5).
        k > 1: loss = −L_k; k = 1: recon + β·KL with the KL the one-sample estimate
        log q − log p, which is −L_1 = −ELBO at β = 1."""
        draw = model.sample_joint(x_in, self.iw_samples or 1)
        log_px_z, log_p, log_q = losses.two_layer_log_terms(draw, x, self.likelihood, self.sigma)
        kl = log_q - log_p  # (k, N)
        if self.iw_samples:
            loss = -losses.importance_weighted_bound(log_px_z - kl).mean()
        else:
            loss = (-log_px_z + beta * kl).mean()
        with torch.no_grad():
            zero = loss.new_zeros(())
            ess = losses.effective_sample_size(log_px_z - kl).mean() if self.iw_samples else zero
            terms = torch.stack([loss, -log_px_z.mean(), kl.mean(), zero, ess, *[zero] * (len(TERMS) - 5)])
        return ModelOutput(draw.recon[0], draw.z1[0], draw.mu1, draw.logvar1), loss, terms.detach().float()

    def _contractive(self, model, x_in: torch.Tensor, x: torch.Tensor, beta: float):
        """The forward pass on an x_in that requires grad (the Jacobian is with respect to the
        encoder's input), also under no_grad (validation), then without the graph there."""
        training = torch.is_grad_enabled()
        with torch.enable_grad():
            x_in = x_in.detach().requires_grad_(True)
            out = model(x_in)
            jacobian_sq = contractive.jacobian_sq_norm(model, x_in, out.z, create_graph=training)
        if not training:
            out = ModelOutput(*(None if t is None else t.detach() for t in out))
            jacobian_sq = jacobian_sq.detach()
        return (out, *self(out, x, beta, jacobian_sq=jacobian_sq))

    def _importance_weighted(self, model, x_in: torch.Tensor, x: torch.Tensor):
        """loss = −L_k averaged over the batch (Burda et al. 2016, eq. 8), with log w_i =
        log p(x|z_i) + log p(z_i) − log q(z_i|x) of k reparameterised z_i per example. Also
        logged: recon = E_i[−log p(x|z_i)], the analytic KL (recon + KL is the −ELBO) and the ESS."""
        k = self.iw_samples
        out = model(x_in, samples=k)
        target = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
        log_px_z = losses.log_likelihood(out.recon.flatten(0, 1), target, self.likelihood, self.sigma).view(k, len(x))
        log_q = losses.gaussian_log_density(out.z, out.mu, out.logvar)
        log_pz = model.log_prior(out.z)
        log_w = log_px_z + log_pz - log_q
        loss = -losses.importance_weighted_bound(log_w).mean()
        with torch.no_grad():  # a VampPrior's KL: the estimate over the k draws
            kl = (losses.gaussian_kl(out.mu, out.logvar) if self.prior == "gaussian" else log_q - log_pz).mean()
            zero = loss.new_zeros(())
            terms = torch.stack([loss, -log_px_z.mean(), kl, zero, losses.effective_sample_size(log_w).mean(),
                                 *[zero] * (len(TERMS) - 5)])
        return ModelOutput(out.recon[0], out.z[0], out.mu, out.logvar), loss, terms.detach().float()

    def __call__(self, out: ModelOutput, x: torch.Tensor, beta: float, jacobian_sq: torch.Tensor | None = None,
                 kl: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, terms): the scalar to minimise and the detached TERMS stacked in one vector.
        `x` is the clean target (a denoising AE sees the noisy input, not this); `kl` the per-example
        KL where it has no closed form (`Objective.kl`). Each term costs kernels on every step, so
        only the ones that apply are computed."""
        if self.sae:
            return self._sae(out, x)
        recon = losses.reconstruction_batch_mean(out.recon, x, self.likelihood, self.sigma)
        loss, penalty = recon, None
        if self.variational:
            kl = (losses.gaussian_kl(out.mu, out.logvar) if kl is None else kl).mean()
            loss = loss + beta * kl
        if self.penalty == "kl_sparsity":
            penalty = self.penalty_beta * losses.kl_sparsity(out.z, self.rho)
        elif self.penalty == "l1":
            penalty = self.l1_weight * losses.l1_activity(out.z)
        elif self.penalty == "contractive":  # λ·‖J_f(x)‖²_F averaged over the batch (Rifai et al. 2011, eq. 2)
            penalty = self.contractive_weight * jacobian_sq.mean()
        if penalty is not None:
            loss = loss + penalty
        vq_terms = [None] * 4
        if self.vq:
            vq_terms = self._vq_terms(out)
            loss = loss + vq_terms[0] + (0 if vq_terms[1] is None else vq_terms[1])
        with torch.no_grad():
            zero = recon.new_zeros(())
            values = [loss, recon, kl, penalty, zero, *vq_terms, None]  # zero: the ess, an IWAE's only
            terms = torch.stack([zero if v is None else v.to(zero.dtype) for v in values])
        return loss, terms.detach().float()

    def _sae(self, out: ModelOutput, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse autoencoder: ‖x − x̂‖² + the AuxK term + the sparsity penalty (aectl/objectives/sae.py)."""
        recon = sae_terms.squared_error(out.recon, x).mean()
        aux = sae_terms.aux_loss(out, x, self.aux_coefficient)
        penalty = sae_terms.sparsity_penalty(out, self.sparsity_coefficient)
        loss = recon + sum(t for t in (aux, penalty) if t is not None)
        with torch.no_grad():
            zero = recon.new_zeros(())
            values = [loss, recon, None, penalty, *[None] * 5, aux]
            terms = torch.stack([zero if v is None else v.to(zero.dtype) for v in values])
        return loss, terms.detach().float()

    def _vq_terms(self, out: ModelOutput) -> list:
        """VQ-VAE (van den Oord et al. 2017, eq. 3): [β_c·‖z_e − sg[e]‖², ‖sg[z_e] − e‖² (None
        with the EMA codebook), the batch's usage, its perplexity]."""
        from aectl.models import quantizer
        from aectl.runtime.distributed import batch_sum

        z_e, z_q = out.vq.z_e, out.vq.z_q
        commitment = self.commitment * losses.vq_commitment(z_e, z_q)
        codebook = None if self.ema else losses.vq_codebook(z_e, z_q)
        with torch.no_grad():
            # in a torchrun step, the global batch's counts: each rank logs that batch's usage
            counts = batch_sum(quantizer.code_counts(out.vq.indices, out.vq.num_embeddings))
            usage, perplexity = quantizer.code_usage(counts), quantizer.code_perplexity(counts)
        return [commitment, codebook, usage, perplexity]

    def named(self, values, beta: float) -> dict[str, float]:
        """TERMS values (a row, in order) by name, keeping only the terms this objective has:
        `kl`, `kl_weighted` = β·KL and `beta` for a VAE, `penalty` when there is one."""
        terms = dict(zip(TERMS, values))
        named = {"loss": terms["loss"], "recon": terms["recon"]}
        if self.iw_samples:  # no β: recon + kl is the −ELBO (an estimate over the k draws), loss the −L_k
            named.update(kl=terms["kl"], ess=terms["ess"])
        elif self.variational:
            named.update(kl=terms["kl"], kl_weighted=beta * terms["kl"], beta=beta)
        if self.penalty != "none" or self.sparsity_coefficient:
            named["penalty"] = terms["penalty"]
        if self.vq:
            named["commitment"] = terms["commitment"]
            if not self.ema:
                named["codebook"] = terms["codebook"]
            named.update(batch_usage=terms["batch_usage"], batch_perplexity=terms["batch_perplexity"])
        if self.aux_coefficient:
            named["aux"] = terms["aux"]
        return named


def make_objective(model_kind: str, likelihood: str, sigma: float, penalty: dict, k: int = 1,
                   commitment: float = 0.25, ema: bool = False, model: dict | None = None) -> Objective:
    """The objective of a model kind with its likelihood and penalty section (plain data, as in
    a checkpoint's config), so training and `aectl eval` build the same one; `k` is the IWAE's,
    `commitment` and `ema` the VQ-VAE's, `model` (the model section) the sparse autoencoder's weights and the prior."""
    if model_kind == "sae":
        return Objective(likelihood=likelihood, variational=False, sae=True, **sae_terms.coefficients(model or {}))
    if model_kind == "hvae":  # k = 1: the ELBO, with β
        return Objective(likelihood=likelihood, variational=True, sigma=sigma, hierarchical=True,
                         iw_samples=k if k > 1 else 0)
    return Objective(likelihood=likelihood, variational=model_kind in VARIATIONAL_KINDS,
                     prior=(model or {}).get("prior", "gaussian"),
                     penalty=penalty.get("kind", "none"), rho=penalty.get("rho", 0.05),
                     penalty_beta=penalty.get("beta", 3.0), l1_weight=penalty.get("weight", 1e-3), sigma=sigma,
                     contractive_weight=penalty.get("weight", 1e-3), iw_samples=k if model_kind == "iwae" else 0,
                     vq=model_kind == "vqvae", commitment=commitment, ema=ema)
