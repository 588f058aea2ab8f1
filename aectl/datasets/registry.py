"""dataset.name → the reader of that dataset, called with the fields of its config."""

import os
from pathlib import Path
from typing import Callable

from aectl.config import DATASETS, DatasetConfig
from aectl.datasets import amat, builtin, cifar, idx, image_folder, tensor_file
from aectl.datasets.raw import ArraySplit, RawData


def default_data_root() -> Path:
    """Where downloadable datasets live unless dataset.root says otherwise: the user's cache,
    $XDG_CACHE_HOME/aectl/data, else ~/.cache/aectl/data."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "aectl" / "data"


def _root(d: DatasetConfig) -> Path:
    return Path(d.root).expanduser() if d.root else default_data_root()


def _digits(d: DatasetConfig) -> RawData:
    x, y, scale = builtin.load_digits()
    return RawData({"all": ArraySplit(x, y)}, (0.0, 1 / scale), [str(c) for c in range(10)])


def _synthetic(d: DatasetConfig) -> RawData:
    x, y = builtin.make_synthetic(d.num_samples, list(d.shape), d.split_seed)
    return RawData({"all": ArraySplit(x, y)}, (0.0, 1.0))


def _sparse_synthetic(d: DatasetConfig) -> RawData:
    x, directions = builtin.make_sparse_synthetic(d.num_samples, d.n_directions, d.dim, d.active_prob, d.split_seed)
    return RawData({"all": ArraySplit(x)}, (float(x.min()), float(x.max())), directions=directions)


def _mnist_family(d: DatasetConfig) -> RawData:
    return idx.load_mnist_family(_root(d), d.name, download=d.download)


def _cifar10(d: DatasetConfig) -> RawData:
    return cifar.load_cifar10(_root(d), download=d.download)


def _binarized_mnist(d: DatasetConfig) -> RawData:
    return amat.load_binarized_mnist(_root(d), download=d.download)


def _tensor_file(d: DatasetConfig) -> RawData:
    return tensor_file.load_tensor_file(d.path, key=d.key, label_key=d.label_key, label_column=d.label_column)


def _image_folder(d: DatasetConfig) -> RawData:
    return image_folder.load_image_folder(d.path, size=d.size, channels=d.channels)


# dataset.name → reader of the splits the dataset defines ("train"/"valid"/"test" or "all").
LOADERS: dict[str, Callable[[DatasetConfig], RawData]] = {
    "digits": _digits, "synthetic": _synthetic, "mnist": _mnist_family, "fashion_mnist": _mnist_family,
    "kmnist": _mnist_family, "cifar10": _cifar10, "binarized_mnist": _binarized_mnist,
    "tensor_file": _tensor_file, "image_folder": _image_folder, "sparse_synthetic": _sparse_synthetic,
}
# activations are read in place, split by split (datasets.activations.load_activations), never as a RawData
assert set(LOADERS) | {"activations"} == set(DATASETS), "config.DATASETS and datasets.LOADERS must name the same datasets"

