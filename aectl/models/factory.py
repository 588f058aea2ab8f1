"""Model kind → class, the one constructor (`build_model`: a checkpoint's (kind, kwargs) rebuilds a
model exactly), and the mean of a decoder's distribution in data space."""

import torch
from torch import nn

from aectl.models.autoencoder import Autoencoder
from aectl.models.conditional import ConditionalVAE
from aectl.models.hierarchical import HierarchicalVAE
from aectl.models.sae import SparseAutoencoder
from aectl.models.variational import ImportanceWeightedAutoencoder, VariationalAutoencoder
from aectl.models.vq import VectorQuantizedAutoencoder

# Model kinds of the config → module class. The AE kinds share one class; their presets differ.
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "ae": Autoencoder,
    "stacked_ae": Autoencoder,
    "sparse_ae": Autoencoder,
    "dae": Autoencoder,
    "vae": VariationalAutoencoder,
    "cvae": ConditionalVAE,
    "vqvae": VectorQuantizedAutoencoder,
}
MODEL_CLASSES["iwae"] = ImportanceWeightedAutoencoder
MODEL_CLASSES["sae"] = SparseAutoencoder
MODEL_CLASSES["hvae"] = HierarchicalVAE


def build_model(kind: str, **kwargs) -> nn.Module:
    """Construct the model of `kind` from plain keyword arguments (as stored in checkpoints)."""
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[kind](**kwargs)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] of the continuous Bernoulli with λ = sigmoid(l): λ/(2λ − 1) + 1/(2·atanh(1 − 2λ))
    (Loaiza-Ganem & Cunningham 2019, §3), i.e. sigmoid(l)/tanh(l/2) − 1/l; ½ + l/12 near l = 0.
    Not λ itself: λ is the shape parameter, and reading it as the mean blurs reconstructions."""
    small = logits.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(logits), logits)
    exact = safe.sigmoid() / torch.tanh(safe / 2) - 1 / safe
    return torch.where(small, 0.5 + logits / 12, exact)


def mean_reconstruction(model: nn.Module, recon: torch.Tensor) -> torch.Tensor:
    """E[x|z] in data space: the mean of the decoder's distribution (sigmoid of the logits for a
    Bernoulli likelihood, the continuous Bernoulli's mean, the gaussian's x̂)."""
    if model.likelihood == "bernoulli":
        return recon.sigmoid()
    if model.likelihood == "continuous_bernoulli":
        return continuous_bernoulli_mean(recon)
    return recon
