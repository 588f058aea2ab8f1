"""`load_dataset`: any dataset → splits in the model's range, done the same way for every one.

The registry's reader returns the splits the dataset defines; here they are split (seeded),
scaled, binarized and limited.
"""

import os

import torch

from aectl.config import DatasetConfig
from aectl.config.checks import in_memory_choice
from aectl.config.errors import ConfigError
from aectl.datasets.image_folder import ImageFolderStream, estimate_folder_bytes, list_image_folder
from aectl.datasets.raw import RawData
from aectl.datasets.registry import LOADERS
from aectl.datasets.scaling import scale_splits
from aectl.datasets.splits import DataSplits, StreamedSplit, seeded_split

MEMORY_SHARE = 0.5  # in_memory=auto decodes an image folder at once when it takes ≤ this share of free RAM
UNKNOWN_MEMORY_BYTES = 2 * 1024 ** 3  # the budget where the OS does not say how much RAM is free


def _split(raw: RawData, d: DatasetConfig) -> DataSplits:
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
    low, high = data.value_range()
    if low < 0 or high > 1:
        raise ConfigError("dataset.binarize", how, f"none for data outside [0, 1] (these lie in "
                                                   f"[{low:.4g}, {high:.4g}]): binarizing reads values as probabilities")
    data.binarize = "dynamic" if how == "dynamic" else "none"
    for i, name in enumerate(("train", "val", "test")):
        if how == "threshold" or name != "train":  # dynamic: train stays grey, drawn anew every batch
            setattr(data, name, _binarize_fixed(getattr(data, name), data.scale, how, seed + i))


def load_dataset(name: str = "digits", *, scaler: dict | None = None, **options) -> DataSplits:
    """Load dataset `name` into CPU tensors with train/val/test splits and model inputs in the
    range the dataset's values map to ([0, 1] for images). `options` are DatasetConfig fields;
    `scaler` replaces fitting (tensor_file), so a checkpoint's transform is applied as trained."""
    d = DatasetConfig(name=name, **options)
    if name == "activations":  # read in place: no RawData of the whole file
        from aectl.datasets.activations import load_activations

        return load_activations(d, scaler)
    if name not in LOADERS:
        raise ConfigError("dataset.name", name, "one of " + ", ".join(LOADERS))
    if name == "image_folder" and not _image_folder_fits(d):
        return _streamed_image_folder(d)
    raw = LOADERS[name](d)
    data = _split(raw, d)
    data.classes = raw.classes
    if raw.directions is not None:  # ground truth: values without a known range, no PSNR
        data.directions, data.known_range = raw.directions, None
    data.scale = 1 / raw.value_range[1] if data.train.dtype == torch.uint8 else 1.0
    if name == "tensor_file":
        scale_splits(data, raw, d.scale, scaler)
    if d.binarize != "none":  # split_seed seeds val/test's fixed draws (binarized_mnist never reads it)
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
    files, _, _ = list_image_folder(d.path)
    budget = available_memory_bytes()
    budget = UNKNOWN_MEMORY_BYTES if budget is None else MEMORY_SHARE * budget
    return estimate_folder_bytes(len(files), d.size, d.channels) <= budget


def _streamed_image_folder(d: DatasetConfig) -> DataSplits:
    """An image folder split by index; images are decoded per batch by DataLoader workers."""
    if d.binarize != "none":
        raise ConfigError("dataset.binarize", d.binarize, "none for a streamed image folder "
                                                          "(or dataset.in_memory=true)")
    stream = ImageFolderStream(d.path, size=d.size, channels=d.channels)
    workers = min(4, os.cpu_count() or 1) if d.workers < 0 else d.workers
    index = seeded_split(torch.arange(len(stream)), stream.labels, d.val_fraction, d.test_fraction, d.split_seed,
                         *_source(d))
    shape = [d.channels, *stream.size_hw]
    splits = [StreamedSplit(stream, idx, shape, workers) for idx in (index.train, index.val, index.test)]
    data = DataSplits(*splits, index.train_labels, index.val_labels, index.test_labels, scale=1 / 255,
                      classes=stream.classes)
    return _limit(data, d.limit)


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

