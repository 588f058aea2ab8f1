"""A VAE with two stochastic layers (Burda et al. 2016, §5 and appendix C: their two-layer
architecture is latent_dims=(100, 50), hidden_dims=(300, 300), top_hidden_dims=(150, 150), tanh):

    inference  q(z1, z2 | x) = q(z1|x) q(z2|z1)
    generation p(x, z1, z2) = p(z2) p(z1|z2) p(x|z1),   p(z2) = N(0, I)

every conditional of z a diagonal Gaussian, p(x|z1) the model's likelihood. The model is trained on
the ELBO or the k-sample bound L_k (aectl.objectives.objective, which scores
the draws of `sample_joint` with aectl.objectives.losses.two_layer_log_terms); `encode` and `decode` are those of
the first layer, so reconstructions, codes and the linear probe read z1 as any VAE's z.
"""

from typing import NamedTuple, Sequence

import torch
from torch import nn

from aectl.models.networks import DEFAULT_SIGMA, Decoder, Encoder, ModelOutput, _mlp, _output_activation
from aectl.models.variational import reparameterize
from aectl.runtime.distributed import standard_normal


class JointSample(NamedTuple):
    """k draws (z1, z2) ~ q(z1|x) q(z2|z1) per example and the parameters of every Gaussian at
    them; aectl.objectives.losses.two_layer_log_terms scores them."""

    recon: torch.Tensor  # the decoder's output at each z1, (k, N, C, H, W)
    z1: torch.Tensor  # (k, N, K1)
    mu1: torch.Tensor  # q(z1|x): (N, K1)
    logvar1: torch.Tensor
    z2: torch.Tensor  # (k, N, K2)
    mu2: torch.Tensor  # q(z2|z1): (k, N, K2)
    logvar2: torch.Tensor
    prior_mu1: torch.Tensor  # p(z1|z2): (k, N, K1)
    prior_logvar1: torch.Tensor


def _gaussian_head(dims: Sequence[int], out_features: int, activation: str) -> nn.Sequential:
    """An MLP through `dims`, then a linear layer to the (μ, log σ²) of `out_features` Gaussians."""
    return nn.Sequential(*_mlp(dims, activation), nn.Linear(dims[-1], 2 * out_features))


class HierarchicalVAE(nn.Module):
    def __init__(self, *, input_shape: Sequence[int], latent_dims: Sequence[int], hidden_dims: Sequence[int] = (),
                 top_hidden_dims: Sequence[int] = (), activation: str = "tanh", likelihood: str = "bernoulli",
                 output_activation: str = "sigmoid", sigma: float = DEFAULT_SIGMA, k: int = 1):
        super().__init__()
        self.likelihood, self.sigma, self.k = likelihood, sigma, k
        self.latent_dims = tuple(latent_dims)
        self.latent_dim = self.latent_dims[0]  # the code: z1
        k1, k2 = self.latent_dims
        self.encoder = Encoder(input_shape, "mlp", hidden_dims, (), activation)
        self.posterior = nn.Linear(self.encoder.out_features, 2 * k1)
        self.upper_posterior = _gaussian_head([k1, *top_hidden_dims], k2, activation)  # q(z2|z1)
        self.upper_prior = _gaussian_head([k2, *reversed(top_hidden_dims)], k1, activation)  # p(z1|z2)
        self.decoder = Decoder(input_shape, "mlp", hidden_dims, (), activation, k1)
        self.output_activation = _output_activation(likelihood, output_activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z1|x)."""
        return self.posterior(self.encoder(x)).chunk(2, dim=-1)

    def encode_upper(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z2|z1)."""
        return self.upper_posterior(z1).chunk(2, dim=-1)

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """The output of p(x|z1): logits, or the gaussian's mean."""
        return self.output_activation(self.decoder(z1))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws z1 ~ ∫ p(z1|z2) p(z2) dz2, shape (n, K1)."""
        device = next(self.parameters()).device
        z2 = torch.randn((n, self.latent_dims[1]), generator=generator, device=device)
        mu, logvar = self.upper_prior(z2).chunk(2, dim=-1)
        return reparameterize(mu, logvar, torch.randn(mu.shape, generator=generator, device=device))

    def sample_joint(self, x: torch.Tensor, samples: int, generator: torch.Generator | None = None) -> JointSample:
        """`samples` joint draws from q(z1|x) q(z2|z1) per example. Noise comes from `generator`
        when given (evaluation), else from the global RNG (training; under torchrun the global
        batch's ε, as the one-layer models draw it)."""
        mu1, logvar1 = self.encode(x)
        z1 = reparameterize(mu1, logvar1, self._normal((samples, *mu1.shape), mu1, generator))
        mu2, logvar2 = self.encode_upper(z1)
        z2 = reparameterize(mu2, logvar2, self._normal(mu2.shape, mu2, generator))
        prior_mu1, prior_logvar1 = self.upper_prior(z2).chunk(2, dim=-1)
        recon = self.decode(z1.flatten(0, 1)).unflatten(0, (samples, len(x)))
        return JointSample(recon, z1, mu1, logvar1, z2, mu2, logvar2, prior_mu1, prior_logvar1)

    @staticmethod
    def _normal(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None:
            return standard_normal(shape, like, batch_dim=1)
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """One joint draw: the decoder's output and z1 of it, and q(z1|x)'s parameters."""
        draw = self.sample_joint(x, 1)
        return ModelOutput(draw.recon[0], draw.z1[0], draw.mu1, draw.logvar1)
