"""`dataset=activations`: (N, D) activations saved from another network, the data of sparse
autoencoders. One file or a folder of shards (.npy, .safetensors, .npz, .pt), float16, bfloat16
or float32. .npy and .safetensors are read in place (aectl.datasets.disk_rows), so the train split
streams and a file larger than memory trains; val and test (small fractions) are read into
memory. Rows are split by a seeded draw; `dataset.limit` cuts the train rows before any is read.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from aectl.config.errors import ConfigError, DataError
from aectl.datasets.disk_rows import DiskRows, Shard
from aectl.datasets.splits import DataSplits

EXTENSIONS = (".npy", ".safetensors", ".npz", ".pt")
NORMALIZE = ("none", "mean_squared_norm")
_SAFETENSORS_DTYPES = {"F16": (np.float16, False), "F32": (np.float32, False), "BF16": (np.uint16, True)}
_NORM_SAMPLE = 8192  # train rows that estimate the mean squared norm


def _checked(path: Path, shape: tuple, dtype: str) -> tuple[int, int]:
    if dtype not in ("float16", "float32", "bfloat16"):
        raise DataError(f"dataset.path={path}: dtype {dtype}; activations are float16, bfloat16 or float32")
    if len(shape) != 2:
        raise DataError(f"dataset.path={path}: an array of shape {tuple(shape)}; activations are (N, D) rows: "
                        "flatten the other axes first, e.g. x.reshape(-1, x.shape[-1]) for (batch, tokens, D)")
    return int(shape[0]), int(shape[1])


def _npy(path: Path) -> Shard:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    n, d = _checked(path, shape, dtype.name)
    if fortran or dtype.byteorder == ">":
        raise DataError(f"dataset.path={path}: a Fortran-ordered or big-endian array; save it with np.save(path, "
                        "np.ascontiguousarray(x))")
    return Shard(path, n, d, dtype, offset=offset)


def _safetensors(path: Path, key: str | None) -> Shard:
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    name = key or ("activations" if "activations" in tensors else next(iter(sorted(tensors)), None))
    if name not in tensors:
        raise DataError(f"dataset.path={path}: no tensor {name!r} (dataset.key); the file holds {sorted(tensors)}")
    info = tensors[name]
    if info["dtype"] not in _SAFETENSORS_DTYPES:
        raise DataError(f"dataset.path={path}: dtype {info['dtype']}; activations are float16, bfloat16 or float32")
    n, d = _checked(path, tuple(info["shape"]), "float32")
    dtype, bf16 = _SAFETENSORS_DTYPES[info["dtype"]]
    return Shard(path, n, d, np.dtype(dtype).newbyteorder("<"), bf16, offset=8 + length + info["data_offsets"][0])


def _in_memory(path: Path, key: str | None) -> Shard:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            name = key or ("x" if "x" in npz.files else npz.files[0])
            array = npz[name]
        n, d = _checked(path, array.shape, array.dtype.name)
        return Shard(path, n, d, array.dtype, array=array)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    tensor = obj if isinstance(obj, torch.Tensor) else obj.get(key or "x", next(iter(obj.values()), None))
    if not isinstance(tensor, torch.Tensor):
        raise DataError(f"dataset.path={path}: holds no tensor; activations are an (N, D) tensor or a dict of them")
    n, d = _checked(path, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
    return Shard(path, n, d, np.dtype(np.float32), array=tensor.float().numpy())


def open_shards(path: str | None, key: str | None = None) -> list[Shard]:
    """The shards of a file or of a folder's files (by name), one D for all."""
    if path is None:
        raise ConfigError("dataset.path", None, "a file or folder of activations (.npy, .safetensors, .npz, .pt)")
    root = Path(path).expanduser()
    files = sorted(p for p in root.iterdir() if p.suffix in EXTENSIONS) if root.is_dir() else [root]
    if root.is_dir() and not files:
        raise DataError(f"dataset.path={root}: the folder holds no {', '.join(EXTENSIONS)} files")
    if not root.exists():
        raise DataError(f"dataset.path={root}: no such file or folder")
    shards = []
    for file in files:
        if file.suffix not in EXTENSIONS:
            raise DataError(f"dataset.path={file}: not an activation file ({', '.join(EXTENSIONS)})")
        shards.append(_npy(file) if file.suffix == ".npy" else _safetensors(file, key)
                      if file.suffix == ".safetensors" else _in_memory(file, key))
    widths = sorted({s.d for s in shards})
    if len(widths) > 1:
        raise DataError(f"dataset.path={root}: shards of different widths D {widths}; one D for all")
    return shards


def load_activations(d, scaler: dict | None = None) -> DataSplits:
    """The splits of `dataset=activations` (d: its DatasetConfig). `scaler` (a checkpoint's)
    replaces estimating the normalisation, so eval and resume see the data as trained."""
    if d.normalize not in NORMALIZE:
        raise ConfigError("dataset.normalize", d.normalize, "one of " + ", ".join(NORMALIZE))
    shards = open_shards(d.path, d.key)
    n = sum(s.n for s in shards)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(d.split_seed))
    n_val, n_test = round(n * d.val_fraction), round(n * d.test_fraction)
    if n - n_val - n_test < 1:
        raise DataError(f"dataset.path={d.path}: {n} rows leave none to train on after val_fraction={d.val_fraction} "
                        f"and test_fraction={d.test_fraction}")
    val, test, train = (order[:n_val].sort().values, order[n_val:n_val + n_test].sort().values,
                        order[n_val + n_test:].sort().values)
    if d.limit:
        train = train[:d.limit]  # before any row is read
    rows = DiskRows(shards, train, chunk_rows=d.chunk_rows)
    scaler = scaler if scaler is not None else _fit_normalization(rows, d.normalize)
    rows.scale = float(scaler["scale"]) if scaler["mode"] == "mean_squared_norm" else 1.0
    return DataSplits(rows, rows.read(val), rows.read(test), scaler=scaler, known_range=None)


def _fit_normalization(rows: DiskRows, how: str) -> dict:
    """dataset.normalize=mean_squared_norm: the factor s with mean ‖s·x‖² = D over a sample of the
    train rows (SAELens's "expected_average_only_in"), so one set of hyperparameters fits
    activations of any scale. x_model = s·x; aectl export folds s back into the weights."""
    if how == "none":
        return {"mode": "none"}
    sample = rows.read(rows.index[torch.linspace(0, len(rows) - 1, min(len(rows), _NORM_SAMPLE)).long().unique()])
    mean_sq = float(sample.pow(2).sum(1).mean())
    if not mean_sq > 0:
        raise DataError("dataset.normalize=mean_squared_norm: the sampled train rows are all zero")
    return {"mode": "mean_squared_norm", "scale": math.sqrt(rows.shape[1] / mean_sq)}
