"""The Python API: train, load and evaluate from a notebook or a script, without a command line.

    run = aectl.train(["model=vae", "trainer.epochs=20"])     # what `aectl train` does
    model = aectl.load(run.run_dir)                           # a checkpoint or run folder
    z = model.encode(x); x_hat = model.reconstruct(x); samples = model.sample(16)
    samples = cvae.sample(16, y=3); x_hat = cvae.reconstruct(x, y)   # a conditional VAE takes labels
    metrics = aectl.evaluate(run.run_dir, k=1000)             # what `aectl eval` computes

Tensors go in and come out in the data's own units: images as floats in [0, 1] (uint8 pixels
are scaled as the dataset scales them), a tensor_file's rows in the file's units (its
checkpointed scaling applied on the way in and undone on the way out).
"""

import dataclasses
import json
import math
from datetime import datetime
from pathlib import Path

import torch

from aectl.config import VARIATIONAL_KINDS
from aectl.config.errors import AectlError, ConfigError


@dataclasses.dataclass
class Run:
    """A finished training run: its folder, its final metrics (metrics.json) and its model."""

    run_dir: Path
    metrics: dict
    model: "Autoencoder"


def train(overrides=None, run_dir: str | Path | None = None) -> Run:
    """Train as `aectl train <overrides>` does (the same composition, presets and validation):
    `overrides` is a list of strings (["model=dae", "noise=masking"]) or an aectl.config.TrainConfig.
    The run goes to `run_dir`, by default outputs/<date>/<time> under the working folder."""
    from aectl.cli.compose import compose_train_config
    from aectl.config import TrainConfig
    from aectl.config.checks import validate
    from aectl.training import build

    if isinstance(overrides, TrainConfig):
        config, given = overrides, []
        validate(config)
    else:
        given = _override_list(overrides)
        config = compose_train_config(given)
    if config.trainer.resume:
        raise AectlError("trainer.resume: resuming is a command-line feature; run "
                         "`aectl train trainer.resume=<run>` (it checks what the resume may change)")
    run_dir = Path(run_dir) if run_dir is not None else Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    metrics = build.train(config, run_dir, overrides=given)
    return Run(run_dir, metrics, load(run_dir))


def _override_list(overrides) -> list[str]:
    """`overrides` as the list of strings it must be: a single string is not split into its characters."""
    if overrides is None:
        return []
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("overrides", overrides, "a list of strings, e.g. ['model.latent_dim=4', "
                                                  "'trainer.epochs=20'], or an aectl.config.TrainConfig")
    return list(overrides)


def load(path: str | Path) -> "Autoencoder":
    """The model of a checkpoint file or run folder (its checkpoints/last.pt), loaded with
    torch.load(weights_only=True): nothing named in the file is imported or called."""
    from aectl.runs.checkpoint import load_checkpoint, rebuild_model
    from aectl.runs.runfolder import resolve_checkpoint, run_dir_of

    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file)
    run_dir = run_dir_of(file)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    return Autoencoder(rebuild_model(ckpt).eval(), ckpt, metrics)


def evaluate(path: str | Path, **options) -> dict | list[dict]:
    """What `aectl eval ckpt=<path> <options>` computes and writes (metrics.json, pictures), without
    printing: the result of a checkpoint or run folder, or the list of a sweep folder's results.
    `options` are aectl eval's fields (split="val", k=1000, limit=500, seed=1, ...)."""
    from aectl.config import EvalConfig
    from aectl.config.checks import validate_eval
    from aectl.evaluation import evaluate as evaluation
    from aectl.runs.runfolder import has_checkpoint

    known = sorted(f.name for f in dataclasses.fields(EvalConfig) if f.name != "ckpt")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(unknown[0], options[unknown[0]], "an option of aectl eval: " + ", ".join(known))
    settings = EvalConfig(ckpt=str(path), **{"progress": False, **options})
    validate_eval(settings)
    results = evaluation.run(settings, show=False)
    one = Path(path).is_file() or has_checkpoint(path)
    return results[0] if one else results


class Autoencoder:
    """A trained model with the data's scaling on both sides (see the module docstring).
    `module` is the torch module itself, for anything this class does not offer."""

    def __init__(self, module: torch.nn.Module, checkpoint: dict, metrics: dict):
        self.module, self.metrics = module, metrics
        self.config = checkpoint["config"]
        self.kind = checkpoint["model"]["kind"]
        data = checkpoint.get("data") or {}
        self._scale, self._scaler = data.get("scale", 1.0), data.get("scaler")
        kwargs = checkpoint["model"].get("kwargs", {})
        self._input_shape = tuple(kwargs.get("input_shape") or ())
        self._code_size = getattr(module, "latent_dim", kwargs.get("latent_dim"))  # a VQ-VAE's is P·D

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """The code of x (N, ...): the posterior mean μ(x) for a VAE (μ(x, y) for a cvae, which
        needs the labels `y`), the code z for an AE, the quantised code z_q flattened to (N, P·D)
        for a VQ-VAE (`decode` takes it; `indices` gives the codes' numbers)."""
        code = self._given(y, len(x)).encode(self._to_model(x))
        return code[0] if isinstance(code, tuple) else code

    @torch.no_grad()
    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """VQ-VAE: the number of the code chosen at each of the P positions, (N, P) long."""
        if self.kind != "vqvae":
            raise AectlError(f"indices: model {self.kind!r} has no codebook; only a VQ-VAE does")
        return self.module.indices(self._to_model(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """E[x|z] (N, C, H, W) in the data's units (E[x|z,y] for a cvae, given the labels `y`)."""
        from aectl.models import mean_reconstruction

        expected = f"shape (N, {self._code_size}), codes as encode returns them"
        z = _tensor("z", z, expected)
        if self._code_size is not None and (z.dim() != 2 or z.shape[1] != self._code_size):
            raise ConfigError("z", f"a tensor of shape {tuple(z.shape)}", expected)
        z = z.to(self._device())
        module = self._given(y, len(z))
        return self._from_model(mean_reconstruction(module, module.decode(z)))

    def reconstruct(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """decode(encode(x)): the deterministic reconstruction `aectl eval` scores (given `y`: cvae)."""
        return self.decode(self.encode(x, y), y)

    def sample(self, n: int, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        """n draws z ~ N(0, I) of a VAE's prior, decoded to E[x|z]; a cvae's to E[x|z,y], with
        `y` one class for all n (an int) or a label per sample (a tensor of n)."""
        if self.kind == "vqvae":
            from aectl.evaluation.evaluate import VQ_NO_SAMPLES

            raise AectlError(f"sample: {VQ_NO_SAMPLES}")
        if self.kind not in VARIATIONAL_KINDS:
            raise AectlError(f"sample: model {self.kind!r} has no prior to sample; only a VAE, cvae, IWAE or hvae does")
        if self.kind == "cvae":
            return self.decode(torch.randn((n, self.module.latent_dim), generator=generator), y)
        return self.decode(self.module.sample_prior(n, generator), y)

    def _given(self, y, n: int) -> torch.nn.Module:
        """The module to call: a cvae with the labels y bound (checked), any other model as is."""
        if not getattr(self.module, "conditional", False):
            if y is not None:
                raise AectlError(f"y: model {self.kind!r} takes no labels; only a cvae does")
            return self.module
        classes = self.module.num_classes
        if y is None:
            raise AectlError(f"y: model 'cvae' needs the labels (an int or a tensor of {n} ints in [0, {classes}))")
        y = torch.as_tensor(y, device=self._device())
        y = y.expand(n) if y.dim() == 0 else y
        if y.dtype.is_floating_point or y.shape != (n,) or (n and not (0 <= int(y.min()) <= int(y.max()) < classes)):
            raise AectlError(f"y: expected an int or {n} ints in [0, {classes}) (one label per example); "
                             f"got shape {tuple(y.shape)}, dtype {y.dtype}")
        return self.module.given(y.long())

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        x = self._checked_input(x)
        x = x.to(self._device())
        x = x.float() * self._scale if x.dtype == torch.uint8 else x.float()
        if self._scaler is not None:
            from aectl.datasets import apply_scaler

            x = apply_scaler(x, self._scaler)
        return x

    def _checked_input(self, x) -> torch.Tensor:
        """x as (N, C, H, W), the shape the model was trained on; (N, C·H·W) rows are reshaped."""
        shape = self._input_shape
        expected = f"shape (N, {', '.join(map(str, shape))})" + (f" or (N, {math.prod(shape)})" if shape else "")
        x = _tensor("x", x, expected)
        if not shape or tuple(x.shape[1:]) == shape:
            return x
        if x.dim() == 2 and x.shape[1] == math.prod(shape):
            return x.reshape(len(x), *shape)
        raise ConfigError("x", f"a tensor of shape {tuple(x.shape)}", f"{expected}, the data the model was trained on")

    def _from_model(self, x: torch.Tensor) -> torch.Tensor:
        if self._scaler is None or self._scaler["mode"] == "none":
            return x
        low, spread = ((self._scaler["min"], torch.tensor(self._scaler["max"]) - torch.tensor(self._scaler["min"]))
                       if self._scaler["mode"] == "minmax" else (self._scaler["mean"], self._scaler["std"]))
        low, spread = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (low, spread))
        spread = torch.where(spread > 1e-8, spread, torch.ones_like(spread))  # constant features: shifted only
        return (x.reshape(len(x), -1) * spread + low).reshape(x.shape)


def _tensor(name: str, value, expected: str) -> torch.Tensor:
    """`value` if it is a tensor; anything else (a numpy array, a list) is refused in one line."""
    if isinstance(value, torch.Tensor):
        return value
    hint = " (torch.from_numpy(a) makes one)" if type(value).__module__ == "numpy" else ""
    raise ConfigError(name, f"a {type(value).__module__}.{type(value).__name__}", f"a torch.Tensor of {expected}{hint}")
