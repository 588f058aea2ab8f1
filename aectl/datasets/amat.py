"""Binarized MNIST (Larochelle & Murray 2011): .amat text files, one 0/1 image per row."""

from __future__ import annotations

import os
import shutil
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch

from aectl.config.errors import DataError
from aectl.datasets.raw import ArraySplit, RawData, one_line

BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
_DOWNLOAD_TIMEOUT_S = 60


def _find_amat(root: Path, split: str) -> Path | None:
    """binarized_mnist_<split>.amat under <root>/binarized_mnist/ or directly under root."""
    name = f"binarized_mnist_{split}.amat"
    return next((p for p in (root / "binarized_mnist" / name, root / name) if p.is_file()), None)


def _download_amat(root: Path, split: str) -> Path:
    """Fetch one split from the canonical URL into <root>/binarized_mnist/ (atomically: no partial files)."""
    url, target = BINARIZED_MNIST_URL.format(split=split), root / "binarized_mnist" / f"binarized_mnist_{split}.amat"
    partial = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(partial, target)
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSErrors
        partial.unlink(missing_ok=True)
        raise DataError(f"binarized_mnist: download of {url} failed ({one_line(exc)}); without network, "
                        f"put binarized_mnist_{{train,valid,test}}.amat into <dir>/binarized_mnist/ "
                        f"and point dataset.root at <dir>") from exc
    return target


def _read_amat(path: Path) -> torch.Tensor:
    """Rows of 784 space-separated 0/1 values → uint8 (N, 1, 28, 28)."""
    expected = "rows of 784 space-separated 0/1 values (one 28x28 image per row)"
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected {expected}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # whitespace-only files warn; the size check below says it
            rows = np.loadtxt(path, dtype=np.uint8, ndmin=2)
    except ValueError as exc:  # ragged rows or values that are not integers
        raise DataError(f"{path}: cannot parse ({one_line(exc)}); expected {expected}") from exc
    if rows.shape[1] != 784 or len(rows) == 0:
        raise DataError(f"{path}: rows have {rows.shape[1]} values; expected {expected}")
    if rows.max() > 1:
        raise DataError(f"{path}: holds values up to {rows.max()}; expected {expected}")
    return torch.from_numpy(rows.reshape(-1, 1, 28, 28))


def load_binarized_mnist(root, download: bool = False) -> RawData:
    """Larochelle & Murray's binarized MNIST: binarized_mnist_{train,valid,test}.amat, 784 0/1 values a row."""
    root, splits = Path(root).expanduser(), {}
    for split in ("train", "valid", "test"):
        path = _find_amat(root, split)
        if path is None and download:
            path = _download_amat(root, split)
        if path is None:
            raise DataError(f"binarized_mnist: binarized_mnist_{split}.amat not found in "
                            f"{root / 'binarized_mnist'} or {root} and download is off; set "
                            f"dataset.download=true or point dataset.root at the folder that holds "
                            f"binarized_mnist/binarized_mnist_{{train,valid,test}}.amat")
        splits[split] = ArraySplit(_read_amat(path))
    return RawData(splits, (0.0, 1.0))

