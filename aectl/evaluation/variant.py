"""Variant: what a checkpoint's config says about which metrics and pictures apply to it."""

from dataclasses import dataclass

from torch import nn

from aectl.config import VARIATIONAL_KINDS
from aectl.datasets.noise import Corruption
from aectl.objectives.objective import Objective, make_objective


@dataclass(frozen=True)
class Variant:
    """What the checkpoint's config says about which metrics apply."""

    kind: str  # model kind (ae, stacked_ae, sparse_ae, dae, vae, cvae, vqvae, iwae, sae, hvae)
    variational: bool  # a VAE, cvae, IWAE or hvae: ELBO, KL, IW log-likelihood, active units, prior pictures
    noise: dict  # the trained corruption: kind, sigma, clip, p, v_min, v_max
    penalty: dict  # the trained penalty: kind, rho, beta, weight
    beta: float  # the target KL weight the model was trained for
    conditional: bool = False  # a cvae: every metric is given the label, samples are drawn per class
    model: dict | None = None  # the trained model section (a sparse autoencoder's loss weights)

    @classmethod
    def of(cls, ckpt: dict) -> "Variant":
        config = ckpt["config"]
        kind = ckpt["model"]["kind"]
        return cls(kind, kind in VARIATIONAL_KINDS,
                   dict(config.get("noise") or {"kind": "none"}), dict(config.get("penalty") or {"kind": "none"}),
                   float(config.get("beta", 1.0)), kind == "cvae", dict(config.get("model") or {}))

    def objective(self, model: nn.Module) -> Objective:
        return make_objective(self.kind, model.likelihood, model.sigma, self.penalty, getattr(model, "k", 1),
                              getattr(model, "commitment", 0.25), getattr(model, "ema", False), self.model)

    def trained_noise(self, data_range: tuple[float, float]) -> Corruption:
        """The corruption the model was trained with; a range left unset is the data's."""
        params = {k: self.noise[k] for k in ("sigma", "clip", "p") if k in self.noise}
        low, high = self.noise.get("v_min"), self.noise.get("v_max")
        return Corruption(self.noise["kind"], **params, v_min=data_range[0] if low is None else low,
                          v_max=data_range[1] if high is None else high)
