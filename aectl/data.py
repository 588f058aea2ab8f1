"""Datasets → device-resident tensors in the likelihood's range, with seeded splits.

Data that fits in memory is held as one tensor per split (uint8 where it came as uint8) and
batched by slicing a permutation: no DataLoader, no per-sample Python. Only an image
folder larger than memory is streamed, through a DataLoader with workers (`StreamedSplit`).

`load_dataset` looks the name up in `LOADERS` (each reader in readers.py returns the splits the
dataset defines), then splits, scales, binarizes and limits the same way for every dataset.
"""

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from aectl import readers
from aectl.config import DATASETS, DatasetConfig, in_memory_choice
from aectl.errors import ConfigError, DataError

log = logging.getLogger(__name__)
MEMORY_SHARE = 0.5  # in_memory=auto decodes an image folder at once when it takes ≤ this share of free RAM
UNKNOWN_MEMORY_BYTES = 2 * 1024 ** 3  # the budget where the OS does not say how much RAM is free


@dataclass
class DataSplits:
    """train/val/test tensors (N, C, H, W) (or `StreamedSplit`s) and their labels (N,) or None.

    Stored values times `scale` give the model's input (uint8 images use scale 1/255).
    binarize="dynamic" makes every `as_float` a fresh Bernoulli draw of those values (Burda et al.
    2016); val/test are stored already binarized by a fixed-seed draw, which a draw leaves as is."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    scale: float = 1.0
    binarize: str = "none"  # none | dynamic (threshold is applied once, at load)
    scaler: dict | None = None  # tensor_file: readers.fit_scaler statistics of the train split
    classes: list[str] | None = None  # class names indexed by label, where the dataset has them
    # The range the model's inputs are known to lie in (the PSNR's MAX is its width): [0, 1] for
    # images and min-max scaled files; None for standardised or unscaled tables.
    known_range: tuple[float, float] | None = (0.0, 1.0)

    @property
    def input_shape(self) -> list[int]:
        return list(self.train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in ("train", "val", "test"):
            raise ConfigError("split", name, "one of train, val, test")
        return getattr(self, name), getattr(self, f"{name}_labels")

    def to(self, device: torch.device) -> "DataSplits":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        fields = ("train", "val", "test", "train_labels", "val_labels", "test_labels")
        return dataclasses.replace(self, **{f: move(getattr(self, f)) for f in fields})

    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        """Stored values → model input (float32); binarize=dynamic draws x ~ Bernoulli(values)."""
        x = x.float().mul_(self.scale) if x.dtype == torch.uint8 else x.float()
        return torch.bernoulli(x) if self.binarize == "dynamic" else x

    def batches(self, x_all, batch_size: int, shuffle: bool = False) -> Iterator[torch.Tensor]:
        """Model inputs of split `x_all` in batches. In memory: slices of one permutation drawn
        from the global RNG on the split's device (no per-sample work); streamed: a DataLoader."""
        if isinstance(x_all, StreamedSplit):
            yield from map(self.as_float, x_all.batches(batch_size, shuffle))
            return
        order = torch.randperm(len(x_all), device=x_all.device) if shuffle else None
        for start in range(0, len(x_all), batch_size):
            part = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
            yield self.as_float(x_all[part])

    def value_range(self, splits: tuple[str, ...] = ("train", "val", "test")) -> tuple[float, float]:
        """(min, max) of the model's input over `splits` (streamed images: 0..255 → [0, 1])."""
        if isinstance(self.train, StreamedSplit):
            return 0.0, 1.0
        splits = [x for x in (getattr(self, name) for name in splits) if len(x)]
        scale = self.scale if self.train.dtype == torch.uint8 else 1.0
        return (min(float(x.min()) for x in splits) * scale, max(float(x.max()) for x in splits) * scale)


class StreamedSplit:
    """A split decoded from files on the fly, for image folders larger than memory. It answers
    len(), .shape, .device and slicing (a few examples, e.g. for image logs) like a tensor, and
    `batches` goes through a DataLoader with worker processes and pinned memory."""

    dtype = torch.uint8

    def __init__(self, dataset: torch.utils.data.Dataset, indices: torch.Tensor, sample_shape: list[int],
                 workers: int, device: torch.device | str = "cpu"):
        self.dataset, self.indices, self.sample_shape = dataset, indices, list(sample_shape)
        self.workers, self.device = workers, torch.device(device)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self), *self.sample_shape])

    def to(self, device) -> "StreamedSplit":
        return StreamedSplit(self.dataset, self.indices, self.sample_shape, self.workers, device)

    def head(self, n: int) -> "StreamedSplit":
        """The first n examples, still streamed (dataset.limit)."""
        return StreamedSplit(self.dataset, self.indices[:n], self.sample_shape, self.workers, self.device)

    def __getitem__(self, item: slice) -> torch.Tensor:
        images = [self.dataset[int(i)][0] for i in self.indices[item]]
        return (torch.stack(images) if images else torch.empty(0, *self.sample_shape, dtype=self.dtype)).to(self.device)

    def batches(self, batch_size: int, shuffle: bool) -> Iterator[torch.Tensor]:
        """uint8 batches on the target device; shuffling draws its seed from the global RNG."""
        from torch.utils.data import DataLoader, Subset

        cuda = self.device.type == "cuda"
        loader = DataLoader(Subset(self.dataset, self.indices.tolist()), batch_size=batch_size, shuffle=shuffle,
                            num_workers=self.workers, pin_memory=cuda)
        for images, _ in readers.worker_errors_named(loader):
            yield images.to(self.device, non_blocking=cuda)


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    return int(round(n * val_fraction)), int(round(n * test_fraction))


def min_examples(val_fraction: float, test_fraction: float) -> int | None:
    """The fewest examples for which the split leaves train and val an example each (None when
    that takes more than a short search finds, for a val_fraction close to 0)."""
    start = max(1, int(0.5 / val_fraction))  # below 0.5/val_fraction the val split rounds to 0
    for n in range(start, start + 10_000):
        n_val, n_test = _split_sizes(n, val_fraction, test_fraction)
        if n_val >= 1 and n - n_val - n_test >= 1:
            return n
    return None


def seeded_split(x: torch.Tensor, y: torch.Tensor | None, val_fraction: float, test_fraction: float,
                 seed: int, source: str = "dataset", unit: str = "examples") -> DataSplits:
    """Split one pool into train/val/test by a permutation fixed by `seed`. Too few examples for
    train and val to get one each (an empty val split would end training in a division by zero)
    is a DataError naming `source`, the count and the minimum; test may be empty."""
    n = len(x)
    n_val, n_test = _split_sizes(n, val_fraction, test_fraction)
    if n_val < 1 or n - n_val - n_test < 1:
        minimum = min_examples(val_fraction, test_fraction)
        needed = f"at least {minimum} {unit} are needed" if minimum else "a larger dataset.val_fraction is needed"
        raise DataError(f"{source}: {n} {unit if n != 1 else unit[:-1]}, too few to give train and val an example "
                        f"each (dataset.val_fraction={val_fraction}, dataset.test_fraction={test_fraction}); {needed}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = perm[n_val + n_test:], perm[:n_val], perm[n_val:n_val + n_test]
    xs = [x[p] for p in parts]
    ys = [None if y is None else y[p] for p in parts]
    return DataSplits(*xs, *ys)


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


def check_model_range(data: DataSplits, likelihood: str, output_activation: str) -> None:
    """Refuse a model that cannot describe the data's values: a Bernoulli likelihood needs every
    value in [0, 1]; a sigmoid output (Gaussian likelihood) cannot even fit a train split beyond it."""
    low, high = data.value_range()
    if likelihood == "bernoulli" and (low < 0 or high > 1):
        raise ConfigError("model.likelihood", likelihood,
                          f"gaussian for data outside [0, 1] (these lie in [{low:.4g}, {high:.4g}]); "
                          f"a Bernoulli likelihood needs every value in [0, 1]")
    low, high = data.value_range(("train",))
    if likelihood == "gaussian" and output_activation == "sigmoid" and (low < 0 or high > 1):
        raise ConfigError("model.output_activation", output_activation,
                          f"identity for data outside [0, 1] (the train split lies in [{low:.4g}, {high:.4g}]); "
                          f"a sigmoid output only reaches (0, 1)")


def default_data_root() -> Path:
    """Where downloadable datasets live unless dataset.root says otherwise: the user's cache,
    $XDG_CACHE_HOME/aectl/data, else ~/.cache/aectl/data."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "aectl" / "data"


def _root(d: DatasetConfig) -> Path:
    return Path(d.root).expanduser() if d.root else default_data_root()


def _digits(d: DatasetConfig) -> readers.RawData:
    x, y, scale = load_digits()
    return readers.RawData({"all": readers.ArraySplit(x, y)}, (0.0, 1 / scale), [str(c) for c in range(10)])


def _synthetic(d: DatasetConfig) -> readers.RawData:
    x, y = make_synthetic(d.num_samples, list(d.shape), d.split_seed)
    return readers.RawData({"all": readers.ArraySplit(x, y)}, (0.0, 1.0))


def _mnist_family(d: DatasetConfig) -> readers.RawData:
    return readers.load_mnist_family(_root(d), d.name, download=d.download)


def _cifar10(d: DatasetConfig) -> readers.RawData:
    return readers.load_cifar10(_root(d), download=d.download)


def _binarized_mnist(d: DatasetConfig) -> readers.RawData:
    return readers.load_binarized_mnist(_root(d), download=d.download)


def _tensor_file(d: DatasetConfig) -> readers.RawData:
    return readers.load_tensor_file(d.path, key=d.key, label_key=d.label_key, label_column=d.label_column)


def _image_folder(d: DatasetConfig) -> readers.RawData:
    return readers.load_image_folder(d.path, size=d.size, channels=d.channels)


# dataset.name → reader of the splits the dataset defines ("train"/"valid"/"test" or "all").
LOADERS: dict[str, Callable[[DatasetConfig], readers.RawData]] = {
    "digits": _digits, "synthetic": _synthetic, "mnist": _mnist_family, "fashion_mnist": _mnist_family,
    "kmnist": _mnist_family, "cifar10": _cifar10, "binarized_mnist": _binarized_mnist,
    "tensor_file": _tensor_file, "image_folder": _image_folder,
}
assert set(LOADERS) == set(DATASETS), "config.DATASETS and data.LOADERS must name the same datasets"


def _split(raw: readers.RawData, d: DatasetConfig) -> DataSplits:
    """The dataset's own splits where it has them; val carved from train (val_fraction) when it
    has no val split; one pool split three ways (val/test_fraction) when it has none."""
    parts, source = raw.splits, _source(d)
    if "all" in parts:
        return seeded_split(parts["all"].x, parts["all"].y, d.val_fraction, d.test_fraction, d.split_seed, *source)
    if "valid" in parts:
        train, val = parts["train"], parts["valid"]
        data = DataSplits(train.x, val.x, parts["test"].x, train.y, val.y)
    else:
        data = seeded_split(parts["train"].x, parts["train"].y, d.val_fraction, 0.0, d.split_seed, *source)
    data.test, data.test_labels = parts["test"].x, parts["test"].y
    return data


def _source(d: DatasetConfig) -> tuple[str, str]:
    """What a split error names: the file or folder read, and what it counts (a CSV's rows)."""
    if d.name in ("tensor_file", "image_folder"):
        unit = "rows" if str(d.path).lower().endswith(".csv") else "images" if d.name == "image_folder" else "examples"
        return str(d.path), unit
    return f"dataset.name={d.name}", "examples"


def _binarize_fixed(x: torch.Tensor, scale: float, how: str, seed: int) -> torch.Tensor:
    """x > 0.5 (threshold) or one Bernoulli draw with a fixed seed, in x's dtype and scale."""
    p = x.float() * scale if x.dtype == torch.uint8 else x
    bits = p > 0.5 if how == "threshold" else torch.bernoulli(p, generator=torch.Generator().manual_seed(seed)) > 0
    return bits.to(torch.uint8) * round(1 / scale) if x.dtype == torch.uint8 else bits.float()


def _apply_binarize(data: DataSplits, how: str, seed: int) -> None:
    if how == "none":
        return
    low, high = data.value_range()
    if low < 0 or high > 1:
        raise ConfigError("dataset.binarize", how, f"none for data outside [0, 1] (these lie in "
                                                   f"[{low:.4g}, {high:.4g}]): binarizing reads values as probabilities")
    data.binarize = "dynamic" if how == "dynamic" else "none"
    for i, name in enumerate(("train", "val", "test")):
        if how == "threshold" or name != "train":  # dynamic: train stays grey, drawn anew every batch
            setattr(data, name, _binarize_fixed(getattr(data, name), data.scale, how, seed + i))


def _scale(data: DataSplits, raw: readers.RawData, mode: str, scaler: dict | None) -> None:
    """tensor_file scaling: statistics of the train split (or `scaler` given, e.g. from a
    checkpoint), per feature for tables and one for the whole array for images (uint8: /255).
    minmax maps train onto [0, 1]; val/test values beyond the train split's range are clipped
    into it (and the log says how many), so every split lies where the model's output can reach."""
    fixed = raw.value_range if raw.value_range == (0.0, 255.0) and not raw.tabular else None
    data.scaler = scaler if scaler is not None else readers.fit_scaler(data.train, mode, raw.tabular, fixed)
    data.train, data.val, data.test = (readers.apply_scaler(x, data.scaler) for x in (data.train, data.val, data.test))
    data.known_range = (0.0, 1.0) if data.scaler["mode"] == "minmax" else None
    if data.scaler["mode"] == "minmax":
        for name in ("train", "val", "test"):
            x = getattr(data, name)
            outside = int(((x < 0) | (x > 1)).sum())
            if outside:
                log.warning("dataset.scale=minmax: clipped %d of %d %s values outside the train split's range "
                            "into [0, 1]", outside, x.numel(), name)
                setattr(data, name, x.clamp(0, 1))


def load_dataset(name: str = "digits", *, scaler: dict | None = None, **options) -> DataSplits:
    """Load dataset `name` into CPU tensors with train/val/test splits and model inputs in the
    range the dataset's values map to ([0, 1] for images). `options` are DatasetConfig fields;
    `scaler` replaces fitting (tensor_file), so a checkpoint's transform is applied as trained."""
    d = DatasetConfig(name=name, **options)
    if name not in LOADERS:
        raise ConfigError("dataset.name", name, "one of " + ", ".join(LOADERS))
    if name == "image_folder" and not _image_folder_fits(d):
        return _streamed_image_folder(d)
    raw = LOADERS[name](d)
    data = _split(raw, d)
    data.classes = raw.classes
    data.scale = 1 / raw.value_range[1] if data.train.dtype == torch.uint8 else 1.0
    if name == "tensor_file":
        _scale(data, raw, d.scale, scaler)
    _apply_binarize(data, d.binarize, d.split_seed)
    return _limit(data, d.limit)


def _limit(data: DataSplits, limit: int) -> DataSplits:
    if limit:
        data.train = data.train.head(limit) if isinstance(data.train, StreamedSplit) else data.train[:limit]
        data.train_labels = None if data.train_labels is None else data.train_labels[:limit]
    return data


def available_memory_bytes() -> int | None:
    """Free RAM as the OS reports it (Linux), else total RAM (macOS), else None (unknown)."""
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
    return None


def _image_folder_fits(d: DatasetConfig) -> bool:
    """in_memory=true/false as given; auto: the decoded uint8 tensor against a share of free RAM."""
    choice = in_memory_choice(d.in_memory)
    if choice != "auto":
        return choice == "true"
    files, _, _ = readers.list_image_folder(d.path)
    budget = available_memory_bytes()
    budget = UNKNOWN_MEMORY_BYTES if budget is None else MEMORY_SHARE * budget
    return readers.estimate_folder_bytes(len(files), d.size, d.channels) <= budget


def _streamed_image_folder(d: DatasetConfig) -> DataSplits:
    """An image folder split by index; images are decoded per batch by DataLoader workers."""
    if d.binarize != "none":
        raise ConfigError("dataset.binarize", d.binarize, "none for a streamed image folder "
                                                          "(or dataset.in_memory=true)")
    stream = readers.ImageFolderStream(d.path, size=d.size, channels=d.channels)
    workers = min(4, os.cpu_count() or 1) if d.workers < 0 else d.workers
    index = seeded_split(torch.arange(len(stream)), stream.labels, d.val_fraction, d.test_fraction, d.split_seed,
                         *_source(d))
    shape = [d.channels, *stream.size_hw]
    splits = [StreamedSplit(stream, idx, shape, workers) for idx in (index.train, index.val, index.test)]
    data = DataSplits(*splits, index.train_labels, index.val_labels, index.test_labels, scale=1 / 255,
                      classes=stream.classes)
    return _limit(data, d.limit)
