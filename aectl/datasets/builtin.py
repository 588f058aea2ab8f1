"""Datasets that need no files from the user: scikit-learn's digits and a synthetic set."""

from pathlib import Path

import torch

from aectl.config.errors import DataError


def load_digits() -> tuple[torch.Tensor, torch.Tensor, float]:
    """scikit-learn's bundled 8×8 digits (1797 images, integer values 0..16): uint8, scale 1/16.

    Read straight from the CSV inside the scikit-learn wheel: importing sklearn costs about a
    second of start-up, the file a few milliseconds."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset.name=digits needs scikit-learn (it ships the digits set): pip install scikit-learn")
    csv = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not csv.is_file():
        raise DataError(f"dataset.name=digits: {csv} is missing from the scikit-learn installation")
    table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    x = torch.from_numpy(table[:, :64].reshape(-1, 1, 8, 8).copy())
    return x, torch.from_numpy(table[:, 64].astype(np.int64)), 1 / 16


def make_synthetic(num_samples: int, shape: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Small learnable data in (0, 1): x = sigmoid(3 W u) with u ~ N(0, I_4) and a fixed random
    W, so a 4-dimensional code explains it; the label is the index of the largest |u_j|."""
    g = torch.Generator().manual_seed(seed)
    features = shape[0] * shape[1] * shape[2]
    u = torch.randn(num_samples, 4, generator=g)
    w = torch.randn(4, features, generator=g) / 2
    x = torch.sigmoid(3 * u @ w).reshape(num_samples, *shape)
    return x, u.abs().argmax(1)



def make_sparse_synthetic(num_samples: int, n_directions: int, dim: int, active_prob: float,
                          seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Data in superposition, with its ground truth: x = Σ_i c_i d_i, d_i random unit vectors in
    `dim` dimensions (n_directions of them, more than dim), c_i non-zero with probability
    active_prob and then uniform in (0, 1] (the toy data of Sharkey et al. 2022). Returns
    x (N, 1, 1, dim) and the directions (n_directions, dim)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_directions, dim, generator=g)
    directions /= directions.norm(dim=1, keepdim=True)
    active = torch.rand(num_samples, n_directions, generator=g) < active_prob
    magnitudes = 1 - torch.rand(num_samples, n_directions, generator=g)  # (0, 1]
    x = (active * magnitudes) @ directions
    return x.reshape(num_samples, 1, 1, dim), directions
