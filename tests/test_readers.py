"""Readers against tiny files written here in the real on-disk formats (offline, CPU, fast)."""

import contextlib
import gzip
import io
import json
import os
import pickle
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from aectl.datasets import (
    ImageFolderStream,
    amat,
    apply_scaler,
    estimate_folder_bytes,
    fit_scaler,
    image_folder,
    load_binarized_mnist,
    load_cifar10,
    load_image_folder,
    load_mnist_family,
    load_tensor_file,
    read_idx,
)
from aectl.config.errors import ConfigError, DataError


@contextlib.contextmanager
def raises_one_line(match):
    """pytest.raises(DataError, match=...) that also checks the message is a single line."""
    with pytest.raises(DataError, match=match) as info:
        yield info
    assert "\n" not in str(info.value)


# --- IDX / MNIST family ---------------------------------------------------------------------

IDX_TYPES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, gz=None):
    """IDX as LeCun describes it: 00 00 type ndim, big-endian int32 dims, big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_TYPES[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    gz = str(path).endswith(".gz") if gz is None else gz
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(body)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_every_type(tmp_path, dtype, suffix):
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else (-1e3, 1e3)
    array = np.linspace(low, high, 24).astype(dtype).reshape(2, 3, 4)  # extremes: byte order matters
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.numpy(), array)  # big-endian decoded to native values


def test_read_idx_errors(tmp_path):
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with raises_one_line(r"bad: not an IDX file .*expected 00 00"):
        read_idx(bad_magic)
    truncated = tmp_path / "short"
    write_idx(truncated, np.zeros((4, 2, 2), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with raises_one_line(r"short: IDX header says shape \(4, 2, 2\).*truncated"):
        read_idx(truncated)
    cut_header = tmp_path / "cut"
    cut_header.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with raises_one_line(r"cut: IDX header announces 3 dimensions"):
        read_idx(cut_header)
    not_gzip = tmp_path / "x-ubyte.gz"
    not_gzip.write_bytes(b"plain bytes")
    with raises_one_line(r"x-ubyte.gz: cannot read file"):
        read_idx(not_gzip)
    with raises_one_line(r"nothing: file does not exist"):
        read_idx(tmp_path / "nothing")


def write_mnist_layout(root, folder, n_train=5, n_test=3, gz=True):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_family_reads_torchvision_layout(tmp_path, name, folder, gz):
    arrays = write_mnist_layout(tmp_path, folder, gz=gz)
    data = load_mnist_family(tmp_path, name, download=False)
    assert set(data.splits) == {"train", "test"}
    assert data.value_range == (0.0, 255.0) and len(data.classes) == 10
    for split, prefix, n in (("train", "train", 5), ("test", "t10k", 3)):
        x, y = data.splits[split].x, data.splits[split].y
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.uint8
        assert y.dtype == torch.int64 and y.tolist() == list(range(n))
        np.testing.assert_array_equal(x[:, 0].numpy(), arrays[prefix][0])


def test_load_mnist_family_missing_files(tmp_path):
    with raises_one_line(r"mnist: .*train-images-idx3-ubyte.*not found in .*MNIST/raw and download is off; "
                         r"set dataset.download=true or point dataset.root at .*MNIST/raw/"):
        load_mnist_family(tmp_path, "mnist", download=False)
    with raises_one_line(r"unknown MNIST-family dataset 'emnist'; expected one of mnist, fashion_mnist, kmnist"):
        load_mnist_family(tmp_path, "emnist")


def test_load_mnist_family_failed_download_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nmore detail")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with raises_one_line(r"download of FashionMNIST into .* failed \(Error downloading train-images.*\); "
                         r"without network, .*point dataset.root at .*FashionMNIST/raw/"):
        load_mnist_family(tmp_path, "fashion_mnist", download=True)


def test_load_mnist_family_label_count_mismatch(tmp_path):
    write_mnist_layout(tmp_path, "MNIST")
    write_idx(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with raises_one_line(r"t10k-labels-idx1-ubyte.gz: holds labels of shape \(2,\); expected \(3,\)"):
        load_mnist_family(tmp_path, "mnist")


# --- CIFAR-10 -----------------------------------------------------------------------------------

def write_cifar_batch(path, n, seed, protocol=pickle.DEFAULT_PROTOCOL):
    """A batch as CIFAR's own files: bytes keys, uint8 (N, 3072) data, a list of int labels."""
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"testing batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in rng.integers(0, 10, n)], b"filenames": [b"f.png"] * n}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return batch


def write_cifar_layout(root, protocol=pickle.DEFAULT_PROTOCOL):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    train = [write_cifar_batch(base / f"data_batch_{i}", 2, i, protocol) for i in range(1, 6)]
    test = write_cifar_batch(base / "test_batch", 3, 9, protocol)
    return train, test


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_load_cifar10(tmp_path, protocol):
    train, test = write_cifar_layout(tmp_path, protocol)
    data = load_cifar10(tmp_path, download=False)
    x, y = data.splits["train"].x, data.splits["train"].y
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.tolist() == [label for b in train for label in b[b"labels"]]
    row = train[0][b"data"][1]  # each row is the R, G, B planes, row-major
    np.testing.assert_array_equal(x[1, 0].numpy(), row[:1024].reshape(32, 32))
    np.testing.assert_array_equal(x[1, 2].numpy(), row[2048:].reshape(32, 32))
    assert data.splits["test"].x.shape == (3, 3, 32, 32) and data.splits["test"].y.tolist() == test[b"labels"]
    assert data.value_range == (0.0, 255.0) and data.classes[0] == "airplane"


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar_malicious_pickle_is_refused_without_running(tmp_path):
    write_cifar_layout(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py/data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(marker), b"labels": []}, f)
    with raises_one_line(r"data_batch_3: pickle refers to (posix|nt|os)\.system; refused"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar_errors(tmp_path, monkeypatch):
    with raises_one_line(r"cifar10: data_batch_1.*test_batch not found in .*download is off; .*point dataset.root"):
        load_cifar10(tmp_path)
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with raises_one_line(r"download of CIFAR10 into .* failed \(.*Name or service.*\); without network, "
                         r".*cifar-10-batches-py/"):
        load_cifar10(tmp_path, download=True)
    write_cifar_layout(tmp_path)
    with open(tmp_path / "cifar-10-batches-py/test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with raises_one_line(r"test_batch: 'data' is uint8 \(2, 100\); expected a uint8 array of shape \(N, 3072\)"):
        load_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py/test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
    with raises_one_line(r"test_batch: 'labels' has 1 entries; expected 2"):
        load_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/test_batch").write_bytes(b"\x80\x04garbage")
    with raises_one_line(r"test_batch: not a readable CIFAR-10 batch"):
        load_cifar10(tmp_path)


# --- Binarized MNIST --------------------------------------------------------------------------

def amat_text(rows):
    return "".join(" ".join(str(v) for v in row) + "\n" for row in rows)


def write_amat_layout(folder, sizes=(4, 2, 3)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    written = {}
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        written[split] = rng.integers(0, 2, (n, 784))
        (folder / f"binarized_mnist_{split}.amat").write_text(amat_text(written[split]))
    return written


@pytest.mark.parametrize("subfolder", ["binarized_mnist", ""])
def test_load_binarized_mnist(tmp_path, subfolder):
    written = write_amat_layout(tmp_path / subfolder)
    data = load_binarized_mnist(tmp_path, download=False)
    assert set(data.splits) == {"train", "valid", "test"} and data.value_range == (0.0, 1.0)
    x = data.splits["valid"].x
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.uint8 and data.splits["valid"].y is None
    np.testing.assert_array_equal(x.reshape(2, 784).numpy(), written["valid"])
    assert data.splits["train"].x.shape[0] == 4 and data.splits["test"].x.shape[0] == 3


def test_binarized_mnist_bad_rows(tmp_path):
    folder = tmp_path / "binarized_mnist"
    write_amat_layout(folder)
    train = folder / "binarized_mnist_train.amat"
    train.write_text(amat_text(np.zeros((2, 783), int)))
    with raises_one_line(r"binarized_mnist_train.amat: rows have 783 values; expected rows of 784"):
        load_binarized_mnist(tmp_path)
    train.write_text(amat_text([[0] * 784, [0] * 780]))
    with raises_one_line(r"binarized_mnist_train.amat: cannot parse .*; expected rows of 784"):
        load_binarized_mnist(tmp_path)
    train.write_text(amat_text([[0] * 783 + [2]]))
    with raises_one_line(r"binarized_mnist_train.amat: holds values up to 2; expected rows of 784 space-separated 0/1"):
        load_binarized_mnist(tmp_path)
    train.write_text("")
    with raises_one_line(r"binarized_mnist_train.amat: file is empty"):
        load_binarized_mnist(tmp_path)


def test_binarized_mnist_missing_and_offline(tmp_path, monkeypatch):
    with raises_one_line(r"binarized_mnist_train.amat not found in .* and download is off; set dataset.download=true"):
        load_binarized_mnist(tmp_path, download=False)

    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with raises_one_line(r"download of http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
                         r"binarized_mnist_train.amat failed \(.*Name or service.*\); without network"):
        load_binarized_mnist(tmp_path, download=True)
    assert not list(tmp_path.rglob("*.part"))


def test_binarized_mnist_download_saves_files(tmp_path, monkeypatch):
    rows = {"train": [[1] * 784], "valid": [[0] * 784], "test": [[0, 1] * 392] * 2}
    seen = []

    def serve(url, timeout):
        assert timeout > 0
        seen.append(url)
        split = url.rsplit("_", 1)[1].removesuffix(".amat")
        return io.BytesIO(amat_text(rows[split]).encode())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    data = load_binarized_mnist(tmp_path, download=True)
    assert seen == [amat.BINARIZED_MNIST_URL.format(split=s) for s in ("train", "valid", "test")]
    assert (tmp_path / "binarized_mnist/binarized_mnist_test.amat").is_file()
    assert data.splits["test"].x.shape == (2, 1, 28, 28) and int(data.splits["train"].x.sum()) == 784


# --- Tensor files -------------------------------------------------------------------------------

def test_npy_shapes_become_nchw(tmp_path):
    for shape, expected in (((5, 7), (5, 1, 1, 7)), ((5, 4, 6), (5, 1, 4, 6)), ((5, 2, 4, 6), (5, 2, 4, 6))):
        array = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) - 3
        np.save(tmp_path / "a.npy", array)
        data = load_tensor_file(tmp_path / "a.npy")
        x = data.splits["all"].x
        assert x.shape == expected and x.dtype == torch.float32 and data.splits["all"].y is None
        assert data.value_range == (-3.0, float(array.max()))
        np.testing.assert_array_equal(x.reshape(shape).numpy(), array)


def test_npz_default_and_named_keys(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    split = load_tensor_file(tmp_path / "xy.npz").splits["all"]
    assert split.x.shape == (6, 1, 1, 3) and split.y.dtype == torch.int64 and split.y.tolist() == list(range(6))
    np.savez(tmp_path / "named.npz", features=x, target=y.astype(np.float64), other=np.zeros(2))
    split = load_tensor_file(tmp_path / "named.npz", key="features", label_key="target").splits["all"]
    np.testing.assert_allclose(split.x.reshape(6, 3).numpy(), x, rtol=1e-6)
    assert split.y.tolist() == list(range(6))
    np.savez(tmp_path / "one.npz", data=x)
    assert load_tensor_file(tmp_path / "one.npz").splits["all"].y is None
    with raises_one_line(r"named.npz: no array named 'x2' \(key\); the file holds \['features', 'other', 'target'\]"):
        load_tensor_file(tmp_path / "named.npz", key="x2")
    with raises_one_line(r"no array named 'labels' \(label_key\)"):
        load_tensor_file(tmp_path / "named.npz", label_key="labels")


def test_pt_tensor_and_dict(tmp_path):
    x = torch.rand(4, 8, 8)
    torch.save(x, tmp_path / "t.pt")
    assert load_tensor_file(tmp_path / "t.pt").splits["all"].x.shape == (4, 1, 8, 8)
    torch.save({"x": x.to(torch.bfloat16), "y": torch.tensor([3, 1, 2, 0])}, tmp_path / "d.pt")
    split = load_tensor_file(tmp_path / "d.pt").splits["all"]
    assert split.x.dtype == torch.float32 and split.y.tolist() == [3, 1, 2, 0]
    torch.save({"x": x, "meta": "text"}, tmp_path / "bad.pt")
    with raises_one_line(r"bad.pt: entry 'meta' is a str; expected a tensor"):
        load_tensor_file(tmp_path / "bad.pt", key="meta")
    torch.save([x], tmp_path / "list.pt")
    with raises_one_line(r"list.pt: holds a list; expected a tensor or a non-empty dict of tensors"):
        load_tensor_file(tmp_path / "list.pt")


def test_pt_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(Evil(marker), tmp_path / "evil.pt")
    with raises_one_line(r"evil.pt: cannot read as .pt"):
        load_tensor_file(tmp_path / "evil.pt")
    assert not marker.exists()


def test_csv_header_and_label_column(tmp_path):
    (tmp_path / "h.csv").write_text("a, b ,label,c\n1,2,0,3\n4,5,1,6\n\n7,8,1,9\n")
    split = load_tensor_file(tmp_path / "h.csv", label_column="label").splits["all"]
    assert split.x.shape == (3, 1, 1, 3) and split.y.tolist() == [0, 1, 1]
    assert split.x[2].flatten().tolist() == [7, 8, 9]
    (tmp_path / "n.csv").write_text("1,2,5\n3,4,6\n")
    split = load_tensor_file(tmp_path / "n.csv", label_column=-1).splits["all"]
    assert split.x.reshape(2, 2).tolist() == [[1, 2], [3, 4]] and split.y.tolist() == [5, 6]
    assert load_tensor_file(tmp_path / "n.csv").splits["all"].x.shape == (2, 1, 1, 3)
    with raises_one_line(r"h.csv: no column named 'y' \(label_column\); the columns are \['a', 'b', 'label', 'c'\]"):
        load_tensor_file(tmp_path / "h.csv", label_column="y")
    with raises_one_line(r"n.csv: no column named 'label' \(label_column\); the file has no header row"):
        load_tensor_file(tmp_path / "n.csv", label_column="label")
    with raises_one_line(r"label_column=3 is out of range; the file has 3 columns"):
        load_tensor_file(tmp_path / "n.csv", label_column=3)
    (tmp_path / "half.csv").write_text("1,2,0.5\n3,4,1\n")
    with raises_one_line(r"half.csv: labels must be whole numbers"):
        load_tensor_file(tmp_path / "half.csv", label_column=2)


def test_csv_text_labels_are_classes_in_sorted_order(tmp_path):
    """A label column of names: each name is a class, numbered in sorted order, the names kept."""
    (tmp_path / "named.csv").write_text("f1,f2,label\n1,2,b\n3,4, a\n5,6,c\n7,8,b\n")
    raw = load_tensor_file(tmp_path / "named.csv", label_column="label")
    assert raw.classes == ["a", "b", "c"] and raw.splits["all"].y.tolist() == [1, 0, 2, 1]
    assert raw.splits["all"].x.reshape(4, 2).tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    (tmp_path / "headless.csv").write_text("cat,1,2\ndog,3,4\n")  # no header: the first row is data
    raw = load_tensor_file(tmp_path / "headless.csv", label_column=0)
    assert raw.classes == ["cat", "dog"] and raw.splits["all"].y.tolist() == [0, 1]
    assert raw.splits["all"].x.shape == (2, 1, 1, 2)
    assert load_tensor_file(tmp_path / "headless.csv", label_column=0).classes == ["cat", "dog"]
    (tmp_path / "numbers.csv").write_text("x,y\n1,2\n3,0\n")  # number labels stay numbers, no names
    raw = load_tensor_file(tmp_path / "numbers.csv", label_column="y")
    assert raw.classes is None and raw.splits["all"].y.tolist() == [2, 0]
    (tmp_path / "gap.csv").write_text("1,2,a\n3,4,\n")
    with raises_one_line(r"gap.csv: 1 rows have an empty label"):
        load_tensor_file(tmp_path / "gap.csv", label_column=-1)
    (tmp_path / "text_feature.csv").write_text("1,2,a\n3,x,b\n")  # text outside the label column: one line
    with raises_one_line(r"text_feature.csv: cannot read as .csv"):
        load_tensor_file(tmp_path / "text_feature.csv", label_column=-1)


def test_tensor_file_errors(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [np.inf, 2.0], [0.0, np.nan]]))
    with raises_one_line(r"nan.npy: 3 NaN/inf values in the data \(of 6\); remove or impute them first"):
        load_tensor_file(tmp_path / "nan.npy")
    np.save(tmp_path / "one_d.npy", np.zeros(5))
    with raises_one_line(r"one_d.npy: data has shape \(5,\) \(1-D\); expected \(N, D\), \(N, H, W\) or \(N, C, H, W\)"):
        load_tensor_file(tmp_path / "one_d.npy")
    np.save(tmp_path / "five_d.npy", np.zeros((1, 1, 1, 1, 2)))
    with raises_one_line(r"five_d.npy: data has shape \(1, 1, 1, 1, 2\) \(5-D\)"):
        load_tensor_file(tmp_path / "five_d.npy")
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((4, 2)), y=np.arange(3))
    with raises_one_line(r"mismatch.npz: labels have shape \(3,\) for 4 examples; expected \(4,\)"):
        load_tensor_file(tmp_path / "mismatch.npz")
    (tmp_path / "empty.csv").write_text("")
    with raises_one_line(r"empty.csv: file is empty"):
        load_tensor_file(tmp_path / "empty.csv")
    (tmp_path / "header_only.csv").write_text("a,b\n")
    with raises_one_line(r"header_only.csv: no data rows"):
        load_tensor_file(tmp_path / "header_only.csv")
    np.save(tmp_path / "no_rows.npy", np.zeros((0, 3)))
    with raises_one_line(r"no_rows.npy: data has shape \(0, 3\), no values"):
        load_tensor_file(tmp_path / "no_rows.npy")
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with raises_one_line(r"data.parquet: unknown extension '.parquet'; expected one of .npy, .npz, .pt, .csv"):
        load_tensor_file(tmp_path / "data.parquet")
    (tmp_path / "junk.npy").write_bytes(b"this is not numpy")
    with raises_one_line(r"junk.npy: cannot read as .npy"):
        load_tensor_file(tmp_path / "junk.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with raises_one_line(r"objects.npy: cannot read as .npy"):
        load_tensor_file(tmp_path / "objects.npy")
    (tmp_path / "words.csv").write_text("1,2\n3,abc\n")
    with raises_one_line(r"words.csv: cannot read as .csv \(.*abc"):
        load_tensor_file(tmp_path / "words.csv")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with raises_one_line(r"text.npy: data has dtype <U1; expected integers or floats"):
        load_tensor_file(tmp_path / "text.npy")
    with raises_one_line(r"missing.npy: file does not exist"):
        load_tensor_file(tmp_path / "missing.npy")
    with raises_one_line(r"key/label_key apply to .npz and .pt files only"):
        load_tensor_file(tmp_path / "nan.npy", key="x")
    with raises_one_line(r"label_column applies to .csv files only"):
        load_tensor_file(tmp_path / "nan.npy", label_column=0)


# --- Scaling ------------------------------------------------------------------------------------

def test_minmax_scaler_uses_train_stats_and_guards_constants():
    train = torch.tensor([[0.0, 5.0, 10.0], [2.0, 5.0, 30.0], [4.0, 5.0, 20.0]]).reshape(3, 1, 1, 3)
    stats = fit_scaler(train, "minmax")
    json.dumps(stats)  # plain python data: fits in a checkpoint
    scaled = apply_scaler(train, stats)
    assert scaled.shape == train.shape and scaled.dtype == torch.float32
    assert scaled.amin().item() == 0.0 and scaled.amax().item() == 1.0
    assert scaled[..., 1].eq(0).all()  # constant feature: 0, not NaN
    test = apply_scaler(torch.tensor([[8.0, 6.0, 40.0]]).reshape(1, 1, 1, 3), stats)
    assert test.flatten().tolist() == [2.0, 1.0, 1.5]  # train range, so test may leave [0, 1]


def test_standard_scaler_and_none():
    train = torch.randn(200, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 4 + 7
    train[:, 0, 0, 0] = 3.0
    stats = fit_scaler(train, "standard")
    assert set(stats) == {"mode", "mean", "std"} and len(stats["mean"]) == 18
    assert all(isinstance(v, float) for v in stats["std"])
    scaled = apply_scaler(train, stats).reshape(200, -1)
    torch.testing.assert_close(scaled[:, 1:].mean(0), torch.zeros(17), atol=1e-5, rtol=0)
    torch.testing.assert_close(scaled[:, 1:].std(0, correction=0), torch.ones(17), atol=1e-5, rtol=0)
    assert scaled[:, 0].eq(0).all()
    assert fit_scaler(train, "none") == {"mode": "none"}
    assert torch.equal(apply_scaler(train, {"mode": "none"}), train)
    with pytest.raises(ConfigError, match=r"scale='zscore' is not allowed: one of none, minmax, standard"):
        fit_scaler(train, "zscore")
    with raises_one_line(r"data has 4 features per example but the scaler was fit on 18"):
        apply_scaler(torch.zeros(2, 4), stats)


# --- Image folders -------------------------------------------------------------------------------

def write_image(path, color, size=(12, 9), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_with_classes(tmp_path):
    write_image(tmp_path / "dogs/a.png", (255, 0, 0))
    write_image(tmp_path / "dogs/nested/b.JPG", (0, 255, 0), size=(30, 20))
    write_image(tmp_path / "cats/c.bmp", (0, 0, 255))
    write_image(tmp_path / "cats/d.gif", 0, mode="P")
    write_image(tmp_path / "cats/e.webp", (10, 20, 30))
    (tmp_path / "cats/._e.png").write_bytes(b"resource fork, not an image")
    (tmp_path / "cats/notes.txt").write_text("ignored")
    (tmp_path / "empty_class").mkdir()
    data = load_image_folder(tmp_path, size=8, channels=3)
    split = data.splits["all"]
    assert data.classes == ["cats", "dogs"] and data.value_range == (0.0, 255.0)
    assert split.x.shape == (5, 3, 8, 8) and split.x.dtype == torch.uint8
    assert split.y.tolist() == [0, 0, 0, 1, 1]
    assert split.x[3, :, 0, 0].tolist() == [255, 0, 0]  # dogs/a.png, red, channels first
    gray = load_image_folder(tmp_path, size=(6, 10), channels=1).splits["all"].x
    assert gray.shape == (5, 1, 6, 10)
    assert gray[3, 0, 0, 0].item() == 76  # ITU-R 601-2 luma of pure red, as PIL converts


def test_image_folder_flat_and_stream_match(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (10 + i, 7, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(image_folder, "_PROGRESS_MIN_FILES", 2)  # exercise the progress-bar path too
    data = load_image_folder(tmp_path, size=(5, 4), channels=3)
    assert data.classes is None and data.splits["all"].y is None
    stream = ImageFolderStream(tmp_path, size=(5, 4), channels=3)
    assert len(stream) == 4 and stream.classes is None
    for i in range(4):
        image, label = stream[i]
        assert torch.equal(image, data.splits["all"].x[i]) and label.item() == -1
    assert estimate_folder_bytes(4, (5, 4), 3) == data.splits["all"].x.numel()
    assert estimate_folder_bytes(1000, 28, 1) == 784_000


def test_image_stream_labels(tmp_path):
    write_image(tmp_path / "b/x.png", (1, 2, 3))
    write_image(tmp_path / "a/y.png", (4, 5, 6))
    stream = ImageFolderStream(tmp_path, size=4, channels=1)
    loaded = load_image_folder(tmp_path, size=4, channels=1).splits["all"]
    assert stream.classes == ["a", "b"]
    assert [stream[i][1].item() for i in range(2)] == loaded.y.tolist() == [0, 1]
    assert torch.equal(torch.stack([stream[i][0] for i in range(2)]), loaded.x)


def test_image_folder_errors(tmp_path):
    with raises_one_line(r"nope: folder does not exist; expected a folder of png/jpg/jpeg/bmp/gif/webp images"):
        load_image_folder(tmp_path / "nope", size=8, channels=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("no images here")
    with raises_one_line(r"empty: no images found; expected a folder of"):
        load_image_folder(tmp_path / "empty", size=8, channels=1)
    write_image(tmp_path / "bad/ok.png", (0, 0, 0))
    (tmp_path / "bad/broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with raises_one_line(r"broken.jpg: cannot decode image .*; remove or replace the file"):
        load_image_folder(tmp_path / "bad", size=8, channels=1)
    with raises_one_line(r"broken.jpg: cannot decode image"):
        ImageFolderStream(tmp_path / "bad", size=8, channels=1)[0]
    write_image(tmp_path / "mixed/top.png", (0, 0, 0))
    write_image(tmp_path / "mixed/cls/inner.png", (0, 0, 0))
    with raises_one_line(r"mixed: holds images both at the top and in sub-folders \(cls/\)"):
        load_image_folder(tmp_path / "mixed", size=8, channels=1)
    with pytest.raises(ConfigError, match=r"channels=2 is not allowed"):
        load_image_folder(tmp_path / "bad", size=8, channels=2)
    with pytest.raises(ConfigError, match=r"size=\[8, 0\] is not allowed"):
        load_image_folder(tmp_path / "bad", size=[8, 0], channels=1)
