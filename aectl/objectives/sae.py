"""The sparse autoencoder's loss terms and metrics, one definition each (training's val/* and
`aectl eval` both read them here).

Loss (each summed over features, averaged over the batch, as every aectl term):
  recon    ‖x − x̂‖², the squared error (Gao et al. 2024, not normalised by the data's variance)
  aux      α·‖e − ê‖², e = sg[x − x̂] the residual, ê the AuxK reconstruction from the k_aux
           largest dead latents (Gao et al. 2024, §A.2, α = 1/32); 0 while no latent is dead
  penalty  jumprelu: λ·‖z‖₀ with the straight-through threshold gradient (Rajamanoharan et al.
           2024); relu_l1: λ·Σ_i z_i‖W_dec,i‖ (Conerly et al. 2024)
"""

import torch

DENSE_SHARE = 0.1  # a latent active on more than this share of the inputs is dense
RECOVERED_COSINE = 0.9  # a true direction is recovered when a decoder row has at least this cosine with it


def coefficients(model: dict) -> dict:
    """The weights of the aux and penalty terms from a model config section (plain data)."""
    activation = model.get("activation")
    sparsity = {"jumprelu": model.get("l0_coefficient", 1.0), "relu_l1": model.get("l1_coefficient", 5.0)}
    return {"aux_coefficient": model.get("aux_coefficient", 1 / 32) if activation in ("topk", "batchtopk") else 0.0,
            "sparsity_coefficient": sparsity.get(activation, 0.0)}


def squared_error(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """‖x − x̂‖² per example, shape (N,)."""
    return (recon - x).flatten(1).square().sum(1)


def aux_loss(out, x: torch.Tensor, coefficient: float) -> torch.Tensor | None:
    """α·mean_n ‖e − ê‖² with e = sg[x − x̂], when some latent is dead (Gao et al. 2024, §A.2)."""
    sae = out.sae
    if sae is None or sae.aux_recon is None or not coefficient:
        return None
    residual = (x - out.recon).flatten(1).detach()
    return coefficient * sae.has_dead * (residual - sae.aux_recon).square().sum(1).mean()


def sparsity_penalty(out, coefficient: float) -> torch.Tensor | None:
    """λ·mean_n of the model's per-example sparsity quantity (jumprelu: L0; relu_l1: weighted L1)."""
    if out.sae is None or out.sae.sparsity is None:
        return None
    return coefficient * out.sae.sparsity.mean()


# ---------------------------------------------------------------- metrics


class SplitStats:
    """Sums over a split's batches, on the device: Σx and Σx² per dimension, Σ‖x − x̂‖², the
    active-latent count per example and how often each latent fires."""

    def __init__(self):
        self.n, self.sum_x, self.sum_x2, self.sq_err, self.l0, self.fired = 0, 0.0, 0.0, 0.0, 0.0, 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> None:
        x, x_hat = x.flatten(1).double(), x_hat.flatten(1).double()
        active = z > 0
        self.n += len(x)
        self.sum_x = self.sum_x + x.sum(0)
        self.sum_x2 = self.sum_x2 + x.square().sum(0)
        self.sq_err = self.sq_err + (x - x_hat).square().sum()
        self.l0 = self.l0 + active.sum()
        self.fired = self.fired + active.sum(0)

    def result(self) -> dict[str, float]:
        """fvu = Σ‖x − x̂‖² / Σ‖x − x̄‖² with x̄ the split's mean per dimension; explained_variance =
        1 − fvu; l0 = mean active latents per example; dead_latents = latents never active on the
        split, dense_latents = active on more than 10% of its inputs (counts of latents)."""
        total_var = (self.sum_x2 - self.sum_x.square() / self.n).sum()
        fvu = (self.sq_err / total_var).item()
        share = self.fired.double() / self.n
        return {"fvu": fvu, "explained_variance": 1 - fvu, "l0": (self.l0 / self.n).item(),
                "dead_latents": int((self.fired == 0).sum()), "dense_latents": int((share > DENSE_SHARE).sum())}


def max_cosine(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """For each row of a, its largest cosine similarity with a row of b (another row of a itself
    when exclude_self)."""
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = a.double() @ b.double().T
    if exclude_self:
        cos.fill_diagonal_(float("-inf"))
    return cos.max(1).values


def decoder_max_cosine(w_dec: torch.Tensor) -> float:
    """The mean over latents of the largest cosine between its decoder row and another's: near 1,
    latents duplicate each other."""
    return max_cosine(w_dec, w_dec, exclude_self=True).mean().item()


def direction_recovery(true_directions: torch.Tensor, w_dec: torch.Tensor) -> dict[str, float]:
    """mmcs: the mean over the true directions of their largest cosine with a decoder row (mean
    max cosine similarity, Sharkey et al. 2022); recovered: the share of them with one ≥ 0.9."""
    best = max_cosine(true_directions.to(w_dec.device), w_dec)
    return {"mmcs": best.mean().item(), "recovered": (best >= RECOVERED_COSINE).double().mean().item()}


def log_density(fired: torch.Tensor, n: int) -> torch.Tensor:
    """log10 of each latent's firing share over n inputs; −inf for the dead."""
    return (fired.double() / n).log10()
