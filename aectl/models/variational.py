"""The VAE (Kingma & Welling 2014) and its k-sample subclass, the IWAE (Burda et al. 2016):
the same networks, a Gaussian posterior q(z|x) sampled by reparameterization."""

from typing import Sequence

import torch
from torch import nn

from aectl.models.networks import DEFAULT_SIGMA, Decoder, Encoder, ModelOutput, _output_activation
from aectl.models.priors import PseudoInputs, mixture_log_prob, sample_mixture, standard_normal_log_prob
from aectl.runtime.distributed import standard_normal  # ε of the global batch under torchrun


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²) (Kingma & Welling 2014, §2.4)."""
    return mu + (0.5 * logvar).exp() * eps


class VariationalAutoencoder(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)), z = μ + σ ⊙ ε (reparameterisation). The prior p(z) is
    N(0, I_K), or with prior="vamp" the VampPrior (1/K) Σ_k q(z|u_k) at `pseudo_inputs` learned
    inputs u_k (Tomczak & Welling 2018, eq. 9), clipped to `pseudo_input_range`."""

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, arch: str = "mlp",
                 hidden_dims: Sequence[int] = (), conv_channels: Sequence[int] = (32, 64),
                 activation: str = "relu", likelihood: str = "bernoulli",
                 output_activation: str = "sigmoid", sigma: float = DEFAULT_SIGMA, prior: str = "gaussian",
                 pseudo_inputs: int = 0, pseudo_input_range: Sequence[float] | None = None):
        super().__init__()
        self.likelihood, self.sigma = likelihood, sigma
        self.latent_dim = latent_dim
        self.encoder = Encoder(input_shape, arch, hidden_dims, conv_channels, activation)
        self.posterior = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.decoder = Decoder(input_shape, arch, hidden_dims, conv_channels, activation, latent_dim)
        self.output_activation = _output_activation(likelihood, output_activation)
        # made after the networks, so a gaussian-prior model's initial weights do not depend on it
        self.pseudo_inputs = PseudoInputs(pseudo_inputs, input_shape, pseudo_input_range) if prior == "vamp" else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x)."""
        mu, logvar = self.posterior(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.decoder(z))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) summed over the last axis: of N(0, I), or of the VampPrior's mixture, whose
        components are the encoder's posterior at the pseudo-inputs (recomputed each call, as
        the encoder changes with every step)."""
        if self.pseudo_inputs is None:
            return standard_normal_log_prob(z)
        return mixture_log_prob(z, *self.encode(self.pseudo_inputs()))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z ~ p(z), shape (n, K)."""
        device = next(self.parameters()).device
        if self.pseudo_inputs is None:
            return torch.randn((n, self.latent_dim), generator=generator, device=device)
        return sample_mixture(*self.encode(self.pseudo_inputs()), n, generator)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, standard_normal(mu.shape, mu))
        return ModelOutput(self.decode(z), z, mu, logvar)


class ImportanceWeightedAutoencoder(VariationalAutoencoder):
    """The IWAE (Burda et al. 2016): the VAE's networks and parameters, trained on the k-sample
    bound L_k (aectl.objectives.objective). `forward(x)` is the VAE's one-sample pass; `forward(x, samples=k)`
    draws k reparameterised z per example, z_i = μ + σ ⊙ ε_i with ε of shape (k, N, K) (for
    k = 1 the same draws as the VAE's ε on the same RNG state), and gives recon and z a leading
    sample axis: recon (k, N, C, H, W), z (k, N, K)."""

    def __init__(self, *, k: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def forward(self, x: torch.Tensor, samples: int | None = None) -> ModelOutput:
        if samples is None:
            return super().forward(x)
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, standard_normal((samples, *mu.shape), mu, batch_dim=1))
        recon = self.decode(z.flatten(0, 1))
        return ModelOutput(recon.unflatten(0, (samples, len(x))), z, mu, logvar)
