"""The VQ-VAE (van den Oord et al. 2017): a conv encoder's grid snapped to the nearest codes."""

from typing import Sequence

import torch
from torch import nn

from aectl.models.networks import (ACTIVATIONS, DEFAULT_SIGMA, Decoder, Encoder, ModelOutput, _conv_sizes,
                                   _grid_decoder, _output_activation)
from aectl.models.quantizer import VectorQuantizer, straight_through


class VectorQuantizedAutoencoder(nn.Module):
    """VQ-VAE (van den Oord et al. 2017): z_e = E(x) is a set of P vectors of size D, each
    replaced by its nearest code of a K × D codebook, z = z_e + sg[z_q − z_e], x̂ = G(z).
    conv: E is the stride-2 conv stack and a 1×1 conv to D channels, so P is the cells of its
    last feature map; mlp: E is the MLP and a linear layer to latent_dim = P·D values, split
    into P groups of D (P = 1: a single vector). `encode` gives the quantised code z_q
    flattened to (N, P·D), which `decode` takes; `indices` gives the codes' numbers (N, P)."""

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, arch: str = "conv",
                 hidden_dims: Sequence[int] = (), conv_channels: Sequence[int] = (32, 64),
                 activation: str = "relu", likelihood: str = "gaussian", output_activation: str = "sigmoid",
                 sigma: float = DEFAULT_SIGMA, num_embeddings: int = 512, embedding_dim: int = 16,
                 commitment: float = 0.25, ema: bool = False, ema_decay: float = 0.99, dead_code_steps: int = 100):
        super().__init__()
        self.likelihood, self.sigma, self.commitment, self.ema = likelihood, sigma, commitment, ema
        self.arch, self.embedding_dim = arch, embedding_dim
        c, h, w = input_shape
        if arch == "conv":
            layers: list[nn.Module] = []
            for c_in, c_out in zip([c, *conv_channels[:-1]], conv_channels):
                layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), ACTIVATIONS[activation]()]
            self.encoder = nn.Sequential(*layers, nn.Conv2d(conv_channels[-1], embedding_dim, 1))
            self.grid = _conv_sizes(h, w, len(conv_channels))[-1]
            self.positions = self.grid[0] * self.grid[1]
            self.decoder = _grid_decoder(input_shape, conv_channels, activation, embedding_dim)
        else:
            encoder = Encoder(input_shape, arch, hidden_dims, conv_channels, activation)
            self.encoder = nn.Sequential(encoder, nn.Linear(encoder.out_features, latent_dim))
            self.positions = latent_dim // embedding_dim
            self.decoder = Decoder(input_shape, arch, hidden_dims, conv_channels, activation, latent_dim)
        self.latent_dim = self.positions * embedding_dim
        self.quantizer = VectorQuantizer(num_embeddings, embedding_dim, ema, ema_decay, dead_code_steps)
        self.output_activation = _output_activation(likelihood, output_activation)

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """z_e (N, P, D), before quantisation."""
        z_e = self.encoder(x)
        if self.arch == "conv":  # (N, D, h, w) → (N, h·w, D)
            return z_e.flatten(2).transpose(1, 2)
        return z_e.view(len(x), self.positions, self.embedding_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised code z_q, flattened to (N, P·D); no codebook update."""
        return self.quantizer.quantize(self.encode_continuous(x)).z_q.flatten(1)

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """The number of the code chosen at each position, (N, P)."""
        return self.quantizer.quantize(self.encode_continuous(x)).indices

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.arch == "conv":  # (N, h·w·D) → (N, D, h, w)
            z = z.view(len(z), *self.grid, self.embedding_dim).permute(0, 3, 1, 2)
        return self.output_activation(self.decoder(z))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        vq = self.quantizer(self.encode_continuous(x))
        z = straight_through(vq.z_e, vq.z_q).flatten(1)
        return ModelOutput(self.decode(z), z, vq=vq)
