"""A user's own numbers: .npy, .npz, .pt or .csv files, as one pool of examples."""

from __future__ import annotations

import csv
import functools
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from aectl.config.errors import DataError, refused_global
from aectl.datasets.raw import ArraySplit, RawData, existing_file, one_line

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
    """Comma-separated numbers; the label column may hold text (class names). A first row with
    text outside the label column (or naming it) is taken as the header."""
    with open(path, newline="") as f:
        first = next((row for row in csv.reader(f) if row), None)
    cells = [name.strip() for name in first] if first else []
    if not cells:
        raise DataError(f"{path}: no data rows; expected comma-separated numbers, one example per row")
    if isinstance(label_column, str):  # a name: the first row is the header
        header = cells if label_column in cells or not all(map(_is_number, cells)) else None
        column = _label_index(path, label_column, header, len(cells))
    else:
        column = None if label_column is None else _label_index(path, label_column, None, len(cells))
        header = cells if any(not _is_number(c) for i, c in enumerate(cells) if i != column) else None
    features = [i for i in range(len(cells)) if i != column]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a header-only file warns; the empty check says it
        read = functools.partial(np.loadtxt, path, delimiter=",", quotechar='"', skiprows=1 if header else 0, ndmin=2)
        table = read(dtype=np.float64, usecols=features or None)
        labels = None if column is None else read(dtype=str, usecols=[column])[:, 0]
    if table.size == 0:
        raise DataError(f"{path}: no data rows; expected comma-separated numbers, one example per row")
    return table, labels


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


def _text_labels(path: Path, labels: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Labels read as text: numbers stay numbers; otherwise each name is a class, numbered in
    sorted order (the names are kept for the plots and the projector)."""
    labels = np.char.strip(labels.astype(str))
    if (labels == "").any():
        raise DataError(f"{path}: {int((labels == '').sum())} rows have an empty label; give every row its class")
    if all(map(_is_number, labels.tolist())):
        return labels.astype(np.float64), None
    classes, index = np.unique(labels, return_inverse=True)
    return index.reshape(labels.shape), classes.tolist()


def _to_labels(path: Path, labels, n: int) -> tuple[torch.Tensor | None, list[str] | None]:
    """(N,) int64 labels, checked to be one whole number per example, and the class names of
    text labels (None for numbers)."""
    if labels is None:
        return None, None
    labels, classes = np.asarray(labels), None
    if labels.dtype.kind in "US":
        labels, classes = _text_labels(path, labels)
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{path}: labels have shape {labels.shape} for {n} examples; expected ({n},), one per example")
    whole = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.isfinite(labels).all() and (labels == np.round(labels)).all())
    if not whole:
        raise DataError(f"{path}: labels must be whole numbers (class indices) or class names; got dtype "
                        f"{labels.dtype}")
    return torch.from_numpy(labels.astype(np.int64)), classes


def load_tensor_file(path, *, key: str | None = None, label_key: str | None = None,
                     label_column: int | str | None = None) -> RawData:
    """Numbers from .npy / .npz / .pt / .csv as one "all" split of float32 (N, C, H, W).

    2-D (N, D) data becomes (N, 1, 1, D), 3-D (N, H, W) becomes (N, 1, H, W), 4-D is taken as
    (N, C, H, W). `key`/`label_key` pick arrays of an .npz or a dict in a .pt (defaults "x",
    or the first array, and "y" when present); `label_column` (name or index) picks a .csv column.
    """
    path = existing_file(path)
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
        raise DataError(f"{path}: cannot read as {ext} ({one_line(exc)})") from exc
    x = _to_nchw(path, data)
    _check_finite(path, x)
    y, classes = _to_labels(path, labels, len(x))
    # uint8 arrays are pixels 0..255 whatever their shape; other 2-D arrays are tables of features.
    value_range = (0.0, 255.0) if data.dtype == np.uint8 else (float(x.min()), float(x.max()))
    return RawData({"all": ArraySplit(x, y)}, value_range, classes, tabular=data.ndim == 2 and data.dtype != np.uint8)

