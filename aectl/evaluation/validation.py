"""The metrics of a split, with one definition each, shared by training's per-epoch validation
(val/*, metrics.json) and `aectl eval` (eval/metrics.json):

  loss, recon, kl, kl_weighted, beta, penalty
             the training objective at the target β, as training computes it: from the noisy
             input for a denoising model, from one sampled z per example for a VAE.
  neg_elbo   VAE: −ELBO = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z)) of the clean input, one z per
             example (Kingma & Welling 2014, eq. 10); equals `loss` when β = 1 and no noise. With a
             VampPrior, and for the two-layer model, the KL is estimated at the sampled z.
  mse, psnr  the deterministic reconstruction of the clean input (z = μ for a VAE), per element
             / per image averaged; PSNR = 10·log10(MAX²/MSE) with MAX the width of the data's
             known range, and absent where the data has none (standardised tables).
  psnr_noisy, psnr_denoised
             denoising models: the noisy input's PSNR and that of the reconstruction from it.
  jacobian_norm
             contractive penalty: the mean ‖J_f(x)‖_F of the encoder at the clean inputs.
  ess        IWAE: the mean effective sample size 1/Σ w̃² of the k importance weights (in [1, k]).
  active_units, rho_hat_*, kl_sparsity, frac_within_2x, code_l1
             statistics of the codes (μ for a VAE) of the clean inputs over the whole split.
  active_units_z2
             a two-layer model (model=hvae): active units of z2, from the μ of q(z2|z1) at z1 = μ(x)
             (active_units is then of z1).
  commitment, codebook, batch_usage, batch_perplexity
             VQ-VAE: β_c·‖z_e − sg[e]‖², ‖sg[z_e] − e‖² (not with the EMA codebook), and the
             usage and perplexity of each batch's codes, averaged over the batches.
  codebook_usage, perplexity
             VQ-VAE: the fraction of the codes chosen at least once over the whole split (clean
             inputs), and exp of the entropy of their average one-hot assignment.
  fvu, explained_variance, l0, dead_latents, dense_latents, decoder_max_cosine, dead_latents_train
             sparse autoencoder: Σ‖x − x̂‖² / Σ‖x − x̄‖² over the split (x̄ its mean
             per dimension) and 1 − that; mean active latents per example; latents never active
             on the split, and active on more than 10% of it (counts); the mean over latents of
             the largest cosine between its decoder row and another's; latents inactive for the
             last model.dead_steps training steps (aectl/objectives/sae.py).

For a conditional VAE (batches of (x, y)) each of these is conditional on the label: −ELBO of
log p(x|y), μ of q(z|x,y), reconstructions from p(x|z,y).
"""

import torch
from torch import nn

from aectl.models import mean_reconstruction, quantizer
from aectl.objectives import contractive, losses, metrics, sae
from aectl.objectives.objective import TERMS, Objective


class SplitMetrics:
    """Sums per-batch metrics on the device (one host sync, in `result`). `add` each batch of
    clean inputs; it returns the batch's codes for the statistics of the whole split."""

    def __init__(self, objective: Objective, corrupt, beta: float, known_range: tuple[float, float] | None,
                 noisy: bool):
        self.objective, self.corrupt, self.beta, self.noisy = objective, corrupt, beta, noisy
        self.psnr_max = None if known_range is None else known_range[1] - known_range[0]
        self.terms: torch.Tensor | float = 0.0
        self.sums: dict[str, torch.Tensor] = {}
        self.binary: torch.Tensor | bool = True
        self.code_counts: torch.Tensor | int = 0  # VQ-VAE: how often each code was chosen
        self.sae = sae.SplitStats() if objective.sae else None  # sparse autoencoder: FVU, L0, latent counts
        self.model = None
        self.upper_codes: list[torch.Tensor] = []  # a two-layer model: μ of q(z2|z1 = μ1), for its active units
        self.n = 0

    def accumulate(self, name: str, per_example: torch.Tensor) -> None:
        total = per_example.double().sum()
        self.sums[name] = self.sums[name] + total if name in self.sums else total

    @torch.no_grad()
    def add(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:  # a conditional model: every term below is of q(z|x,y) and p(x|z,y)
            model = model.given(y)
        self.n += len(x)
        x_in = self.corrupt(x) if self.noisy else x
        out, _, terms = self.objective.step(model, x_in, x, self.beta)
        self.terms = self.terms + terms.double() * len(x)
        if self.noisy:  # the codes and reconstruction of the clean input
            code = metrics.latent_means(model, x)
        else:
            code = out.mu if out.mu is not None else out.z
        # An AE's clean forward pass is already deterministic: reuse its reconstruction.
        raw = out.recon if not self.noisy and out.mu is None else model.decode(code)
        x_hat = mean_reconstruction(model, raw).float()
        self.accumulate("mse", metrics.per_element_mse(x_hat, x))
        if self.psnr_max is not None:
            self.accumulate("psnr", metrics.psnr(x_hat, x, self.psnr_max))
            if self.noisy:
                self.accumulate("psnr_noisy", metrics.psnr(x_in, x, self.psnr_max))
                self.accumulate("psnr_denoised", metrics.psnr(metrics.reconstruct(model, x_in).float(), x, self.psnr_max))
        if self.objective.variational:
            self.accumulate("neg_elbo", self._neg_elbo(model, x, out, terms))
        if self.objective.hierarchical:
            self.upper_codes.append(model.encode_upper(code)[0].float())
        if self.objective.penalty == "contractive":
            self.accumulate("jacobian_norm", jacobian_norm(model, x))
        if out.vq is not None:  # the codes of the clean input
            vq = model(x).vq if self.noisy else out.vq
            self.code_counts = self.code_counts + quantizer.code_counts(vq.indices, vq.num_embeddings)
        if self.sae is not None:
            self.sae.add(x, x_hat, code)
            self.model = model
        self.binary = self.binary & ((x == 0) | (x == 1)).all()
        return code.float()

    def _neg_elbo(self, model: nn.Module, x: torch.Tensor, out, terms: torch.Tensor) -> torch.Tensor:
        """Per-example −ELBO of the clean x: the objective's recon + KL when the model saw x."""
        if not self.noisy:
            return (terms[TERMS.index("recon")] + terms[TERMS.index("kl")]).expand(len(x))
        clean = model(x)
        nll = losses.reconstruction_nll(clean.recon, x, model.likelihood, model.sigma)
        return nll + self.objective.kl(model, clean)

    def result(self, codes: torch.Tensor) -> dict[str, float]:
        values = self.objective.named((self.terms / self.n).tolist(), self.beta)
        values.update({name: total.item() / self.n for name, total in self.sums.items()})
        values.update(code_statistics(codes, self.objective))
        if self.upper_codes:
            values["active_units_z2"] = metrics.active_units(torch.cat(self.upper_codes))[0]
        if isinstance(self.code_counts, torch.Tensor):
            values.update(codebook_usage=quantizer.code_usage(self.code_counts).item(),
                          perplexity=quantizer.code_perplexity(self.code_counts).item())
        if self.sae is not None:  # the AuxK term is training's only: eval mode counts no dead latents
            values.pop("aux", None)
            values.update(self.sae.result(), decoder_max_cosine=sae.decoder_max_cosine(self.model.W_dec),
                          dead_latents_train=int((self.model.steps_since_active >= self.model.dead_steps).sum()))
        return values

    def data_is_binary(self) -> bool:
        """Whether every value the model was scored on was 0 or 1 (a Bernoulli mass applies)."""
        return bool(self.binary)


def jacobian_norm(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """‖J_f(x)‖_F per example of the clean input (the norm, not its square: the contractive
    penalty's quantity in the units of the code per unit of input)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        code = model.encode(x)
        return contractive.jacobian_sq_norm(model, x, code, create_graph=False).detach().sqrt()


def code_statistics(codes: torch.Tensor, objective: Objective) -> dict[str, float]:
    """Statistics of the codes (N, K) of a whole split: active units (VAE, Burda et al. 2016
    §5.2), the distribution of ρ̂ and Σ_j KL(ρ ‖ ρ̂_j) over the split (kl_sparsity), the mean L1
    of the code (l1)."""
    values: dict[str, float] = {}
    if objective.variational:
        values["active_units"] = metrics.active_units(codes)[0]
    if objective.penalty == "kl_sparsity":
        values.update(metrics.sparsity_stats(codes, objective.rho))
    elif objective.penalty == "l1":
        values["code_l1"] = codes.double().abs().flatten(1).sum(1).mean().item()
    return values


@torch.no_grad()
def evaluate_split(model: nn.Module, batches, objective: Objective, corrupt, beta: float,
                   known_range: tuple[float, float] | None, noisy: bool, seed: int = 0) -> dict[str, float]:
    """The metrics of one split in eval mode, on a forked RNG seeded with `seed`: the same
    noise and ε at every call, and the caller's random stream left untouched."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    split = SplitMetrics(objective, corrupt, beta, known_range, noisy)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        # the codes of the whole split only where code_statistics reads them: an SAE's (N, latents)
        # codes of a large split would not fit in memory
        keep = objective.variational or objective.penalty in ("kl_sparsity", "l1")
        codes = []
        for b in batches:
            code = split.add(model, *(b if isinstance(b, tuple) else (b,)))
            if keep:
                codes.append(code)
        codes = torch.cat(codes) if codes else torch.empty(0)
    model.train(was_training)
    return split.result(codes)


@torch.no_grad()
def mean_image_psnr(train_batches, split_batches, known_range: tuple[float, float] | None) -> float | None:
    """PSNR of the mean training example taken as every reconstruction: the score of a model
    that ignores its input (a collapsed VAE's), the bar a working model clears."""
    if known_range is None:
        return None
    total, n = None, 0
    for x in train_batches:
        total = x.double().sum(0) if total is None else total + x.double().sum(0)
        n += len(x)
    mean = (total / n).float()
    scores = [metrics.psnr(mean.expand_as(x), x, known_range[1] - known_range[0]) for x in split_batches]
    return torch.cat(scores).mean().item()
