"""Feature scaling of tensor files, fit on the train split only.

The statistics are plain floats, so they travel in a checkpoint and a model is evaluated on
data transformed exactly as in training.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from aectl.config.errors import ConfigError, DataError
from aectl.datasets.raw import RawData
from aectl.datasets.splits import DataSplits

log = logging.getLogger(__name__)

SCALE_MODES = ("none", "minmax", "standard")
_CONSTANT = 1e-8  # a range/std below this counts as a constant feature: divide by 1, not by ~0


def fit_scaler(x_train: torch.Tensor, mode: str, per_feature: bool = True,
               fixed_range: tuple[float, float] | None = None) -> dict:
    """Statistics of the TRAIN split, as plain floats (so they go into a checkpoint and load with
    weights_only=True): per feature (all dims after N) for tables; one for the whole array for
    images, whose pixels share one scale (per-pixel statistics would blow up near-constant border
    pixels). `fixed_range` (uint8 pixels: 0..255) replaces the fitted min/max."""
    if mode not in SCALE_MODES:
        raise ConfigError("scale", mode, f"one of {', '.join(SCALE_MODES)}")
    if mode == "none":
        return {"mode": "none"}
    flat = x_train.reshape(len(x_train), -1).double()
    if not per_feature:
        flat = flat.reshape(-1, 1)
    if mode == "minmax":
        if fixed_range is not None:
            return {"mode": "minmax", "min": [fixed_range[0]], "max": [fixed_range[1]]}
        return {"mode": "minmax", "min": flat.amin(0).tolist(), "max": flat.amax(0).tolist()}
    return {"mode": "standard", "mean": flat.mean(0).tolist(), "std": flat.std(0, correction=0).tolist()}


def apply_scaler(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """float32 x scaled by `fit_scaler` stats: minmax → [0, 1] on train, standard → mean 0, std 1.

    Constant features (range or std below _CONSTANT) are only shifted, so they become 0, not NaN.
    """
    if stats["mode"] == "none":
        return x.to(torch.float32)
    low, spread = ((stats["min"], np.subtract(stats["max"], stats["min"])) if stats["mode"] == "minmax"
                   else (stats["mean"], stats["std"]))
    flat = x.flatten(1).to(torch.float32)  # (N, features); unlike reshape(N, -1), also for an empty split
    if len(low) != 1 and flat.shape[1] != len(low):  # one statistic: the whole image
        raise DataError(f"data has {flat.shape[1]} features per example but the scaler was fit on {len(low)}")
    low = torch.as_tensor(low, dtype=torch.float32, device=x.device)
    spread = torch.as_tensor(spread, dtype=torch.float32, device=x.device)
    spread = torch.where(spread > _CONSTANT, spread, torch.ones_like(spread))
    return ((flat - low) / spread).reshape(x.shape)


def scale_splits(data: DataSplits, raw: RawData, mode: str, scaler: dict | None) -> None:
    """tensor_file scaling: statistics of the train split (or `scaler` given, e.g. from a
    checkpoint), per feature for tables and one for the whole array for images (uint8: /255).
    minmax maps train onto [0, 1]; val/test values beyond the train split's range are clipped
    into it (and the log says how many), so every split lies where the model's output can reach."""
    fixed = raw.value_range if raw.value_range == (0.0, 255.0) and not raw.tabular else None
    data.scaler = scaler if scaler is not None else fit_scaler(data.train, mode, raw.tabular, fixed)
    data.train, data.val, data.test = (apply_scaler(x, data.scaler) for x in (data.train, data.val, data.test))
    data.known_range = (0.0, 1.0) if data.scaler["mode"] == "minmax" else None
    if data.scaler["mode"] == "minmax":
        for name in ("train", "val", "test"):
            x = getattr(data, name)
            outside = int(((x < 0) | (x > 1)).sum())
            if outside:
                log.warning("dataset.scale=minmax: clipped %d of %d %s values outside the train split's range "
                            "into [0, 1]", outside, x.numel(), name)
                setattr(data, name, x.clamp(0, 1))

