"""Readers: datasets in their real on-disk formats → tensors, with nothing else done.

Every reader is a pure function of paths and options that returns a `RawData`: the splits the
dataset itself defines, pixels kept as uint8 where the files store uint8, and the range of the
stored values, so data.py can map to [0, 1] on the device. Problems a user can cause (missing,
corrupt or wrongly shaped files; no network) raise `DataError` with a one-line message naming
the file, what was wrong and what is expected.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import pickle
import shutil
import struct
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from aectl.errors import ConfigError, DataError, refused_global


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


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, so wrapped errors stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _existing_file(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    return path


# --- IDX (MNIST family) ---------------------------------------------------------------------

# IDX type byte → big-endian dtype; IDX stores every multi-byte value big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz."""
    path = _existing_file(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read file ({_one_line(exc)})") from exc


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


def _download_torchvision(class_name: str, root: Path, layout: str) -> None:
    """Fetch with torchvision's own downloader (mirrors, checksums); any failure is one DataError."""
    try:
        import torchvision.datasets

        getattr(torchvision.datasets, class_name)(str(root), train=True, download=True)
    except Exception as exc:  # network, checksum, disk: each means there is no usable copy
        raise DataError(f"download of {class_name} into {root} failed ({_one_line(exc)}); "
                        f"without network, copy the files yourself and point dataset.root at "
                        f"the folder that holds {layout}") from exc


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
        _download_torchvision(folder, root, layout)
    missing = _missing_idx(raw_dir)
    if missing:
        raise DataError(f"{name}: {', '.join(missing)} (plain or .gz) not found in {raw_dir} and download is off; "
                        f"set dataset.download=true or point dataset.root at the folder that holds {layout}")
    splits = {split: _read_idx_pair(_find_idx(raw_dir, images), _find_idx(raw_dir, labels))
              for split, (images, labels) in _MNIST_FILES.items()}
    return RawData(splits, (0.0, 255.0), list(_MNIST_CLASSES[name]))


# --- CIFAR-10 (python pickles) ----------------------------------------------------------------

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
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({_one_line(exc)})") from exc
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
        _download_torchvision("CIFAR10", root, layout)
    if missing():
        raise DataError(f"cifar10: {', '.join(missing())} not found in {base} and download is off; "
                        f"set dataset.download=true or point dataset.root at the folder that holds {layout}")
    splits = {split: _concat([_read_cifar_batch(base / n) for n in names]) for split, names in _CIFAR_FILES.items()}
    return RawData(splits, (0.0, 255.0), list(CIFAR10_CLASSES))


# --- Binarized MNIST (Larochelle & Murray 2011, .amat text) ----------------------------------

BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
_DOWNLOAD_TIMEOUT_S = 60


def _find_amat(root: Path, split: str) -> Path | None:
    """binarized_mnist_<split>.amat under <root>/binarized_mnist/ or directly under root."""
    name = f"binarized_mnist_{split}.amat"
    return next((p for p in (root / "binarized_mnist" / name, root / name) if p.is_file()), None)


def _download_amat(root: Path, split: str) -> Path:
    """Fetch one split from the canonical URL into <root>/binarized_mnist/ (atomically: no partial files)."""
    url, target = BINARIZED_MNIST_URL.format(split=split), root / "binarized_mnist" / f"binarized_mnist_{split}.amat"
    partial = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(partial, target)
    except OSError as exc:  # URLError, HTTPError and timeouts are all OSErrors
        partial.unlink(missing_ok=True)
        raise DataError(f"binarized_mnist: download of {url} failed ({_one_line(exc)}); without network, "
                        f"put binarized_mnist_{{train,valid,test}}.amat into <dir>/binarized_mnist/ "
                        f"and point dataset.root at <dir>") from exc
    return target


def _read_amat(path: Path) -> torch.Tensor:
    """Rows of 784 space-separated 0/1 values → uint8 (N, 1, 28, 28)."""
    expected = "rows of 784 space-separated 0/1 values (one 28x28 image per row)"
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected {expected}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # whitespace-only files warn; the size check below says it
            rows = np.loadtxt(path, dtype=np.uint8, ndmin=2)
    except ValueError as exc:  # ragged rows or values that are not integers
        raise DataError(f"{path}: cannot parse ({_one_line(exc)}); expected {expected}") from exc
    if rows.shape[1] != 784 or len(rows) == 0:
        raise DataError(f"{path}: rows have {rows.shape[1]} values; expected {expected}")
    if rows.max() > 1:
        raise DataError(f"{path}: holds values up to {rows.max()}; expected {expected}")
    return torch.from_numpy(rows.reshape(-1, 1, 28, 28))


def load_binarized_mnist(root, download: bool = False) -> RawData:
    """Larochelle & Murray's binarized MNIST: binarized_mnist_{train,valid,test}.amat, 784 0/1 values a row."""
    root, splits = Path(root).expanduser(), {}
    for split in ("train", "valid", "test"):
        path = _find_amat(root, split)
        if path is None and download:
            path = _download_amat(root, split)
        if path is None:
            raise DataError(f"binarized_mnist: binarized_mnist_{split}.amat not found in "
                            f"{root / 'binarized_mnist'} or {root} and download is off; set "
                            f"dataset.download=true or point dataset.root at the folder that holds "
                            f"binarized_mnist/binarized_mnist_{{train,valid,test}}.amat")
        splits[split] = ArraySplit(_read_amat(path))
    return RawData(splits, (0.0, 1.0))


# --- Numeric tensor files (.npy, .npz, .pt, .csv) --------------------------------------------

TENSOR_FILE_EXTENSIONS = (".npy", ".npz", ".pt", ".csv")


def _pick_keys(path: Path, names: list[str], key: str | None, label_key: str | None) -> tuple[str, str | None]:
    """Names of (data, labels) among a file's arrays: data is `key`, else "x", else the first
    other array; labels are `label_key`, else "y" when present, else none."""
    for option, name in (("key", key), ("label_key", label_key)):
        if name is not None and name not in names:
            raise DataError(f"{path}: no array named {name!r} ({option}); the file holds {sorted(names)}")
    if label_key is None and "y" in names and key != "y":
        label_key = "y"
    if key is None:
        key = "x" if "x" in names else next((n for n in names if n != label_key), None)
    if key is None:
        raise DataError(f"{path}: holds no data array besides the labels {label_key!r}")
    return key, label_key


def _tensor_to_numpy(path: Path, name: str, value) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path}: entry {name!r} is a {type(value).__name__}; expected a tensor")
    value = value.detach().cpu()
    return (value.float() if value.is_floating_point() else value).numpy()  # numpy has no bfloat16


def _read_npy(path: Path, **_):
    return np.load(path, allow_pickle=False), None


def _read_npz(path: Path, key=None, label_key=None, **_):
    with np.load(path, allow_pickle=False) as npz:  # lazy: only the picked arrays are decompressed
        if not npz.files:
            raise DataError(f"{path}: the archive holds no arrays")
        key, label_key = _pick_keys(path, npz.files, key, label_key)
        return npz[key], (npz[label_key] if label_key is not None else None)


def _read_pt(path: Path, key=None, label_key=None, **_):
    obj = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
    if isinstance(obj, torch.Tensor):
        return _tensor_to_numpy(path, "tensor", obj), None
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: holds a {type(obj).__name__}; expected a tensor or a non-empty dict of tensors")
    key, label_key = _pick_keys(path, list(obj), key, label_key)
    labels = None if label_key is None else _tensor_to_numpy(path, label_key, obj[label_key])
    return _tensor_to_numpy(path, key, obj[key]), labels


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _label_index(path: Path, label_column: int | str, header: list[str] | None, n_columns: int) -> int:
    """Column index from a name (needs a header row) or a position (negative counts from the end)."""
    if isinstance(label_column, str):
        if header is None or label_column not in header:
            columns = f"the columns are {header}" if header else "the file has no header row"
            raise DataError(f"{path}: no column named {label_column!r} (label_column); {columns}")
        return header.index(label_column)
    if not -n_columns <= label_column < n_columns:
        raise DataError(f"{path}: label_column={label_column} is out of range; the file has {n_columns} columns")
    return label_column % n_columns


def _read_csv(path: Path, label_column=None, **_):
    """Comma-separated numbers; a first row that is not all numbers is taken as the header."""
    with open(path, newline="") as f:
        first = next((row for row in csv.reader(f) if row), None)
    header = [name.strip() for name in first] if first and not all(map(_is_number, first)) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a header-only file warns; the empty check says it
        table = np.loadtxt(path, delimiter=",", quotechar='"', skiprows=1 if header else 0, ndmin=2,
                           dtype=np.float64)
    if table.size == 0:
        raise DataError(f"{path}: no data rows; expected comma-separated numbers, one example per row")
    if label_column is None:
        return table, None
    column = _label_index(path, label_column, header, table.shape[1])
    return np.delete(table, column, axis=1), table[:, column]


_TENSOR_READERS = {".npy": _read_npy, ".npz": _read_npz, ".pt": _read_pt, ".csv": _read_csv}


def _to_nchw(path: Path, array: np.ndarray) -> torch.Tensor:
    """float32 (N, C, H, W): (N, D) → (N, 1, 1, D), (N, H, W) → (N, 1, H, W), 4-D kept as given."""
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == np.bool_):
        raise DataError(f"{path}: data has dtype {array.dtype}; expected integers or floats")
    if array.ndim not in (2, 3, 4):
        raise DataError(f"{path}: data has shape {array.shape} ({array.ndim}-D); expected "
                        f"(N, D), (N, H, W) or (N, C, H, W)")
    if array.size == 0:
        raise DataError(f"{path}: data has shape {array.shape}, no values; expected at least one example")
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return x.reshape(len(x), 1, 1, -1) if x.ndim == 2 else (x.unsqueeze(1) if x.ndim == 3 else x)


def _check_finite(path: Path, x: torch.Tensor) -> None:
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise DataError(f"{path}: {bad} NaN/inf values in the data (of {x.numel()}); remove or impute them first")


def _to_labels(path: Path, labels, n: int) -> torch.Tensor | None:
    """(N,) int64 labels, checked to be one whole number per example."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{path}: labels have shape {labels.shape} for {n} examples; expected ({n},), one per example")
    whole = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.isfinite(labels).all() and (labels == np.round(labels)).all())
    if not whole:
        raise DataError(f"{path}: labels must be whole numbers (class indices); got dtype {labels.dtype}")
    return torch.from_numpy(labels.astype(np.int64))


def load_tensor_file(path, *, key: str | None = None, label_key: str | None = None,
                     label_column: int | str | None = None) -> RawData:
    """Numbers from .npy / .npz / .pt / .csv as one "all" split of float32 (N, C, H, W).

    2-D (N, D) data becomes (N, 1, 1, D), 3-D (N, H, W) becomes (N, 1, H, W), 4-D is taken as
    (N, C, H, W). `key`/`label_key` pick arrays of an .npz or a dict in a .pt (defaults "x",
    or the first array, and "y" when present); `label_column` (name or index) picks a .csv column.
    """
    path = _existing_file(path)
    ext = path.suffix.lower()
    if ext not in _TENSOR_READERS:
        raise DataError(f"{path}: unknown extension {ext or '(none)'!r}; "
                        f"expected one of {', '.join(TENSOR_FILE_EXTENSIONS)}")
    if ext not in (".npz", ".pt") and (key is not None or label_key is not None):
        raise DataError(f"{path}: key/label_key apply to .npz and .pt files only; a {ext} file holds one table")
    if ext != ".csv" and label_column is not None:
        raise DataError(f"{path}: label_column applies to .csv files only; use label_key for .npz/.pt")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        data, labels = _TENSOR_READERS[ext](path, key=key, label_key=label_key, label_column=label_column)
    except DataError:
        raise
    except pickle.UnpicklingError as exc:  # torch.load's weights_only refusal, or not a pickle at all
        name = refused_global(exc)
        reason = f"refused: it refers to {name}; a .pt data file may hold only tensors and plain data" if name \
            else "not a pickle of tensors and plain data"
        raise DataError(f"{path}: cannot read as {ext} ({reason})") from None
    except Exception as exc:  # numpy, zipfile, pickle and torch each raise their own kinds
        raise DataError(f"{path}: cannot read as {ext} ({_one_line(exc)})") from exc
    x = _to_nchw(path, data)
    _check_finite(path, x)
    y = _to_labels(path, labels, len(x))
    # uint8 arrays are pixels 0..255 whatever their shape; other 2-D arrays are tables of features.
    value_range = (0.0, 255.0) if data.dtype == np.uint8 else (float(x.min()), float(x.max()))
    return RawData({"all": ArraySplit(x, y)}, value_range, tabular=data.ndim == 2 and data.dtype != np.uint8)


# --- Feature scaling, fit on the train split only --------------------------------------------

SCALE_MODES = ("none", "minmax", "standard")
_CONSTANT = 1e-8  # a range/std below this counts as a constant feature: divide by 1, not by ~0


def fit_scaler(x_train: torch.Tensor, mode: str, per_feature: bool = True,
               fixed_range: tuple[float, float] | None = None) -> dict:
    """Statistics of the TRAIN split, as plain floats (so they go into a checkpoint and load with
    weights_only=True): per feature (all dims after N) for tables; one for the whole array for
    images, whose pixels share one scale (per-pixel statistics would blow up near-constant border
    pixels). `fixed_range` (uint8 pixels: 0..255) replaces the fitted min/max."""
    if mode not in SCALE_MODES:
        raise ConfigError("scale", mode, f"one of {', '.join(SCALE_MODES)}")
    if mode == "none":
        return {"mode": "none"}
    flat = x_train.reshape(len(x_train), -1).double()
    if not per_feature:
        flat = flat.reshape(-1, 1)
    if mode == "minmax":
        if fixed_range is not None:
            return {"mode": "minmax", "min": [fixed_range[0]], "max": [fixed_range[1]]}
        return {"mode": "minmax", "min": flat.amin(0).tolist(), "max": flat.amax(0).tolist()}
    return {"mode": "standard", "mean": flat.mean(0).tolist(), "std": flat.std(0, correction=0).tolist()}


def apply_scaler(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """float32 x scaled by `fit_scaler` stats: minmax → [0, 1] on train, standard → mean 0, std 1.

    Constant features (range or std below _CONSTANT) are only shifted, so they become 0, not NaN.
    """
    if stats["mode"] == "none":
        return x.to(torch.float32)
    low, spread = ((stats["min"], np.subtract(stats["max"], stats["min"])) if stats["mode"] == "minmax"
                   else (stats["mean"], stats["std"]))
    flat = x.flatten(1).to(torch.float32)  # (N, features); unlike reshape(N, -1), also for an empty split
    if len(low) != 1 and flat.shape[1] != len(low):  # one statistic: the whole image
        raise DataError(f"data has {flat.shape[1]} features per example but the scaler was fit on {len(low)}")
    low = torch.as_tensor(low, dtype=torch.float32, device=x.device)
    spread = torch.as_tensor(spread, dtype=torch.float32, device=x.device)
    spread = torch.where(spread > _CONSTANT, spread, torch.ones_like(spread))
    return ((flat - low) / spread).reshape(x.shape)


# --- Image folders -----------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_PROGRESS_MIN_FILES = 300  # below this, decoding is quick enough that a bar is noise


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Image files by name; dot-files are skipped (macOS "._x.png" resource forks are not images)."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith(".") and p.is_file())


def list_image_folder(root) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """(files, labels, classes): images flat in root (no labels), or one sub-folder per class
    (label = index of the folder name in sorted order, as torchvision's ImageFolder)."""
    root = Path(root).expanduser()
    expected = f"a folder of {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images, flat or in one sub-folder per class"
    if not root.is_dir():
        raise DataError(f"{root}: folder does not exist; expected {expected}")
    flat = _images_in(root, recursive=False)
    per_class = {d.name: _images_in(d, recursive=True) for d in sorted(root.iterdir())
                 if d.is_dir() and not d.name.startswith(".")}
    per_class = {name: files for name, files in per_class.items() if files}
    if flat and per_class:
        raise DataError(f"{root}: holds images both at the top and in sub-folders ({next(iter(per_class))}/); "
                        f"expected {expected}, not both")
    if not flat and not per_class:
        raise DataError(f"{root}: no images found; expected {expected}")
    if flat:
        return flat, None, None
    files = [f for group in per_class.values() for f in group]
    labels = [i for i, group in enumerate(per_class.values()) for _ in group]
    return files, labels, list(per_class)


def _size_hw(size) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ConfigError("size", size, "a positive int or [height, width]")
    return hw


def _pil_mode(channels: int) -> str:
    if channels not in (1, 3):
        raise ConfigError("channels", channels, "1 (grayscale) or 3 (RGB)")
    return "L" if channels == 1 else "RGB"


def _decode_image(path: Path, size_hw: tuple[int, int], mode: str) -> torch.Tensor:
    """One image file → uint8 (C, H, W), converted to `mode` first so palettes resize smoothly."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft(mode, size_hw[::-1])  # JPEGs decode at a reduced scale (still >= size): much faster
            image = image.convert(mode).resize(size_hw[::-1], Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's ways to say "corrupt"
        raise DataError(f"{path}: cannot decode image ({_one_line(exc)}); remove or replace the file") from exc
    pixels = np.asarray(image, dtype=np.uint8).reshape(size_hw[0], size_hw[1], -1)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def _progress(items: list, desc: str):
    if len(items) < _PROGRESS_MIN_FILES:
        return items
    from aectl.progress import progress_bar

    return progress_bar(items, desc=desc, unit="img")


def load_image_folder(root, *, size, channels: int) -> RawData:
    """Every image under root (png/jpg/jpeg/bmp/gif/webp) decoded, resized, into one uint8 (N, C, H, W)."""
    files, labels, classes = list_image_folder(root)
    size_hw, mode = _size_hw(size), _pil_mode(channels)
    x = torch.empty((len(files), channels, *size_hw), dtype=torch.uint8)
    for i, path in enumerate(_progress(files, "decoding images")):
        x[i] = _decode_image(path, size_hw, mode)
    y = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    return RawData({"all": ArraySplit(x, y)}, (0.0, 255.0), classes)


def estimate_folder_bytes(n_files: int, size, channels: int) -> int:
    """Bytes the decoded uint8 tensor of `n_files` images would take (to choose memory or streaming)."""
    height, width = _size_hw(size)
    return n_files * channels * height * width


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
        last = text.strip().splitlines()[-1]  # the traceback's "aectl.errors.DataError: <message>"
        raise DataError(last.split("DataError: ", 1)[-1]) from None


class ImageFolderStream(Dataset):
    """The images of `load_image_folder`, decoded one per __getitem__, for folders larger than memory."""

    value_range = (0.0, 255.0)

    def __init__(self, root, *, size, channels: int):
        self.files, labels, self.classes = list_image_folder(root)
        self.labels = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        self.size_hw, self.mode = _size_hw(size), _pil_mode(channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 (C, H, W) image, int64 label); the label is -1 for a folder without classes."""
        label = self.labels[index] if self.labels is not None else torch.tensor(-1)
        return _decode_image(self.files[index], self.size_hw, self.mode), label
