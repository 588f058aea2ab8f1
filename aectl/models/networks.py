"""The networks every model is made of: the mlp and conv encoder/decoder builders, the VQ-VAE's
grid decoder, and ModelOutput, what every model's forward returns."""

from typing import NamedTuple, Sequence

import torch
from torch import nn

from aectl.config import ARCHS  # noqa: F401 (the names of kinds live in config/schema.py)
from aectl.models.quantizer import VQOutput

DEFAULT_SIGMA = 0.5 ** 0.5  # the gaussian decoder's fixed σ: the NLL is then the squared error plus D/2·log π

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


class ModelOutput(NamedTuple):
    """recon: decoder output (logits for a Bernoulli likelihood, the mean for a Gaussian one);
    z: the code fed to the decoder; mu/logvar: the posterior q(z|x) (VAE only, else None);
    vq: the VQ-VAE's encoder outputs, codes and code indices (aectl.models.quantizer.VQOutput, else None).
    sae: a sparse autoencoder's sparsity and AuxK inputs."""

    recon: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    vq: VQOutput | None = None
    sae: tuple | None = None  # the sparse autoencoder's penalty inputs (aectl.models.sae.SAEOutput, else None)


def _mlp(dims: Sequence[int], activation: str) -> list[nn.Module]:
    """Linear layers through `dims` with an activation after each (the caller adds the head)."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
    return layers


def _conv_sizes(height: int, width: int, n_layers: int) -> list[tuple[int, int]]:
    """Spatial size after each stride-2, kernel-3, padding-1 conv: ⌈h/2⌉ (any H×W works)."""
    sizes = [(height, width)]
    for _ in range(n_layers):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class Encoder(nn.Module):
    """x (N, C, H, W) → features (N, out_features): an MLP on the flattened input or a conv stack."""

    def __init__(self, input_shape: Sequence[int], arch: str, hidden_dims: Sequence[int],
                 conv_channels: Sequence[int], activation: str):
        super().__init__()
        c, h, w = input_shape
        if arch == "conv":
            layers: list[nn.Module] = []
            for c_in, c_out in zip([c, *conv_channels[:-1]], conv_channels):
                layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), ACTIVATIONS[activation]()]
            h_last, w_last = _conv_sizes(h, w, len(conv_channels))[-1]
            flat = conv_channels[-1] * h_last * w_last
            layers += [nn.Flatten(), *_mlp([flat, *hidden_dims], activation)]
            self.out_features = hidden_dims[-1] if hidden_dims else flat
        else:
            layers = [nn.Flatten(), *_mlp([c * h * w, *hidden_dims], activation)]
            self.out_features = hidden_dims[-1] if hidden_dims else c * h * w
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Decoder(nn.Module):
    """z (N, K) → output (N, C, H, W): the mirror of `Encoder`, with a linear output layer."""

    def __init__(self, input_shape: Sequence[int], arch: str, hidden_dims: Sequence[int],
                 conv_channels: Sequence[int], activation: str, latent_dim: int):
        super().__init__()
        c, h, w = input_shape
        self.input_shape = tuple(input_shape)
        dims = [latent_dim, *reversed(hidden_dims)]
        if arch == "conv":
            sizes = _conv_sizes(h, w, len(conv_channels))
            h_last, w_last = sizes[-1]
            flat = conv_channels[-1] * h_last * w_last
            layers: list[nn.Module] = [*_mlp(dims, activation), nn.Linear(dims[-1], flat),
                                       ACTIVATIONS[activation](),
                                       nn.Unflatten(1, (conv_channels[-1], h_last, w_last))]
            channels = [*reversed(conv_channels), c]
            targets = list(reversed(sizes[:-1]))
            for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
                # A stride-2 transposed conv maps s to 2s−1+output_padding; pick it to hit the
                # encoder's size exactly, so odd sizes (7×7, 28×28 → 14 → 7 → 4) round-trip.
                (h_in, w_in), (h_out, w_out) = sizes[len(sizes) - 1 - i], targets[i]
                pad = (h_out - 2 * h_in + 1, w_out - 2 * w_in + 1)
                layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad))
                if i < len(channels) - 2:
                    layers.append(ACTIVATIONS[activation]())
            self.body = nn.Sequential(*layers)
        else:
            self.body = nn.Sequential(*_mlp(dims, activation), nn.Linear(dims[-1], c * h * w),
                                      nn.Unflatten(1, (c, h, w)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def _output_activation(likelihood: str, name: str) -> nn.Module:
    """Gaussian: the decoder emits the mean, squashed to the data range by `name`; the Bernoulli
    likelihoods: it emits logits, unsquashed."""
    return ACTIVATIONS[name]() if likelihood == "gaussian" else nn.Identity()


def _grid_decoder(input_shape: Sequence[int], conv_channels: Sequence[int], activation: str,
                  embedding_dim: int) -> nn.Sequential:
    """A D-channel grid → (C, H, W): a 3×3 conv to the last encoder width, then the transposed
    convs of `Decoder` (the same output padding, so odd sizes round-trip)."""
    c, h, w = input_shape
    sizes = _conv_sizes(h, w, len(conv_channels))
    layers: list[nn.Module] = [nn.Conv2d(embedding_dim, conv_channels[-1], 3, padding=1), ACTIVATIONS[activation]()]
    channels = [*reversed(conv_channels), c]
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        (h_in, w_in), (h_out, w_out) = sizes[len(sizes) - 1 - i], sizes[len(sizes) - 2 - i]
        pad = (h_out - 2 * h_in + 1, w_out - 2 * w_in + 1)
        layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad))
        if i < len(channels) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
