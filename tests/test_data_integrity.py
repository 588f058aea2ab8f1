"""Data reaches the model as the user gave it: noise in the data's own range, image files scaled
as images, val/test kept in the range the model was fitted on, PSNR only where MAX is known;
and settings that would silently do nothing are refused in one line."""

import json
import logging

import numpy as np
import pytest
import torch

from aectl.cli import main
from aectl.datasets import load_dataset
from aectl.runs.checkpoint import load_checkpoint
from tests.conftest import eval_file, read_metrics

TINY = ("model.hidden_dims=[16]", "trainer.images_every=100")


@pytest.fixture
def standardised_csv(tmp_path):
    """A table of 300 rows × 6 features, scaled to mean 0 / std 1: values well below 0 and above 1."""
    rng = np.random.default_rng(0)
    path = tmp_path / "sensors.csv"
    np.savetxt(path, rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) * 3 + 5, delimiter=",")
    return ("dataset=tensor_file", f"dataset.path={path}", "dataset.scale=standard", "model.likelihood=gaussian",
            "model.output_activation=identity")


def test_gaussian_noise_is_clipped_to_the_data_range_not_to_0_1(train_run, standardised_csv, seen_batches):
    run = train_run("model=dae", *standardised_csv, *TINY, "trainer.epochs=1")
    noisy = torch.cat([a for a, _ in seen_batches])
    train = load_dataset("tensor_file", path=standardised_csv[1].split("=", 1)[1], scale="standard").train
    low, high = train.min().item(), train.max().item()
    assert noisy.min().item() == pytest.approx(low) and noisy.max().item() == pytest.approx(high)
    assert (noisy < 0).float().mean() > 0.3  # standardised: a [0, 1] clip would have erased these
    noise = load_checkpoint(run)["config"]["noise"]  # the range used is stored for eval
    assert noise["v_min"] == pytest.approx(low) and noise["v_max"] == pytest.approx(high)


def test_salt_and_pepper_values_are_the_data_extremes(train_run, standardised_csv, seen_batches):
    train_run("model=dae", "noise=salt_pepper", "noise.p=0.5", *standardised_csv, *TINY, "trainer.epochs=1")
    noisy, clean = (torch.cat(t) for t in zip(*seen_batches))
    changed = noisy[noisy != clean]
    assert set(changed.unique().tolist()) == {clean.min().item(), clean.max().item()}


def test_no_psnr_for_standardised_data(train_run, standardised_csv, capsys):
    run = train_run("model=dae", *standardised_csv, *TINY, "trainer.epochs=1")
    assert not {k for k in read_metrics(run)["val"] if "psnr" in k}
    assert main(["eval", f"ckpt={run}", "progress=false", "device=cpu", "projector=false"]) == 0
    result = json.loads(eval_file(run).read_text())
    assert not {k for k in result["metrics"] if "psnr" in k} and result["psnr_max"] is None
    assert "PSNR" not in capsys.readouterr().out


def test_a_uint8_image_file_is_scaled_as_images(tmp_path, train_run):
    from sklearn.datasets import load_digits

    images = (load_digits().images * 255 / 16).round().astype(np.uint8)  # (1797, 8, 8), rare border ink
    path = tmp_path / "digits.npy"
    np.save(path, images)
    data = load_dataset("tensor_file", path=str(path))
    for split in (data.train, data.val, data.test):  # /255, not per pixel
        assert split.min().item() >= 0 and split.max().item() <= 1
    torch.testing.assert_close(data.train, torch.from_numpy(images).float()[None].new_tensor(0) + data.train)
    assert data.train.max().item() == pytest.approx(1.0) and data.scaler == {"mode": "minmax", "min": [0.0],
                                                                            "max": [255.0]}
    run = train_run("dataset=tensor_file", f"dataset.path={path}", "model=stacked_ae", "trainer.epochs=3")
    metrics = read_metrics(run)
    assert metrics["val"]["loss"] == pytest.approx(metrics["test"]["loss"], rel=0.1)


def test_a_float_image_file_uses_one_global_range(tmp_path):
    images = np.zeros((40, 4, 4), dtype=np.float32)
    images[:, 1:3, 1:3] = np.linspace(0, 200, 40)[:, None, None]  # a border pixel stays 0
    images[-1, 0, 0] = 50.0  # ink at the border in one example only
    path = tmp_path / "images.npy"
    np.save(path, images)
    data = load_dataset("tensor_file", path=str(path), val_fraction=0.2, test_fraction=0.2)
    every = torch.cat([data.train, data.val, data.test])
    assert every.max().item() <= 1 and data.scaler["min"] == [0.0] and len(data.scaler["max"]) == 1


def test_minmax_clips_val_and_test_into_the_train_range_and_says_so(tmp_path, train_run, caplog):
    path = tmp_path / "small.csv"
    rows = np.tile(np.linspace(0, 1, 30)[:, None], (1, 4))
    rows[::7] *= 1.5  # a few rows beyond the rest: some land in val or test
    np.savetxt(path, rows, delimiter=",")
    with caplog.at_level(logging.WARNING, logger="aectl"):
        data = load_dataset("tensor_file", path=str(path), val_fraction=0.3, test_fraction=0.3)
    for split in (data.train, data.val, data.test):
        assert split.min().item() >= 0 and split.max().item() <= 1
    assert "clipped" in caplog.text
    run = train_run("dataset=tensor_file", f"dataset.path={path}", "dataset.val_fraction=0.3",
                    "dataset.test_fraction=0.3", *TINY, "trainer.epochs=1")  # the default Bernoulli VAE
    assert read_metrics(run)["test"]["loss"] > 0


# ---------------------------------------------------------------- what would silently do nothing

REFUSED = [
    (("noise=masking", "noise.sigma=0.5"), "noise.sigma=0.5", "noise=masking does not use sigma (its fields: p)"),
    (("model=dae", "penalty=l1", "penalty.rho=0.1"), "penalty.rho=0.1", "penalty=l1 does not use rho"),
    (("dataset=mnist", "dataset.size=28"), "dataset.size=28", "dataset=mnist does not use size"),
    (("dataset=mnist", "dataset.size=32"), "dataset.size=32", "dataset=mnist does not use size (its fields: binarize,"),
    (("noise=masking", "noise.sigma=0.3"), "noise.sigma=0.3", "noise=masking does not use sigma"),  # the default
    (("beta_schedule=linear", "beta_schedule.cycles=3"), "beta_schedule.cycles=3", "does not use cycles"),
    (("model=ae", "beta=0.5"), "beta=0.5", "beta weighs the KL term of model=vae"),
    (("model=ae", "beta_schedule=linear"), "beta_schedule.kind='linear'", "the schedule anneals the KL"),
    (("experiment=mnist_vae", "dataset=binarized_mnist"), "dataset.binarize='dynamic'", "binary already"),
    (("dataset=binarized_mnist", "dataset.val_fraction=0.2"), "dataset.val_fraction=0.2",
     "dataset=binarized_mnist does not use val_fraction (its fields: binarize, limit, root, download)"),
    (("dataset=binarized_mnist", "dataset.split_seed=3"), "dataset.split_seed=3",
     "dataset=binarized_mnist does not use split_seed"),
    (("dataset=mnist", "dataset.test_fraction=0.2"), "dataset.test_fraction=0.2", "dataset=mnist does not use test"),
    (("beta_schedule=cyclical", "beta_schedule.cycles=10", "trainer.epochs=1"), "beta_schedule.cycles=10",
     "at most 6 (this run has 12 optimizer steps"),
]


@pytest.mark.parametrize("overrides,key,why", REFUSED, ids=[r[1] for r in REFUSED])
def test_settings_that_would_do_nothing_are_refused_in_one_line(tmp_path, capsys, overrides, key, why):
    assert main(["train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false",
                 "trainer.device=cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert key in line and why in line, line
    assert not (tmp_path / "run" / "checkpoints").exists()
