"""CIFAR-10 as torchvision stores it: python pickles, read without running code from them."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from aectl.config.errors import DataError
from aectl.datasets.raw import ArraySplit, RawData, download_torchvision, one_line

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _numpy_pickle_globals() -> dict[tuple[str, str], object]:
    """The only globals an array pickle needs, resolved for the installed numpy (1.x or 2.x)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    import _codecs

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _codecs.encode}  # how Python 3 writes bytes at protocol <= 2
    for package in ("numpy.core", "numpy._core"):  # files name whichever numpy wrote them
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5 arrays
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global before it runs."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # the official batches were written by Python 2
        self.path, self.allowed = path, _numpy_pickle_globals()

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise DataError(f"{self.path}: pickle refers to {module}.{name}; refused, a CIFAR batch "
                            f"may hold only dicts, lists, bytes and numpy arrays")
        return self.allowed[(module, name)]


def _unpickle_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _ArrayOnlyUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({one_line(exc)})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}; expected a dict with 'data' and 'labels'")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _read_cifar_batch(path: Path) -> ArraySplit:
    """One batch: 'data' uint8 (N, 3072), each row the R, G, B planes of a 32x32 image; 'labels' N ints."""
    batch = _unpickle_batch(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {found}; expected a uint8 array of shape (N, 3072)")
    if labels is None or len(labels) != len(data):
        raise DataError(f"{path}: 'labels' has {0 if labels is None else len(labels)} entries; "
                        f"expected {len(data)}, one per row of 'data'")
    return ArraySplit(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()),
                      torch.as_tensor(np.asarray(labels, dtype=np.int64)))


def _concat(parts: list[ArraySplit]) -> ArraySplit:
    return ArraySplit(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))


def load_cifar10(root, download: bool = False) -> RawData:
    """CIFAR-10 in torchvision's layout <root>/cifar-10-batches-py/{data_batch_1..5,test_batch} (pickles)."""
    root = Path(root).expanduser()
    base = root / _CIFAR_DIR
    layout = f"{_CIFAR_DIR}/{{data_batch_1..data_batch_5,test_batch}}"

    def missing() -> list[str]:
        return [n for names in _CIFAR_FILES.values() for n in names if not (base / n).is_file()]

    if missing() and download:
        download_torchvision("CIFAR10", root, layout)
    if missing():
        raise DataError(f"cifar10: {', '.join(missing())} not found in {base} and download is off; "
                        f"set dataset.download=true or point dataset.root at the folder that holds {layout}")
    splits = {split: _concat([_read_cifar_batch(base / n) for n in names]) for split, names in _CIFAR_FILES.items()}
    return RawData(splits, (0.0, 255.0), list(CIFAR10_CLASSES))

