"""The sparse autoencoder of dictionary learning on activations: x̂ = W_decᵀ f(W_encᵀ(x − b_dec) + b_enc) + b_dec
with many latents and f forcing sparsity: topk (Gao et al. 2024), batchtopk (Bussmann et al. 2024),
jumprelu (Rajamanoharan et al. 2024) or relu_l1 (Conerly et al. 2024). Parameters are named as
SAELens names them; the training recipe's upkeep (unit-norm decoder rows, dead-latent counts, b_dec
from the data) lives here, called by the training loop through the hooks `init_from_data`,
`before_optimizer_step` and `after_optimizer_step`."""

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

from aectl.config import B_DEC_INITS, SAE_ACTIVATIONS  # noqa: F401 (the names of options live in config/schema.py)
from aectl.models.networks import DEFAULT_SIGMA, ModelOutput
from aectl.runtime.distributed import batch_sum


MEDIAN_ROWS = 65_536  # rows the geometric median of b_dec_init is computed on (Weiszfeld's iterations cost N·D each)


class SAEOutput(NamedTuple):
    """sparsity: the per-example quantity the sparsity penalty weighs (jumprelu: L0 with the
    straight-through threshold gradient; relu_l1: Σ_i z_i‖W_dec,i‖), else None; aux_recon: the
    AuxK reconstruction ê of the residual from the dead latents (training only, else None);
    has_dead: 1.0 when some latent is dead (the AuxK term applies), else 0.0."""

    sparsity: torch.Tensor | None = None
    aux_recon: torch.Tensor | None = None
    has_dead: torch.Tensor | None = None


class _JumpReLU(torch.autograd.Function):
    """z·H(z − θ) with the straight-through pseudo-derivative ∂/∂θ = −(θ/ε)·K((z − θ)/ε), K the
    rectangle 1[|u| < ½] (Rajamanoharan et al. 2024, §4, eq. 11); ∂/∂z = H(z − θ)."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        window = ((pre - threshold).abs() < ctx.bandwidth / 2).to(grad.dtype)
        grad_threshold = (-(threshold / ctx.bandwidth) * window * grad).sum(0)
        return grad * (pre > threshold), grad_threshold, None


class _Step(torch.autograd.Function):
    """H(z − θ), the L0 count, with ∂/∂θ = −(1/ε)·K((z − θ)/ε) (Rajamanoharan et al. 2024, §4,
    eq. 12) and no gradient to z."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        window = ((pre - threshold).abs() < ctx.bandwidth / 2).to(grad.dtype)
        return torch.zeros_like(pre), (-window / ctx.bandwidth * grad).sum(0), None


def topk_latents(pre: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest pre-activations of each row, through a ReLU, the rest 0 (Gao et al. 2024, eq. 3)."""
    values, indices = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter(1, indices, values.relu())


def batch_topk_latents(pre: torch.Tensor, k: int) -> torch.Tensor:
    """The k·N largest ReLU'd pre-activations of the whole batch (Bussmann et al. 2024, §3)."""
    flat = pre.relu().flatten()
    values, indices = flat.topk(min(k * len(pre), flat.numel()))
    return torch.zeros_like(flat).scatter(0, indices, values).view_as(pre)


def geometric_median(x: torch.Tensor, iterations: int = 100, eps: float = 1e-8) -> torch.Tensor:
    """argmin_y Σ_n ‖x_n − y‖ by Weiszfeld's iteration y ← Σ w_n x_n / Σ w_n, w_n = 1/‖x_n − y‖,
    from the mean (Bricken et al. 2023 and Gao et al. 2024 initialise b_dec with it)."""
    x = x.double()
    y = x.mean(0)
    for _ in range(iterations):
        weights = 1 / (x - y).norm(dim=1).clamp_min(eps)
        y = (weights[:, None] * x).sum(0) / weights.sum()
    return y


class SparseAutoencoder(nn.Module):
    """pre = (x − b_dec) W_enc + b_enc; z = f(pre); x̂ = z W_dec + b_dec, x flattened to (N, d_in).
    `encode` is the inference behaviour (batchtopk: the threshold estimated in training)."""

    likelihood, sigma = "gaussian", DEFAULT_SIGMA  # the squared error is its objective (aectl/objectives/sae.py)

    def __init__(self, *, input_shape: Sequence[int], num_latents: int, activation: str = "topk", k: int = 32,
                 k_aux: int = 512, dead_steps: int = 1000, normalize_decoder: bool = True, b_dec_init: str = "mean",
                 threshold_decay: float = 0.999, bandwidth: float = 0.001, init_threshold: float = 0.001):
        super().__init__()
        self.input_shape, self.d_in, self.num_latents = list(input_shape), math.prod(input_shape), num_latents
        self.activation, self.k, self.k_aux, self.dead_steps = activation, k, min(k_aux, num_latents), dead_steps
        self.normalize_decoder, self.b_dec_init = normalize_decoder, b_dec_init
        self.threshold_decay, self.bandwidth = threshold_decay, bandwidth
        w_dec = torch.randn(num_latents, self.d_in)
        w_dec /= w_dec.norm(dim=1, keepdim=True)  # unit-norm decoder rows (Bricken et al. 2023)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone())  # the encoder starts as the decoder's transpose (Gao et al. 2024, §2.1)
        self.b_enc = nn.Parameter(torch.zeros(num_latents))
        self.b_dec = nn.Parameter(torch.zeros(self.d_in))
        if activation == "jumprelu":
            self.log_threshold = nn.Parameter(torch.full((num_latents,), math.log(init_threshold)))
        if activation == "batchtopk":  # < 0: not estimated yet (inference then keeps every positive latent)
            self.register_buffer("threshold", torch.tensor(-1.0))
        self.register_buffer("steps_since_active", torch.zeros(num_latents, dtype=torch.long))

    def __getattr__(self, name: str):
        if name == "threshold" and self.activation == "jumprelu":  # θ = exp(log θ) keeps it positive
            return self.log_threshold.exp()
        return super().__getattr__(name)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latents (N, num_latents) at inference."""
        pre = self.pre_activations(x)
        if self.activation == "topk":
            return topk_latents(pre, self.k)
        if self.activation == "batchtopk":
            return self._threshold_latents(pre)
        if self.activation == "jumprelu":
            return pre * (pre > self.threshold)
        return pre.relu()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> ModelOutput:
        pre = self.pre_activations(x)
        z, sparsity = self._latents(pre)
        recon = self.decode(z)
        sae = SAEOutput(sparsity)
        if self.training and self.activation in ("topk", "batchtopk"):
            sae = sae._replace(**self._aux_k(pre, z))
        elif self.training:
            self._count_inactive(z)
        return ModelOutput(recon.view_as(x), z, sae=sae)

    def _latents(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training behaviour: (z, the per-example quantity the sparsity penalty weighs)."""
        if self.activation == "topk":
            return topk_latents(pre, self.k), None
        if self.activation == "batchtopk":
            if not self.training:
                return self._threshold_latents(pre), None
            z = batch_topk_latents(pre, self.k)
            self._update_threshold(z)
            return z, None
        if self.activation == "jumprelu":
            theta = self.threshold
            z = _JumpReLU.apply(pre, theta, self.bandwidth)
            return z, _Step.apply(pre, theta, self.bandwidth).sum(1)
        z = pre.relu()  # relu_l1: λ·Σ_i z_i‖W_dec,i‖ (Conerly et al. 2024), the norm keeps it scale-free
        return z, (z * self.W_dec.norm(dim=1)).sum(1)

    def _threshold_latents(self, pre: torch.Tensor) -> torch.Tensor:
        """batchtopk at inference: the θ estimated in training replaces the batch's top k·N
        (Bussmann et al. 2024, §3.2), so an example's latents do not depend on its batch."""
        return pre.relu() * (pre > self.threshold)

    @torch.no_grad()
    def _update_threshold(self, z: torch.Tensor) -> None:
        """θ ← d·θ + (1 − d)·(the smallest positive latent kept in the batch), θ the first one to
        start (Bussmann et al. 2024, §3.2; d = threshold_decay), without a host sync."""
        smallest = z.masked_fill(z <= 0, float("inf")).min()  # inf: nothing kept, θ stays
        blended = self.threshold_decay * self.threshold + (1 - self.threshold_decay) * smallest
        updated = torch.where(self.threshold < 0, smallest, blended)
        self.threshold.copy_(torch.where(smallest.isinf(), self.threshold, updated))

    @torch.no_grad()
    def _count_inactive(self, z: torch.Tensor) -> torch.Tensor:
        """Steps since each latent last fired, this batch counted; returns the dead mask
        (inactive for dead_steps steps or more)."""
        fired = batch_sum((z > 0).sum(0)) > 0  # under torchrun: fired anywhere in the global batch
        self.steps_since_active.copy_(torch.where(fired, 0, self.steps_since_active + 1))
        return self.steps_since_active >= self.dead_steps

    def _aux_k(self, pre: torch.Tensor, z: torch.Tensor) -> dict:
        """AuxK (Gao et al. 2024, §A.2): ê = (the k_aux largest pre-activations of the dead
        latents, ReLU'd) W_dec, which the objective fits to the residual x − x̂."""
        dead = self._count_inactive(z)
        masked = pre.masked_fill(~dead, float("-inf"))
        values, indices = masked.topk(self.k_aux, dim=1)
        z_aux = torch.zeros_like(pre).scatter(1, indices, values.relu())  # relu(−inf) = 0: a live latent adds nothing
        return {"aux_recon": z_aux @ self.W_dec, "has_dead": dead.any().to(pre.dtype)}

    # ---------------------------------------------------------- the training loop's hooks

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """b_dec at the training rows' mean, or the geometric median of up to MEDIAN_ROWS of them
        drawn with a fixed seed (Bricken et al. 2023; Gao et al. 2024, §2.1), before the first step."""
        if self.b_dec_init == "zeros":
            return
        rows = x.flatten(1)
        if self.b_dec_init == "mean":
            center = rows.mean(0, dtype=torch.float64)
        else:
            pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:MEDIAN_ROWS]
            center = geometric_median(rows[pick.to(rows.device)])
        self.b_dec.copy_(center.to(self.b_dec.dtype))

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Remove from each decoder row's gradient its component along the row, g ← g − (g·w)w for
        unit w: the step then moves along the unit sphere (Bricken et al. 2023; Gao et al. 2024, §A.2)."""
        if self.normalize_decoder and self.W_dec.grad is not None:
            w, g = self.W_dec, self.W_dec.grad
            g.sub_((g * w).sum(1, keepdim=True) * w)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Renormalise each decoder row to unit norm after the step."""
        if self.normalize_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
