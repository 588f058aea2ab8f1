"""The conditional VAE (Sohn et al. 2015): encoder and decoder both see a one-hot label."""

from typing import Sequence

import torch
from torch import nn

from aectl.models.networks import DEFAULT_SIGMA, Decoder, Encoder, ModelOutput, _output_activation
from aectl.models.variational import reparameterize
from aectl.runtime.distributed import standard_normal  # ε of the global batch under torchrun


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Labels (N,) int → (N, num_classes) float rows with a single 1 at column y_i. Built by a
    scatter, with no host sync per step; an index outside [0, num_classes) fails in the scatter
    (the data's labels are checked against num_classes once, when the run is built)."""
    return torch.zeros(len(y), num_classes, device=y.device).scatter_(1, y.long().unsqueeze(1), 1.0)


class ConditionalVAE(nn.Module):
    """Conditional VAE (Sohn et al. 2015, eq. 4–5): recognition network q(z|x,y) = N(μ(x,y),
    diag σ²(x,y)), decoder p(x|z,y), and the prior taken as N(0, I) independent of y, as in
    Kingma et al. (2014)'s M2 with y observed. −ELBO(x|y) = E_q[−log p(x|z,y)] + KL(q(z|x,y) ‖ N(0, I)).

    The one-hot label enters the encoder concatenated to the flattened input (mlp) or as
    `num_classes` constant maps stacked onto the image's channels (conv), and the decoder
    concatenated to z. `given(y)` binds labels, giving a module with the VAE's interface."""

    conditional = True

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, num_classes: int, arch: str = "mlp",
                 hidden_dims: Sequence[int] = (), conv_channels: Sequence[int] = (32, 64),
                 activation: str = "relu", likelihood: str = "bernoulli",
                 output_activation: str = "sigmoid", sigma: float = DEFAULT_SIGMA):
        super().__init__()
        self.likelihood, self.sigma = likelihood, sigma
        self.latent_dim, self.num_classes, self.arch = latent_dim, num_classes, arch
        c, h, w = input_shape
        # what the encoder body sees: (C + classes, H, W) maps, or one row of D + classes values
        encoder_shape = (c + num_classes, h, w) if arch == "conv" else (1, 1, c * h * w + num_classes)
        self.encoder = Encoder(encoder_shape, arch, hidden_dims, conv_channels, activation)
        self.posterior = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.decoder = Decoder(input_shape, arch, hidden_dims, conv_channels, activation, latent_dim + num_classes)
        self.output_activation = _output_activation(likelihood, output_activation)

    def _with_label(self, x: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        if self.arch == "conv":
            maps = y1[:, :, None, None].expand(-1, -1, *x.shape[2:]).to(x.dtype)
            return torch.cat([x, maps], 1)
        return torch.cat([x.flatten(1), y1.to(x.dtype)], 1)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x,y)."""
        h = self.encoder(self._with_label(x, one_hot(y, self.num_classes)))
        mu, logvar = self.posterior(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The decoder's output for p(x|z,y): logits or the gaussian mean, like the VAE's."""
        return self.output_activation(self.decoder(torch.cat([z, one_hot(y, self.num_classes).to(z.dtype)], 1)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, standard_normal(mu.shape, mu))
        return ModelOutput(self.decode(z, y), z, mu, logvar)

    def given(self, y: torch.Tensor) -> "GivenLabels":
        return GivenLabels(self, y)


class GivenLabels(nn.Module):
    """A conditional model with its labels bound: encode(x), decode(z), forward(x) as a VAE's,
    so every metric and picture written for q(z|x), p(x|z) runs on q(z|x,y), p(x|z,y) unchanged.
    decode takes N rows or S·N rows stacked sample-major (the IW estimate's (S, N) → S·N layout),
    whose labels are the N labels tiled S times."""

    def __init__(self, model: ConditionalVAE, y: torch.Tensor):
        super().__init__()
        self.model, self.y = model, y
        self.likelihood, self.sigma, self.latent_dim = model.likelihood, model.sigma, model.latent_dim

    def rows(self, start: int, stop: int) -> "GivenLabels":
        """The model bound to the labels of examples start:stop (a slice of the batch)."""
        return GivenLabels(self.model, self.y[start:stop])

    def _labels(self, rows: int) -> torch.Tensor:
        if rows % len(self.y):
            raise ValueError(f"{rows} rows for {len(self.y)} bound labels: expected a multiple")
        return self.y.repeat(rows // len(self.y))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(x, self._labels(len(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z, self._labels(len(z)))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.model(x, self._labels(len(x)))
