"""The deterministic autoencoder: one class for the kinds ae, stacked_ae, sparse_ae and dae
(they differ in depth, code activation, noise and penalty, not in code)."""

from typing import Sequence

import torch
from torch import nn

from aectl.models.networks import ACTIVATIONS, DEFAULT_SIGMA, Decoder, Encoder, ModelOutput, _output_activation


class Autoencoder(nn.Module):
    """Deterministic AE: z = a(W h(x)), x̂ = G(z). With no hidden dims it is the basic AE
    (input → latent → output); a sigmoid code activation gives the sparse AE's code in (0, 1)."""

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, arch: str = "mlp",
                 hidden_dims: Sequence[int] = (), conv_channels: Sequence[int] = (32, 64),
                 activation: str = "relu", code_activation: str = "identity",
                 likelihood: str = "gaussian", output_activation: str = "sigmoid", sigma: float = DEFAULT_SIGMA):
        super().__init__()
        self.likelihood, self.sigma = likelihood, sigma
        self.encoder = Encoder(input_shape, arch, hidden_dims, conv_channels, activation)
        self.code = nn.Sequential(nn.Linear(self.encoder.out_features, latent_dim),
                                  ACTIVATIONS[code_activation]())
        self.decoder = Decoder(input_shape, arch, hidden_dims, conv_channels, activation, latent_dim)
        self.output_activation = _output_activation(likelihood, output_activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.decoder(z))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        z = self.encode(x)
        return ModelOutput(self.decode(z), z)
