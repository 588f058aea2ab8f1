"""MNIST, Fashion-MNIST and KMNIST: IDX files in torchvision's folder layout."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from aectl.config.errors import DataError
from aectl.datasets.raw import ArraySplit, RawData, download_torchvision, existing_file, one_line

# IDX type byte → big-endian dtype; IDX stores every multi-byte value big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz."""
    path = existing_file(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read file ({one_line(exc)})") from exc


def read_idx(path) -> torch.Tensor:
    """One IDX file, .gz or plain (LeCun's MNIST page, "file formats": magic 00 00 type ndim, big-endian dims)."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex(' ') or 'none'}; "
                        f"expected 00 00 <type 08|09|0b|0c|0d|0e> <ndim>)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path}: IDX header announces {ndim} dimensions but the file ends at byte {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    expected = offset + math.prod(dims) * dtype.itemsize
    if expected != len(raw):
        raise DataError(f"{path}: IDX header says shape {dims} ({expected} bytes) but the file "
                        f"has {len(raw)} bytes; the file is truncated or not IDX")
    array = np.frombuffer(raw, dtype, count=math.prod(dims), offset=offset).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


# torchvision's class (and folder) name for each dataset name.
MNIST_FAMILY = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
_MNIST_CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}
_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(raw_dir: Path, stem: str) -> Path | None:
    """The plain file if torchvision has extracted it (faster to read), else the .gz."""
    return next((p for p in (raw_dir / stem, raw_dir / f"{stem}.gz") if p.is_file()), None)


def _missing_idx(raw_dir: Path) -> list[str]:
    return [stem for pair in _MNIST_FILES.values() for stem in pair if _find_idx(raw_dir, stem) is None]


def _read_idx_pair(images_path: Path, labels_path: Path) -> ArraySplit:
    """An images file (N, H, W) uint8 and its labels file (N,) as one split."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise DataError(f"{images_path}: holds {images.dtype} of shape {tuple(images.shape)}; "
                        f"expected uint8 images of shape (N, H, W)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: holds labels of shape {tuple(labels.shape)}; expected "
                        f"({len(images)},), one per image in {images_path.name}")
    return ArraySplit(images.unsqueeze(1), labels.long())


def load_mnist_family(root, name: str, download: bool = False) -> RawData:
    """MNIST / Fashion-MNIST / KMNIST in torchvision's layout <root>/<Class>/raw/*-ubyte[.gz] (IDX)."""
    if name not in MNIST_FAMILY:
        raise DataError(f"unknown MNIST-family dataset {name!r}; expected one of {', '.join(MNIST_FAMILY)}")
    folder, root = MNIST_FAMILY[name], Path(root).expanduser()
    raw_dir = root / folder / "raw"
    layout = f"{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]"
    if _missing_idx(raw_dir) and download:
        download_torchvision(folder, root, layout)
    missing = _missing_idx(raw_dir)
    if missing:
        raise DataError(f"{name}: {', '.join(missing)} (plain or .gz) not found in {raw_dir} and download is off; "
                        f"set dataset.download=true or point dataset.root at the folder that holds {layout}")
    splits = {split: _read_idx_pair(_find_idx(raw_dir, images), _find_idx(raw_dir, labels))
              for split, (images, labels) in _MNIST_FILES.items()}
    return RawData(splits, (0.0, 255.0), list(_MNIST_CLASSES[name]))

