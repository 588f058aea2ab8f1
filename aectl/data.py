"""Datasets → device-resident tensors in the likelihood's range, with seeded splits.

Data that fits in memory is held as one tensor per split (uint8 where it came as uint8) and
batched by slicing a permutation (design §6): no DataLoader, no per-sample Python.
"""

from dataclasses import dataclass
import torch

from aectl.errors import ConfigError, DataError

DATASETS = ("digits", "synthetic")


@dataclass
class DataSplits:
    """train/val/test tensors (N, C, H, W) and their labels (N,) or None.

    Stored values times `scale` give the model's input (uint8 images use scale 1/255)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    scale: float = 1.0

    @property
    def input_shape(self) -> list[int]:
        return list(self.train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in ("train", "val", "test"):
            raise ConfigError("split", name, "one of train, val, test")
        return getattr(self, name), getattr(self, f"{name}_labels")

    def to(self, device: torch.device) -> "DataSplits":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return DataSplits(*(move(getattr(self, f)) for f in
                            ("train", "val", "test", "train_labels", "val_labels", "test_labels")),
                          scale=self.scale)

    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        """Stored values → model input (float32)."""
        return x.float() * self.scale if x.dtype == torch.uint8 else x.float()


def seeded_split(x: torch.Tensor, y: torch.Tensor | None, val_fraction: float, test_fraction: float,
                 seed: int) -> DataSplits:
    """Split one pool into train/val/test by a permutation fixed by `seed`."""
    n = len(x)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    parts = perm[n_val + n_test:], perm[:n_val], perm[n_val:n_val + n_test]
    if len(parts[0]) == 0:
        raise DataError(f"dataset has {n} examples: nothing left for training after the val/test split")
    xs = [x[p] for p in parts]
    ys = [None if y is None else y[p] for p in parts]
    return DataSplits(*xs, *ys)


def load_digits() -> tuple[torch.Tensor, torch.Tensor, float]:
    """scikit-learn's bundled 8×8 digits (1797 images, integer values 0..16): uint8, scale 1/16."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.images).to(torch.uint8).unsqueeze(1)
    return x, torch.from_numpy(bunch.target).long(), 1 / 16


def make_synthetic(num_samples: int, shape: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Small learnable data in (0, 1): x = sigmoid(3 W u) with u ~ N(0, I_4) and a fixed random
    W, so a 4-dimensional code explains it; the label is the index of the largest |u_j|."""
    g = torch.Generator().manual_seed(seed)
    features = shape[0] * shape[1] * shape[2]
    u = torch.randn(num_samples, 4, generator=g)
    w = torch.randn(4, features, generator=g) / 2
    x = torch.sigmoid(3 * u @ w).reshape(num_samples, *shape)
    return x, u.abs().argmax(1)


def load_dataset(name: str, *, root: str | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, split_seed: int = 0, limit: int = 0,
                 num_samples: int = 512, shape: list[int] = (1, 8, 8)) -> DataSplits:
    """Load dataset `name` into CPU tensors with train/val/test splits."""
    if name == "digits":
        x, y, scale = load_digits()
    elif name == "synthetic":
        (x, y), scale = make_synthetic(num_samples, list(shape), split_seed), 1.0
    else:
        raise ConfigError("dataset.name", name, "one of " + ", ".join(DATASETS))
    data = seeded_split(x, y, val_fraction, test_fraction, split_seed)
    data.scale = scale
    if limit:
        data.train = data.train[:limit]
        data.train_labels = None if data.train_labels is None else data.train_labels[:limit]
    return data
