"""Every dataset option through `load_dataset` and `aectl train`, on tiny files written here in
the real on-disk formats (offline, CPU): shapes, ranges, labels, splits, binarization, scaling
stored in the checkpoint, streamed image folders, and one-line errors for bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from aectl import datasets as data_mod
from aectl.cli import main
from aectl.config import option_fields
from aectl.config.errors import ConfigError, DataError
from aectl.datasets import StreamedSplit, load_dataset
from aectl.runs.checkpoint import load_checkpoint
from tests.conftest import read_metrics
from tests.test_readers import write_amat_layout, write_cifar_layout, write_image, write_mnist_layout

ONE_EPOCH = ("trainer.epochs=1", "trainer.log_every=1")


def run_error(tmp_path, capsys, *overrides: str) -> str:
    """`aectl train` that must fail on input: exit code 2 and one line on stderr, no traceback."""
    rc = main(["train", *overrides, f"hydra.run.dir={tmp_path / 'failed'}", "trainer.progress=false",
               "trainer.device=cpu", *ONE_EPOCH])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aectl train: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- Datasets with files of their own ---------------------------------------------------------

@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_keeps_test_and_carves_val_from_train(tmp_path, name, folder):
    arrays = write_mnist_layout(tmp_path, folder, n_train=20, n_test=6)
    data = load_dataset(name, root=str(tmp_path), download=False, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 6)
    assert data.train.shape[1:] == (1, 28, 28) and data.train.dtype == torch.uint8
    assert data.scale == pytest.approx(1 / 255) and data.value_range() == (0.0, 1.0)
    assert len(data.classes) == 10
    np.testing.assert_array_equal(data.test[:, 0].numpy(), arrays["t10k"][0])  # the dataset's own test split
    train_images = {row.tobytes(): label for row, label in zip(*arrays["train"])}
    for x, y in ((data.train, data.train_labels), (data.val, data.val_labels)):
        assert [train_images[row.tobytes()] for row in x[:, 0].numpy()] == y.tolist()  # labels follow images
    rows = [r.tobytes() for r in torch.cat([data.train, data.val])[:, 0].numpy()]
    assert len(rows) == 20 and set(rows) == set(train_images)  # train + val = the 20 training images, none twice


def test_mnist_trains_through_cli_and_limit_cuts_train_only(tmp_path, train_run):
    write_mnist_layout(tmp_path, "MNIST", n_train=20, n_test=6)
    run = train_run("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false", "dataset.limit=7",
                    "model=ae", *ONE_EPOCH)
    ckpt = load_checkpoint(run)
    assert ckpt["model"]["kwargs"]["input_shape"] == [1, 28, 28]
    assert ckpt["data"]["scale"] == pytest.approx(1 / 255)
    assert ckpt["step"] == 1  # 7 examples, batch 128: one step
    metrics = read_metrics(run)
    assert metrics["steps"] == 1 and np.isfinite(metrics["test"]["loss"])


def test_cifar10_through_cli(tmp_path, train_run):
    train_batches, test_batch = write_cifar_layout(tmp_path)  # 5 batches of 2, a test batch of 3
    data = load_dataset("cifar10", root=str(tmp_path), download=False, val_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 3)
    assert data.train.shape[1:] == (3, 32, 32) and data.train.dtype == torch.uint8
    assert data.test_labels.tolist() == test_batch[b"labels"]
    assert data.classes[0] == "airplane" and data.value_range()[1] <= 1.0
    run = train_run("dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false", "model=vae",
                    "model.arch=conv", "model.conv_channels=[4]", "model.hidden_dims=[8]", *ONE_EPOCH)
    assert load_checkpoint(run)["model"]["kwargs"]["input_shape"] == [3, 32, 32]


def test_binarized_mnist_uses_its_own_three_splits(tmp_path, train_run):
    written = write_amat_layout(tmp_path / "binarized_mnist")  # 4 / 2 / 3 rows
    data = load_dataset("binarized_mnist", root=str(tmp_path), download=False)
    assert (len(data.train), len(data.val), len(data.test)) == (4, 2, 3)
    assert data.scale == 1.0 and data.train_labels is None
    np.testing.assert_array_equal(data.as_float(data.val).flatten(1).numpy(), written["valid"])
    run = train_run("dataset=binarized_mnist", f"dataset.root={tmp_path}", "dataset.download=false",
                    "model=vae", "model.likelihood=bernoulli", *ONE_EPOCH)
    assert np.isfinite(read_metrics(run)["test"]["loss"])


def test_default_root_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_mod.default_data_root() == tmp_path / "aectl" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(data_mod.default_data_root()).endswith(".cache/aectl/data")


# --- Binarization -------------------------------------------------------------------------------

def grey_mnist(tmp_path):
    write_mnist_layout(tmp_path, "MNIST", n_train=40, n_test=10)
    return dict(root=str(tmp_path), download=False)


def test_threshold_binarizes_every_split_at_half(tmp_path):
    opts = grey_mnist(tmp_path)
    grey, binary = load_dataset("mnist", **opts), load_dataset("mnist", binarize="threshold", **opts)
    for name in ("train", "val", "test"):
        expected = (getattr(grey, name).float() / 255 > 0.5).float()
        assert torch.equal(binary.as_float(getattr(binary, name)), expected)


def test_dynamic_draws_train_anew_and_fixes_val_test(tmp_path):
    opts = grey_mnist(tmp_path)
    grey, data = load_dataset("mnist", **opts), load_dataset("mnist", binarize="dynamic", **opts)
    assert torch.equal(data.train, grey.train)  # train stays grey: each batch is a fresh draw
    draws = torch.stack([data.as_float(data.train) for _ in range(200)])
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(draws[0], draws[1])
    assert (draws.mean(0) - grey.as_float(grey.train)).abs().max() < 0.15  # E[draw] = grey level
    again = load_dataset("mnist", binarize="dynamic", **opts)
    for name in ("val", "test"):  # one fixed-seed draw: the same numbers every run and every epoch
        split = getattr(data, name)
        assert set(split.unique().tolist()) == {0, 255}
        assert torch.equal(split, getattr(again, name))
        assert torch.equal(data.as_float(split), data.as_float(split))


def test_dynamic_binarization_trains_through_cli(tmp_path, train_run):
    opts = grey_mnist(tmp_path)
    run = train_run("experiment=mnist_vae", f"dataset.root={opts['root']}", "dataset.download=false",
                    "model.hidden_dims=[16]", "model.latent_dim=4", "lr_schedule.warmup_steps=0", *ONE_EPOCH)
    ckpt = load_checkpoint(run)
    assert ckpt["data"]["binarize"] == "dynamic" and ckpt["model"]["kwargs"]["likelihood"] == "bernoulli"
    assert np.isfinite(read_metrics(run)["test"]["loss"])


# --- Tensor files -----------------------------------------------------------------------------

def table(n=50, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(3.0, 2.0, (n, d))).astype(np.float32), (np.arange(n) % 3)


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt", "csv"])
def test_tensor_file_formats_give_the_same_splits(tmp_path, fmt):
    x, y = table()
    path = tmp_path / f"data.{fmt}"
    extra = {}
    if fmt == "npy":
        np.save(path, x)
    elif fmt == "npz":
        np.savez(path, features=x, y=y)
        extra = dict(key="features")
    elif fmt == "pt":
        torch.save({"x": torch.from_numpy(x), "target": torch.from_numpy(y)}, path)
        extra = dict(label_key="target")
    else:
        rows = ["a,b,c,label,d,e,f"] + [",".join(map(repr, [*r[:3].tolist(), int(t), *r[3:].tolist()]))
                                        for r, t in zip(x, y)]
        path.write_text("\n".join(rows) + "\n")
        extra = dict(label_column="label")
    data = load_dataset("tensor_file", path=str(path), val_fraction=0.2, test_fraction=0.2, **extra)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 10)
    assert data.train.shape[1:] == (1, 1, 6) and data.train.dtype == torch.float32
    flat = data.train.flatten(1)
    assert torch.allclose(flat.min(0).values, torch.zeros(6)) and torch.allclose(flat.max(0).values, torch.ones(6))
    assert data.scaler["mode"] == "minmax" and len(data.scaler["min"]) == 6
    low, high = torch.tensor(data.scaler["min"]), torch.tensor(data.scaler["max"])
    rows = data.train.flatten(1) * (high - low) + low  # undo the scaling: back to the file's rows
    index = torch.cdist(rows.double(), torch.from_numpy(x).double()).argmin(1)
    assert torch.allclose(rows, torch.from_numpy(x)[index], atol=1e-4)
    if fmt == "npy":
        assert data.train_labels is None
    else:  # labels travel with their rows through the seeded split
        assert data.train_labels.tolist() == y[index.numpy()].tolist()


def test_tensor_file_scaler_fits_train_only_and_is_stored_for_eval(tmp_path, train_run):
    x, _ = table(n=40)
    x[:, 0] += np.arange(40) * 10  # a trend: train-only stats differ from all-data stats
    np.save(tmp_path / "x.npy", x)
    opts = dict(path=str(tmp_path / "x.npy"), scale="standard")
    data = load_dataset("tensor_file", **opts)
    flat = data.train.flatten(1).double()
    assert torch.allclose(flat.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(flat.std(0, correction=0), torch.ones(6, dtype=torch.float64), atol=1e-5)
    assert data.test.flatten(1).double().mean(0).abs().max() > 1e-3  # test is transformed, not refit
    run = train_run("dataset=tensor_file", f"dataset.path={opts['path']}", "dataset.scale=standard",
                    "model=stacked_ae", "model.likelihood=gaussian", "model.output_activation=identity",
                    "model.hidden_dims=[8]", "model.latent_dim=2", *ONE_EPOCH)
    stored = load_checkpoint(run)["data"]["scaler"]
    assert stored == data.scaler  # plain data in the checkpoint
    shifted = x.copy()
    shifted[:, 0] += 1000  # new data to score: the stored transform applies, nothing is refit
    np.save(tmp_path / "x.npy", shifted)
    again = load_dataset("tensor_file", scaler=stored, **opts)
    std0 = stored["std"][0]
    assert torch.allclose(again.train[:, 0, 0, 0] - data.train[:, 0, 0, 0],
                          torch.full((len(data.train),), 1000 / std0), atol=1e-3)


# --- Image folders ----------------------------------------------------------------------------

def image_folder(tmp_path, n_per_class=6):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        for i in range(n_per_class):
            write_image(root / cls / f"{i}.png", tuple(int(v) for v in rng.integers(0, 256, 3)))
    return root


def test_image_folder_in_memory_and_streamed_agree(tmp_path):
    root = image_folder(tmp_path)
    opts = dict(path=str(root), size=[5, 7], channels=3, val_fraction=0.25, test_fraction=0.25)
    memory = load_dataset("image_folder", in_memory="auto", **opts)  # 12 tiny images fit
    streamed = load_dataset("image_folder", in_memory=False, workers=0, **opts)
    assert isinstance(streamed.train, StreamedSplit) and not isinstance(memory.train, StreamedSplit)
    assert memory.train.shape == streamed.train.shape == (6, 3, 5, 7)
    assert memory.classes == streamed.classes == ["cats", "dogs"]
    assert torch.equal(memory.train_labels, streamed.train_labels)
    for name in ("train", "val", "test"):
        in_memory = torch.cat(list(memory.batches(getattr(memory, name), 4)))
        from_files = torch.cat(list(streamed.batches(getattr(streamed, name), 4)))
        assert torch.equal(in_memory, from_files)
        assert 0.0 <= float(from_files.min()) and float(from_files.max()) <= 1.0
    assert torch.equal(streamed.val[:2], memory.val[:2])  # slicing decodes a few (image logs)


def test_image_folder_auto_streams_when_it_does_not_fit(tmp_path, monkeypatch):
    root = image_folder(tmp_path)
    monkeypatch.setattr(data_mod.load, "available_memory_bytes", lambda: 100)  # 12 × 3×8×8 bytes > 50
    data = load_dataset("image_folder", path=str(root), size=8, channels=3, workers=0)
    assert isinstance(data.train, StreamedSplit)


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_image_folder_trains_through_cli(tmp_path, train_run, in_memory):
    root = image_folder(tmp_path)
    run = train_run("dataset=image_folder", f"dataset.path={root}", "dataset.size=8", "dataset.channels=1",
                    f"dataset.in_memory={in_memory}", "dataset.workers=1", "model=ae", "trainer.epochs=2",
                    "trainer.batch_size=4")
    metrics = read_metrics(run)
    assert load_checkpoint(run)["model"]["kwargs"]["input_shape"] == [1, 8, 8]
    assert metrics["steps"] == 2 * 3 and len(metrics["val_loss_history"]) == 2  # 10 train images, batch 4
    assert all(np.isfinite(v) for v in metrics["test"].values())


# --- Refused input: one line naming what to change ------------------------------------------

def test_bad_tensor_files_are_one_line_errors(tmp_path, capsys):
    bad = np.ones((10, 3), np.float32)
    bad[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    line = run_error(tmp_path, capsys, "dataset=tensor_file", f"dataset.path={tmp_path / 'nan.npy'}")
    assert "nan.npy: 1 NaN/inf values" in line
    np.save(tmp_path / "flat.npy", np.ones(10, np.float32))
    line = run_error(tmp_path, capsys, "dataset=tensor_file", f"dataset.path={tmp_path / 'flat.npy'}")
    assert "flat.npy: data has shape (10,)" in line and "expected (N, D)" in line
    line = run_error(tmp_path, capsys, "dataset=tensor_file")
    assert "dataset.path=None is not allowed" in line


def test_bad_image_folders_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = run_error(tmp_path, capsys, "dataset=image_folder", f"dataset.path={tmp_path / 'empty'}")
    assert "empty: no images found" in line
    root = image_folder(tmp_path, n_per_class=2)
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG not really")
    line = run_error(tmp_path, capsys, "dataset=image_folder", f"dataset.path={root}")
    assert "broken.png: cannot decode image" in line
    line = run_error(tmp_path, capsys, "dataset=image_folder", f"dataset.path={root}", "dataset.in_memory=maybe")
    assert "dataset.in_memory='maybe' is not allowed: one of auto, true, false" in line


def test_bernoulli_on_data_outside_unit_range_is_refused(tmp_path, capsys):
    np.save(tmp_path / "x.npy", table()[0])
    path = f"dataset.path={tmp_path / 'x.npy'}"
    line = run_error(tmp_path, capsys, "dataset=tensor_file", path, "dataset.scale=standard",
                     "model=vae", "model.likelihood=bernoulli")
    assert line.startswith("aectl train: error: model.likelihood='bernoulli' is not allowed: gaussian for data outside [0, 1]")
    line = run_error(tmp_path, capsys, "dataset=tensor_file", path, "dataset.scale=none", "model=ae",
                     "model.likelihood=gaussian")
    assert "model.output_activation='sigmoid' is not allowed: identity for data outside [0, 1]" in line
    line = run_error(tmp_path, capsys, "dataset=tensor_file", path, "dataset.scale=standard", "dataset.binarize=dynamic")
    assert "dataset.binarize='dynamic' is not allowed: none for data outside [0, 1]" in line


def test_missing_files_offline_and_bad_choices_are_one_line_errors(tmp_path, capsys):
    line = run_error(tmp_path, capsys, "dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    assert "not found in" in line and "point dataset.root at the folder that holds MNIST/raw/" in line
    line = run_error(tmp_path, capsys, "dataset=mnist", "dataset.binarize=stochastic")
    assert "dataset.binarize='stochastic' is not allowed: one of none, threshold, dynamic" in line
    line = run_error(tmp_path, capsys, "dataset=tensor_file", "dataset.path=x.csv", "dataset.scale=zscore")
    assert "dataset.scale='zscore' is not allowed: one of minmax, standard, none" in line


def test_load_dataset_refuses_unknown_names_and_bad_files():
    with pytest.raises(ConfigError, match="dataset.name='imagenet' is not allowed"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="file does not exist"):
        load_dataset("tensor_file", path="no-such-file.csv")


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_a_csv_too_small_to_split_is_one_line_naming_file_rows_and_minimum(tmp_path, capsys, rows):
    path = tmp_path / "tiny.csv"
    path.write_text("".join(f"{i},{i + 1},{i % 3}\n" for i in range(rows)))
    line = run_error(tmp_path, capsys, "dataset=tensor_file", f"dataset.path={path}")
    assert line == (f"aectl train: error: {path}: {rows} row{'s' if rows > 1 else ''}, too few to give train and val "
                    "an example each (dataset.val_fraction=0.1, dataset.test_fraction=0.1); at least 6 rows are needed")


def test_the_smallest_data_that_splits_gives_every_split_an_example(tmp_path):
    path = tmp_path / "six.csv"
    path.write_text("".join(f"{i},{i + 1}\n" for i in range(6)))
    data = load_dataset("tensor_file", path=str(path))
    assert (len(data.train), len(data.val), len(data.test)) == (4, 1, 1)
    for no_test in (0.0, 1e-9):  # an empty test split is allowed (and scaled like the others)
        data = load_dataset("tensor_file", path=str(path), test_fraction=no_test)
        assert (len(data.train), len(data.val), len(data.test)) == (5, 1, 0) and data.test.shape[1:] == (1, 1, 2)
    np.save(tmp_path / "four.npy", np.ones((4, 3), np.float32))
    with pytest.raises(DataError, match=r"four.npy: 4 examples, too few to give train and val an example each \("
                                        r".*; at least 6 examples are needed$"):
        load_dataset("tensor_file", path=str(tmp_path / "four.npy"), test_fraction=0.0)
    with pytest.raises(DataError, match=r"a larger dataset.val_fraction is needed$"):
        load_dataset("tensor_file", path=str(tmp_path / "four.npy"), val_fraction=1e-300)


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_a_broken_image_is_named_once_in_memory_and_streamed(tmp_path, capsys, in_memory):
    root = image_folder(tmp_path, n_per_class=4)
    (root / "dogs" / "2.png").write_bytes(b"not an image")
    line = run_error(tmp_path, capsys, "dataset=image_folder", f"dataset.path={root}", "dataset.size=8",
                     f"dataset.in_memory={in_memory}", "dataset.workers=1", "model=ae", "trainer.batch_size=4")
    assert line.startswith(f"aectl train: error: {root / 'dogs' / '2.png'}: cannot decode image (")
    assert "worker" not in line and line.count("cannot identify image file") == 1, line


# --- The fields each dataset reads --------------------------------------------------------------

def _dataset_files(tmp_path, name: str) -> list[dict]:
    """Option sets that load `name` from tiny files written here, together covering its readers'
    branches (an image folder decoded in memory and streamed)."""
    root = dict(root=str(tmp_path), download=False)
    if name in ("mnist", "fashion_mnist", "kmnist"):
        write_mnist_layout(tmp_path, {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}[name],
                           n_train=20, n_test=6)
        return [root]
    if name == "cifar10":
        write_cifar_layout(tmp_path)
        return [root]
    if name == "binarized_mnist":
        write_amat_layout(tmp_path / "binarized_mnist")
        return [root]
    if name == "tensor_file":
        np.save(tmp_path / "rows.npy", np.random.default_rng(0).random((20, 3)).astype(np.float32))
        return [dict(path=str(tmp_path / "rows.npy"))]
    if name == "image_folder":
        path = str(image_folder(tmp_path, n_per_class=4))
        return [dict(path=path, in_memory=True), dict(path=path, in_memory=False, workers=0)]
    if name == "activations":
        np.save(tmp_path / "acts.npy", np.random.default_rng(0).normal(size=(200, 4)).astype(np.float16))
        return [dict(path=str(tmp_path / "acts.npy"))]
    return [{}]


@pytest.mark.parametrize("name", sorted(option_fields.DATASET_FIELDS))
def test_every_dataset_reads_exactly_the_fields_its_option_table_names(tmp_path, monkeypatch, name):
    """option_fields.DATASET_FIELDS is what refuses a field a dataset ignores: a field it names
    must be read by the dataset's loading (else a setting silently does nothing), and a field it
    leaves out must not be (else a setting that works is refused)."""
    from aectl.config import DatasetConfig
    from aectl.datasets import load as load_mod

    read = set()
    names = {f.name for f in dataclasses.fields(DatasetConfig)}

    class Recording(DatasetConfig):
        def __getattribute__(self, attr):
            if attr in names:
                read.add(attr)
            return super().__getattribute__(attr)

    monkeypatch.setattr(load_mod, "DatasetConfig", Recording)
    for options in _dataset_files(tmp_path, name):
        load_dataset(name, **options)
    assert read - {"name"} == set(option_fields.DATASET_FIELDS[name])


def test_the_readmes_csv_example_with_text_labels_trains_and_names_its_classes(tmp_path, train_run, capsys):
    """The datasets guide's CSV example with a label column of names (a/b/c): classes in sorted order, the
    names kept in the checkpoint for eval's plots and projector, the probe scored on them."""
    rng = np.random.default_rng(0)
    names = np.array(["c", "a", "b"])[rng.integers(0, 3, 90)]
    rows = rng.normal(size=(90, 4)) + (names == "a")[:, None] * 3
    path = tmp_path / "sensors.csv"
    path.write_text("f1,f2,f3,f4,label\n" + "".join(",".join(f"{v:.4f}" for v in row) + f",{name}\n"
                                                  for row, name in zip(rows, names)))
    run = train_run("dataset=tensor_file", f"dataset.path={path}", "dataset.label_column=label", "model=stacked_ae",
                    "model.likelihood=gaussian", "model.output_activation=identity", "dataset.scale=standard",
                    "model.hidden_dims=[8]", *ONE_EPOCH)
    assert load_checkpoint(run)["data"]["classes"] == ["a", "b", "c"]
    assert main(["eval", f"ckpt={run}", "progress=false", "device=cpu"]) == 0, capsys.readouterr().err
    assert "probe_acc" in json.loads(next((run / "eval").glob("*/metrics.json")).read_text())["metrics"]
    metadata = next(run.glob("*/eval_latent/metadata.tsv")).read_text().split()
    assert set(metadata) <= {"a", "b", "c"} and len(set(metadata)) == 3
