"""Encoder/decoder builders (mlp, conv) and the model classes, built from plain kwargs.

Every variant is one of five modules: `Autoencoder` (ae, stacked_ae, sparse_ae, dae:
they differ in depth, code activation, noise and penalty, not in code),
`VariationalAutoencoder` and its subclass `ImportanceWeightedAutoencoder` (iwae: same
networks, a k-sample forward pass), `ConditionalVAE` (cvae: encoder and decoder see a label)
and `VectorQuantizedAutoencoder` (vqvae). `build_model(kind, **kwargs)` is the only way to
construct one, so a checkpoint's (kind, kwargs) rebuilds it exactly.
"""

from typing import NamedTuple, Sequence

import torch
from torch import nn

from aectl.config import ARCHS  # noqa: F401 (the names of kinds live in config.py)
from aectl.distributed import standard_normal  # ε of the global batch under torchrun
from aectl.losses import DEFAULT_SIGMA
from aectl.quantizer import VectorQuantizer, VQOutput, straight_through

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
    vq: the VQ-VAE's encoder outputs, codes and code indices (aectl.quantizer.VQOutput, else None)."""

    recon: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    vq: VQOutput | None = None


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


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²) (Kingma & Welling 2014, §2.4)."""
    return mu + (0.5 * logvar).exp() * eps


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


class VariationalAutoencoder(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)), z = μ + σ ⊙ ε (reparameterisation), prior N(0, I_K)."""

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, arch: str = "mlp",
                 hidden_dims: Sequence[int] = (), conv_channels: Sequence[int] = (32, 64),
                 activation: str = "relu", likelihood: str = "bernoulli",
                 output_activation: str = "sigmoid", sigma: float = DEFAULT_SIGMA):
        super().__init__()
        self.likelihood, self.sigma = likelihood, sigma
        self.latent_dim = latent_dim
        self.encoder = Encoder(input_shape, arch, hidden_dims, conv_channels, activation)
        self.posterior = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.decoder = Decoder(input_shape, arch, hidden_dims, conv_channels, activation, latent_dim)
        self.output_activation = _output_activation(likelihood, output_activation)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x)."""
        mu, logvar = self.posterior(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.decoder(z))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, standard_normal(mu.shape, mu))
        return ModelOutput(self.decode(z), z, mu, logvar)


class ImportanceWeightedAutoencoder(VariationalAutoencoder):
    """The IWAE (Burda et al. 2016): the VAE's networks and parameters, trained on the k-sample
    bound L_k (aectl.objective). `forward(x)` is the VAE's one-sample pass; `forward(x, samples=k)`
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
