"""What every reader returns, and the helpers their error messages share.

A reader is a pure function of paths and options that returns a `RawData`: the splits the
dataset itself defines, pixels kept as uint8 where the files store uint8, and the range of the
stored values, so the loader can map to [0, 1] on the device. Problems a user can cause
(missing, corrupt or wrongly shaped files; no network) raise `DataError` with a one-line
message naming the file, what was wrong and what is expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from aectl.config.errors import DataError


@dataclass
class ArraySplit:
    """One split: x is (N, C, H, W), uint8 where the files store uint8 (0..255), else float32."""

    x: torch.Tensor
    y: torch.Tensor | None = None  # (N,) int64 labels, or None for unlabelled data


@dataclass
class RawData:
    """A dataset as stored: its own splits ("train"/"valid"/"test", or just "all")."""

    splits: dict[str, ArraySplit]
    value_range: tuple[float, float]  # range of the stored values: (0, 255) for uint8 pixels
    classes: list[str] | None = None  # class names, indexed by label, where the dataset has them
    tabular: bool = False  # tensor_file (N, D) tables: scaled per feature; images are scaled as a whole
    directions: torch.Tensor | None = None  # sparse_synthetic: the true unit directions (n, D) the data is made of


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, so wrapped errors stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def existing_file(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    return path


def download_torchvision(class_name: str, root: Path, layout: str) -> None:
    """Fetch with torchvision's own downloader (mirrors, checksums); any failure is one DataError."""
    try:
        import torchvision.datasets

        getattr(torchvision.datasets, class_name)(str(root), train=True, download=True)
    except Exception as exc:  # network, checksum, disk: each means there is no usable copy
        raise DataError(f"download of {class_name} into {root} failed ({one_line(exc)}); "
                        f"without network, copy the files yourself and point dataset.root at "
                        f"the folder that holds {layout}") from exc
