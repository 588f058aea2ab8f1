"""The Python API, as the Python API guide shows it: train without a command line, load, encode, decode,
reconstruct and sample in the data's own units; importing aectl stays cheap."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import aectl
from aectl.datasets import load_dataset


def test_the_readme_example_trains_loads_and_matches_eval(tmp_path):
    # --- as in the Python API guide (docs/guides/api.md) ---
    run = aectl.train(["model.latent_dim=4", "model.hidden_dims=[32]", "trainer.epochs=3", "trainer.progress=false"],
                      run_dir=tmp_path / "vae")
    model = aectl.load(run.run_dir)
    data = load_dataset("digits")
    x = data.as_float(data.test)  # (180, 1, 8, 8) in [0, 1]
    z = model.encode(x)
    x_hat = model.reconstruct(x)
    samples = model.sample(16, generator=torch.Generator().manual_seed(0))
    result = aectl.evaluate(run.run_dir, k=5)
    # --- checks ---
    assert run.metrics["epochs"] == 3 and model.metrics == run.metrics and model.config["model"]["latent_dim"] == 4
    assert z.shape == (180, 4) and model.decode(z).shape == x.shape == x_hat.shape and samples.shape == (16, 1, 8, 8)
    assert 0 <= x_hat.min() and x_hat.max() <= 1 and 0 <= samples.min() and samples.max() <= 1
    assert torch.allclose(model.reconstruct(data.test), x_hat)  # uint8 input is scaled as the dataset scales it
    mse = (x_hat - x).square().flatten(1).mean(1).mean().item()
    assert result["metrics"]["mse"] == pytest.approx(mse, rel=1e-5)  # reconstruct is what eval scores
    assert result["split"] == "test" and result["k"] == 5


def test_a_tensor_file_model_works_in_the_files_units(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) * 40 + 500  # values around 500, spread ~100
    path = tmp_path / "sensors.npy"
    np.save(path, table.astype(np.float32))
    run = aectl.train(["model=ae", "dataset=tensor_file", f"dataset.path={path}", "dataset.scale=standard",
                       "model.output_activation=identity", "model.latent_dim=2", "trainer.epochs=40",
                       "trainer.batch_size=16", "trainer.lr=0.01",
                       "trainer.progress=false"], run_dir=tmp_path / "ae")
    x = torch.from_numpy(table[:50].astype(np.float32)).reshape(50, 1, 1, 6)
    x_hat = aectl.load(run.run_dir).reconstruct(x)
    assert x_hat.shape == x.shape
    assert 300 < x_hat.mean().item() < 700  # in the file's units, not standardised ones
    assert (x_hat - x).abs().mean().item() < 0.5 * (x - x.mean()).abs().mean().item()  # and close to x


def test_bad_overrides_and_a_resume_are_refused_with_aectls_message():
    with pytest.raises(aectl.api.AectlError, match=r"noise.p=1.5 is not allowed"):
        aectl.train(["noise.p=1.5"])
    with pytest.raises(aectl.api.AectlError, match=r"model=gan"):
        aectl.train(["model=gan"])
    with pytest.raises(aectl.api.AectlError, match=r"trainer.resume"):
        aectl.train(["trainer.resume=somewhere"])
    with pytest.raises(aectl.api.AectlError, match=r"only a VAE"):
        aectl.api.Autoencoder(torch.nn.Linear(1, 1), {"config": {}, "model": {"kind": "ae"}}, {}).sample(2)


def test_importing_aectl_does_not_import_torch():
    code = "import sys, aectl; print('torch' in sys.modules, callable(aectl.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_wrong_arguments_are_refused_in_one_line_naming_them():
    """A string for the override list, a numpy array or a tensor of the wrong shape, an unknown
    eval option: one line naming the argument, what was given and what is allowed."""
    from aectl.models import build_model

    def refused(match, call, *args, **kwargs):
        with pytest.raises(aectl.api.AectlError, match=match) as info:
            call(*args, **kwargs)
        assert "\n" not in str(info.value)

    refused(r"^overrides='model.latent_dim=4' is not allowed: a list of strings", aectl.train, "model.latent_dim=4")
    refused(r"^overrides=\['trainer.epochs=1', 3\] is not allowed: a list of strings", aectl.train,
            ["trainer.epochs=1", 3])
    refused(r"^kay=5 is not allowed: an option of aectl eval: .*batch_size", aectl.evaluate, "run", kay=5)
    module = build_model("vae", input_shape=[1, 8, 8], latent_dim=4, hidden_dims=[8], likelihood="gaussian")
    checkpoint = {"config": {}, "model": {"kind": "vae", "kwargs": {"input_shape": [1, 8, 8]}}}
    model = aectl.api.Autoencoder(module, checkpoint, {})
    refused(r"^x='a numpy.ndarray' is not allowed: a torch.Tensor of shape \(N, 1, 8, 8\) or \(N, 64\) "
            r"\(torch.from_numpy", model.encode, np.zeros((2, 1, 8, 8), np.float32))
    refused(r"^x='a tensor of shape \(2, 3, 8, 8\)' is not allowed: shape \(N, 1, 8, 8\)", model.reconstruct,
            torch.zeros(2, 3, 8, 8))
    refused(r"^z='a tensor of shape \(2, 3\)' is not allowed: shape \(N, 4\)", model.decode, torch.zeros(2, 3))
    assert model.encode(torch.zeros(2, 64)).shape == (2, 4)  # flat rows of the right size are the same images
