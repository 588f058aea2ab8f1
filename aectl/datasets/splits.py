"""Train/val/test splits as tensors on the device, batched by slicing a permutation.

Data that fits in memory is held as one tensor per split (uint8 where it came as uint8): no
DataLoader, no per-sample Python. Only an image folder larger than memory is streamed, through
a DataLoader with workers (`StreamedSplit`), and the train rows of activations are read from
disk chunk by chunk (`disk_rows.DiskRows`).
"""

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch

from aectl.config.errors import ConfigError, DataError
from aectl.datasets.disk_rows import DiskRows


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
    scaler: dict | None = None  # tensor_file: scaling.fit_scaler statistics of the train split
    classes: list[str] | None = None  # class names indexed by label, where the dataset has them
    # The range the model's inputs are known to lie in (the PSNR's MAX is its width): [0, 1] for
    # images and min-max scaled files; None for standardised or unscaled tables.
    known_range: tuple[float, float] | None = (0.0, 1.0)
    directions: torch.Tensor | None = None  # sparse_synthetic: the true unit directions (n, D), on the CPU

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

    def batches(self, x_all, batch_size: int, shuffle: bool = False,
                labels: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Model inputs of split `x_all` in batches. In memory: slices of one permutation drawn
        from the global RNG on the split's device (no per-sample work); streamed: a DataLoader.
        With `labels` (the split's, for a conditional model) each batch is (x, y), sliced by the
        same permutation: the same draws as without, so the batches' x are the same."""
        if isinstance(x_all, DiskRows):  # activations: unlabelled rows, read chunk by chunk
            yield from x_all.batches(batch_size, shuffle)
            return
        if isinstance(x_all, StreamedSplit):
            if labels is not None:
                raise DataError("model=cvae cannot stream an image folder (its labels are not batched): "
                                "use dataset.in_memory=true")
            yield from map(self.as_float, x_all.batches(batch_size, shuffle))
            return
        order = torch.randperm(len(x_all), device=x_all.device) if shuffle else None
        for start in range(0, len(x_all), batch_size):
            part = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
            yield self.as_float(x_all[part]) if labels is None else (self.as_float(x_all[part]), labels[part])

    def value_range(self, splits: tuple[str, ...] = ("train", "val", "test")) -> tuple[float, float]:
        """(min, max) of the model's input over `splits` (streamed images: 0..255 → [0, 1])."""
        if isinstance(self.train, StreamedSplit):
            return 0.0, 1.0
        if isinstance(self.train, DiskRows):
            ranges = [self.train.value_range() if name == "train" else (float(x.min()), float(x.max()))
                      for name in splits if len(x := getattr(self, name))]
            return min(r[0] for r in ranges), max(r[1] for r in ranges)
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
        for images, _ in worker_errors_named(loader):
            yield images.to(self.device, non_blocking=cuda)


def worker_errors_named(loader):
    """The batches of a DataLoader. A DataError raised in a worker process reaches the main
    process wrapped by torch ("Caught DataError in DataLoader worker process 0", then the
    traceback); it is raised again as the worker's own one-line message, naming the file."""
    try:
        yield from loader
    except DataError as err:
        text = str(err)
        if "Original Traceback" not in text:
            raise
        last = text.strip().splitlines()[-1]  # the traceback's "aectl.config.errors.DataError: <message>"
        raise DataError(last.split("DataError: ", 1)[-1]) from None


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

