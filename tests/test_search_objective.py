"""A search ranks trials on one quantity: monitoring the training loss while sweeping a key that
redefines it is refused in one line (exit 2 from the CLI, through ConfigError)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aectl.config.errors import ConfigError
from aectl.config.search_objective import check_search_objective


@pytest.mark.parametrize("key", ["beta", "penalty.weight", "penalty.beta", "noise.sigma", "model.k",
                                 "beta_schedule.warmup_steps", "model.commitment"])
def test_sweeping_a_key_of_the_loss_while_monitoring_val_loss_is_refused(key):
    with pytest.raises(ConfigError) as err:
        check_search_objective("val/loss", ["trainer.lr", key])
    message = str(err.value)
    assert message.startswith("trainer.monitor='val/loss' is not allowed: ")
    assert key in message and "val/neg_elbo" in message and "\n" not in message


@pytest.mark.parametrize("monitor", ["val/psnr_denoised", "val/recon"])
def test_a_metric_of_the_noisy_input_is_refused_when_the_noise_is_swept(monitor):
    with pytest.raises(ConfigError, match=f"trainer.monitor='{monitor}' is not allowed: .*noise.sigma"):
        check_search_objective(monitor, ["noise.sigma"])


def test_a_list_monitor_with_the_loss_in_it_is_refused_too():
    with pytest.raises(ConfigError, match=r"trainer.monitor=\['val/kl', 'val/loss'\]"):
        check_search_objective(["val/kl", "val/loss"], ["beta"])


@pytest.mark.parametrize("monitor, swept", [
    ("val/neg_elbo", ["beta", "trainer.lr"]),
    ("val/psnr", ["noise.sigma"]),
    ("val/psnr_denoised", ["model.hidden_dims.0"]),
    (["val/recon", "val/mse"], ["beta"]),
    ("val/loss", ["trainer.lr", "model.latent_dim", "model.hidden_dims.0"]),  # the loss's definition fixed
    ("val/loss", ["model.kindness"]),  # a prefix of a key is not the key
])
def test_a_fixed_objective_or_a_free_metric_is_allowed(monitor, swept):
    check_search_objective(monitor, swept)


def test_a_preset_search_monitoring_the_loss_it_redefines_ends_in_one_line_exit_2(tmp_path):
    """digits_vae sweeps beta: with trainer.monitor=val/loss the sweep is refused before any trial."""
    pytest.importorskip("hydra_plugins.aectl_optuna_sweeper")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "aectl", "train", "-m", "hparams_search=digits_vae",
                           "trainer.monitor=val/loss", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("aectl train: error: trainer.monitor='val/loss' is not allowed: ") and "sweeps beta" in last
    assert not (tmp_path / "sweep" / "0").exists()
