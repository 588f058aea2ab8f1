"""Vector quantisation of the VQ-VAE (van den Oord et al. 2017): the nearest code of each encoder
output, the straight-through gradient, the codebook kept by exponential moving averages
(appendix A.1) or learnt by the codebook loss (objective.py), and the reset of dead codes.

Shapes: z_e is (N, P, D), N examples of P positions (the grid cells of a conv encoder, the
groups of an MLP code) holding a D-vector each; the codebook is (K, D).
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aectl.runtime.distributed import batch_sum, random_rows


class VQOutput(NamedTuple):
    """z_e: the encoder's outputs (N, P, D); z_q: their nearest codes e_k (N, P, D), with the
    gradient reaching the codebook, not the encoder; indices: k per position (N, P);
    num_embeddings: K."""

    z_e: torch.Tensor
    z_q: torch.Tensor
    indices: torch.Tensor
    num_embeddings: int


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """argmin_k ‖z_m − e_k‖² for each row of z (M, D), as ‖z‖² − 2 z·e + ‖e‖² (eq. 1)."""
    distances = z.square().sum(1, keepdim=True) - 2 * z @ codebook.t() + codebook.square().sum(1)
    return distances.argmin(1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """z_q in the forward pass, the identity in the backward one: the decoder's gradient with
    respect to z_q is copied to z_e (van den Oord et al. 2017, §3.2)."""
    return z_e + (z_q - z_e).detach()


def code_counts(indices: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    """How many positions chose each code, shape (K,)."""
    return torch.bincount(indices.flatten(), minlength=num_embeddings)


def code_usage(counts: torch.Tensor) -> torch.Tensor:
    """The fraction of the codebook chosen at least once."""
    return (counts > 0).double().mean()


def code_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(H(p̄)) with p̄ the average one-hot assignment (counts / total): K when every code is
    used equally often, 1 when a single code takes everything."""
    p = counts.double() / counts.sum().clamp_min(1)
    return torch.exp(-(p * p.clamp_min(1e-30).log()).sum())


def assignment_sums(z: torch.Tensor, indices: torch.Tensor, num_embeddings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_k, Σ_{i: k(i)=k} z_i): how many rows of z (M, D) chose each code, and their sum (K, D)."""
    one_hot = F.one_hot(indices, num_embeddings).type_as(z)  # (M, K)
    return one_hot.sum(0), one_hot.t() @ z


def ema_update(cluster_size: torch.Tensor, embed_sum: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor,
               decay: float, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA step of the codebook (van den Oord et al. 2017, appendix A.1, eqs. 6-8) from the
    batch's `assignment_sums` n_k and Σ_{i: k(i)=k} z_i: N_k ← γN_k + (1−γ)n_k,
    m_k ← γm_k + (1−γ)Σ z_i, e_k = m_k / Ñ_k with the Laplace-smoothed count
    Ñ_k = (N_k + ε)/(n + Kε)·n, n = Σ_k N_k (no code divides by 0). Returns (N, m, codebook)."""
    k = cluster_size.shape[0]
    cluster_size = decay * cluster_size + (1 - decay) * counts
    embed_sum = decay * embed_sum + (1 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + k * eps) * total
    return cluster_size, embed_sum, embed_sum / smoothed.unsqueeze(1)


class VectorQuantizer(nn.Module):
    """The codebook and its upkeep. In training mode `forward` also updates it: the EMA step
    (ema=True) and the reset of codes no position chose for `dead_code_steps` steps in a row to
    random encoder outputs of the batch (0 = never). `quantize` only looks codes up."""

    def __init__(self, num_embeddings: int, embedding_dim: int, ema: bool = False, ema_decay: float = 0.99,
                 dead_code_steps: int = 100, eps: float = 1e-5):
        super().__init__()
        self.num_embeddings, self.ema, self.decay, self.dead_code_steps, self.eps = (
            num_embeddings, ema, ema_decay, dead_code_steps, eps)
        init = torch.empty(num_embeddings, embedding_dim).uniform_(-1 / num_embeddings, 1 / num_embeddings)
        if ema:  # kept by the EMA, not by the optimizer; N starts at 1 so that e_k = m_k / N_k holds at once
            self.register_buffer("codebook", init)
            self.register_buffer("cluster_size", torch.ones(num_embeddings))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("unused_steps", torch.zeros(num_embeddings, dtype=torch.long))
        self.register_buffer("resets", torch.zeros((), dtype=torch.long))  # codes re-initialised so far

    def quantize(self, z_e: torch.Tensor) -> VQOutput:
        flat = z_e.reshape(-1, z_e.shape[-1])
        indices = nearest_code(flat.detach(), self.codebook.detach())
        z_q = F.embedding(indices, self.codebook).view_as(z_e)
        return VQOutput(z_e, z_q, indices.view(z_e.shape[:-1]), self.num_embeddings)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        out = self.quantize(z_e)
        if self.training and (self.ema or self.dead_code_steps):
            with torch.no_grad():
                self._upkeep(z_e.detach().float(), out.indices.flatten())
        return out

    def _upkeep(self, z_e: torch.Tensor, indices: torch.Tensor) -> None:
        """The EMA step and the dead-code reset from the batch's counts and sums, summed over
        torchrun's ranks (one collective): every rank updates its codebook as one process would
        on the global batch."""
        if self.ema:
            counts, sums = assignment_sums(z_e.reshape(-1, z_e.shape[-1]), indices, self.num_embeddings)
            stats = batch_sum(torch.cat([counts.unsqueeze(1), sums], 1))
            counts, sums = stats[:, 0], stats[:, 1:]
            n, m, codebook = ema_update(self.cluster_size, self.embed_sum, counts, sums, self.decay, self.eps)
            self.cluster_size.copy_(n)
            self.embed_sum.copy_(m)
            self.codebook.copy_(codebook)
        else:
            counts = batch_sum(code_counts(indices, self.num_embeddings))
        if self.dead_code_steps:
            self._reset_dead(z_e, counts)

    def _reset_dead(self, z_e: torch.Tensor, counts: torch.Tensor) -> None:
        """Codes unused for dead_code_steps steps take random encoder outputs of this batch (the
        global batch under torchrun), with no host sync (a `where` over the whole codebook)."""
        self.unused_steps.copy_(torch.where(counts > 0, 0, self.unused_steps + 1))
        dead = self.unused_steps >= self.dead_code_steps
        picks = random_rows(z_e, self.num_embeddings)
        self.codebook.data.copy_(torch.where(dead.unsqueeze(1), picks, self.codebook.data))
        if self.ema:  # the new code is its own running mean, counted once
            self.embed_sum.copy_(torch.where(dead.unsqueeze(1), picks, self.embed_sum))
            self.cluster_size.copy_(torch.where(dead, 1.0, self.cluster_size))
        self.unused_steps.copy_(torch.where(dead, 0, self.unused_steps))
        self.resets.add_(dead.sum())
