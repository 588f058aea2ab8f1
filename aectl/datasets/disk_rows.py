"""Rows of (N, D) float files read in place: the train split of `dataset=activations`, which may
be larger than memory.

A `Shard` knows where its rows lie in its file (.npy, .safetensors) and reads a row range with one
positioned read: only the rows asked for enter the process. (A memory map would do the same
work, but every page it touches stays in the process's resident memory until the kernel needs it
back, so a pass over a large file looks, and can act, like loading it.) `DiskRows` is a split:
some rows of some shards, batched in a seeded order of chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from aectl.config.errors import DataError

_GAP = 64  # rows: a shorter gap between two wanted rows is read through rather than skipped


@dataclass
class Shard:
    """n rows of d values in `path` from byte `offset` (row-major, little-endian), or in memory
    (`array`: .npz and .pt files, which cannot be read in place)."""

    path: Path
    n: int
    d: int
    dtype: np.dtype  # float16 / float32, or uint16 holding bfloat16's bits
    bfloat16: bool = False
    offset: int = 0
    array: np.ndarray | None = None

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) as float32."""
        if self.array is not None:
            raw = np.ascontiguousarray(self.array[start:stop])
        else:
            raw = np.fromfile(self.path, dtype=self.dtype, count=(stop - start) * self.d,
                              offset=self.offset + start * self.d * self.dtype.itemsize).reshape(stop - start, self.d)
        rows = torch.from_numpy(raw)
        return (rows.view(torch.bfloat16) if self.bfloat16 else rows).float()


class DiskRows:
    """A split read from shards on demand. Like a tensor it answers len(), .shape, .dtype,
    .device and slicing (the rows of a slice of its index); `batches` reads it chunk by chunk."""

    dtype = torch.float32

    def __init__(self, shards: list[Shard], index: torch.Tensor, scale: float = 1.0, chunk_rows: int = 16384,
                 device: torch.device | str = "cpu"):
        self.shards, self.index, self.scale, self.chunk_rows = shards, index, scale, chunk_rows
        self.device = torch.device(device)
        self.starts = np.cumsum([0] + [s.n for s in shards])  # global row of each shard's first row

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self), self.shards[0].d])

    def to(self, device) -> DiskRows:
        return DiskRows(self.shards, self.index, self.scale, self.chunk_rows, device)

    def __getitem__(self, item: slice) -> torch.Tensor:
        return self.read(self.index[item])

    def read(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows `rows` (global, ascending) as float32 × scale on the device: each shard's share
        is read as one span, then the rows are picked from it."""
        parts = []
        for i, shard in enumerate(self.shards):
            start, stop = int(self.starts[i]), int(self.starts[i + 1])
            mine = rows[(rows >= start) & (rows < stop)] - start
            # runs of rows less than _GAP apart are read as one span: a chunk of train rows in one
            # read, the scattered val rows one by one (never the span between them)
            runs = torch.tensor_split(mine, ((mine[1:] - mine[:-1]) > _GAP).nonzero().flatten() + 1) if len(mine) else []
            for run in runs:
                first = int(run[0])
                span = shard.read(first, int(run[-1]) + 1)[run - first]
                bad = torch.isnan(span).any(1)
                if bad.any():
                    row = int(run[int(bad.nonzero()[0])])
                    raise DataError(f"dataset.path={shard.path}: row {row} holds NaN; activations must be finite "
                                    "(drop or repair those rows)")
                parts.append(span)
        rows_read = torch.cat(parts) if parts else torch.empty(0, self.shards[0].d)
        return (rows_read.mul_(self.scale) if self.scale != 1.0 else rows_read).to(self.device)

    def batches(self, batch_size: int, shuffle: bool) -> Iterator[torch.Tensor]:
        """Batches of the split, chunk by chunk: a chunk is a run of consecutive rows of the index
        (a whole number of batches), read at once. Shuffled, the chunks come in a random order and
        the rows of a chunk in a random order; the seed of both is one draw of the global RNG
        (seeded per epoch by the trainer), so an epoch's order replays exactly on resume."""
        chunk = max(1, self.chunk_rows // batch_size) * batch_size
        starts = torch.arange(0, len(self), chunk)
        generator = None
        if shuffle:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
            starts = starts[torch.randperm(len(starts), generator=generator)]
        for start in starts.tolist():
            rows = self.read(self.index[start:start + chunk])
            if shuffle:
                rows = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
            yield from rows.split(batch_size)

    def value_range(self) -> tuple[float, float]:
        low, high = float("inf"), float("-inf")
        for rows in self.batches(self.chunk_rows, shuffle=False):
            low, high = min(low, float(rows.min())), max(high, float(rows.max()))
        return low, high
