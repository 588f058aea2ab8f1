"""Stage 4, the model: encoder/decoder networks and the model classes, built from plain
kwargs by `build_model` (so a checkpoint's (kind, kwargs) rebuilds one exactly)."""

from aectl.models.autoencoder import Autoencoder
from aectl.models.conditional import ConditionalVAE, GivenLabels, one_hot
from aectl.models.hierarchical import HierarchicalVAE
from aectl.models.factory import MODEL_CLASSES, build_model, continuous_bernoulli_mean, mean_reconstruction
from aectl.models.networks import ACTIVATIONS, ARCHS, DEFAULT_SIGMA, Decoder, Encoder, ModelOutput
from aectl.models.sae import SparseAutoencoder
from aectl.models.variational import ImportanceWeightedAutoencoder, VariationalAutoencoder, reparameterize
from aectl.models.vq import VectorQuantizedAutoencoder

__all__ = ["ACTIVATIONS", "ARCHS", "DEFAULT_SIGMA", "MODEL_CLASSES", "Autoencoder", "ConditionalVAE", "Decoder",
           "Encoder", "GivenLabels", "HierarchicalVAE", "ImportanceWeightedAutoencoder", "ModelOutput", "SparseAutoencoder", "VariationalAutoencoder",
           "VectorQuantizedAutoencoder", "build_model", "continuous_bernoulli_mean", "mean_reconstruction",
           "one_hot", "reparameterize"]
