"""The sparse autoencoder's metrics against hand counts (FVU, explained variance, L0, dead and
dense latents, decoder cosines, MMCS), dataset=sparse_synthetic's ground truth, and a small TopK
SAE recovering its directions through `aectl train` and `aectl eval`."""

import json

import pytest
import torch

from aectl.cli import main
from aectl.datasets import load_dataset
from aectl.datasets.builtin import make_sparse_synthetic
from aectl.objectives import sae
from tests.conftest import eval_file, read_metrics


def _stats(pairs) -> dict:
    stats = sae.SplitStats()
    for x, x_hat, z in pairs:
        stats.add(x, x_hat, z)
    return stats.result()


def test_predicting_the_mean_explains_nothing_and_the_identity_everything():
    x = torch.tensor([[1.0, 2.0], [3.0, -2.0], [2.0, 3.0], [6.0, 1.0]])
    z = torch.ones(4, 3)
    mean = _stats([(x, x.mean(0).expand_as(x), z)])
    assert mean["fvu"] == pytest.approx(1.0) and mean["explained_variance"] == pytest.approx(0.0, abs=1e-12)
    identity = _stats([(x, x.clone(), z)])
    assert identity["fvu"] == 0.0 and identity["explained_variance"] == 1.0


def test_fvu_is_the_squared_error_over_the_splits_variance_summed_over_batches():
    x = torch.tensor([[1.0, 2.0], [3.0, -2.0], [2.0, 3.0], [6.0, 1.0]])
    x_hat = x + torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0], [2.0, 0.0]])
    # Σ‖x − x̂‖² = 1 + 1 + 4 = 6; x̄ = (3, 1): Σ‖x − x̄‖² = (4 + 0 + 1 + 9) + (1 + 9 + 4 + 0) = 28
    z = torch.ones(4, 3)
    halves = _stats([(x[:2], x_hat[:2], z[:2]), (x[2:], x_hat[2:], z[2:])])
    assert halves["fvu"] == pytest.approx(6 / 28) and halves["explained_variance"] == pytest.approx(22 / 28)


def test_l0_dead_and_dense_latents_are_hand_counts():
    z = torch.zeros(10, 4)
    z[0, 0] = 1.0  # latent 0: 1 of 10 inputs (10%: not dense, which is more than 10%)
    z[1, 1] = z[2, 1] = 0.5  # latent 1: 2 of 10 (dense)
    z[:, 3] = 2.0  # latent 3: every input (dense); latent 2 never (dead)
    z[4, 3] = -1.0  # negative: not active
    x = torch.randn(10, 1, 1, 2)
    values = _stats([(x[:6], x[:6], z[:6]), (x[6:], x[6:], z[6:])])
    assert values["l0"] == pytest.approx((1 + 2 + 9) / 10)
    assert values["dead_latents"] == 1 and values["dense_latents"] == 2


def test_decoder_max_cosine_and_direction_recovery():
    w_dec = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    assert sae.decoder_max_cosine(w_dec) == pytest.approx(2 ** -0.5)  # each row's closest other: 45°
    truth = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    learned = torch.tensor([[3.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    assert sae.direction_recovery(truth, learned) == pytest.approx({"mmcs": (1 + 0.8) / 2, "recovered": 0.5})


def test_sparse_synthetic_is_seeded_sparse_combinations_of_unit_directions():
    x, directions = make_sparse_synthetic(500, 20, 8, 0.1, seed=3)
    again, _ = make_sparse_synthetic(500, 20, 8, 0.1, seed=3)
    assert torch.equal(x, again) and x.shape == (500, 1, 1, 8)
    assert directions.norm(dim=1).tolist() == pytest.approx([1.0] * 20)
    coefficients = torch.linalg.lstsq(directions.T, x.flatten(1).T).solution.T  # exact: x lies in their span
    assert torch.allclose(coefficients @ directions, x.flatten(1), atol=1e-4)
    data = load_dataset("sparse_synthetic", num_samples=500, n_directions=20, dim=8, active_prob=0.1)
    assert torch.equal(data.directions, make_sparse_synthetic(500, 20, 8, 0.1, seed=0)[1])  # split_seed seeds it
    assert data.known_range is None and data.input_shape == [1, 1, 8]


def test_a_topk_sae_recovers_most_directions_and_eval_reports_it(train_run, capsys):
    run = train_run("model=sae", "model.num_latents=64", "model.expansion_factor=0", "model.k=4",
                    "dataset=sparse_synthetic", "dataset.num_samples=4000", "dataset.n_directions=32",
                    "dataset.dim=16", "dataset.active_prob=0.05", "trainer.epochs=3", "trainer.batch_size=64")
    val = read_metrics(run)["val"]
    assert 3.5 < val["l0"] <= 4  # topk: at most k active (fewer where the top k are not all positive)
    assert 0 < val["fvu"] < 0.5 and val["explained_variance"] == pytest.approx(1 - val["fvu"])
    assert main(["eval", f"ckpt={run}", "progress=false"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(eval_file(run).read_text())["metrics"]
    assert metrics["recovered"] >= 0.9 and metrics["mmcs"] > 0.9
    assert "share of the true directions recovered at cosine ≥ 0.9" in out
    assert "squared error ‖x − x̂‖²" in out and "log p(x|z)" not in out  # an sae's recon is no likelihood
    assert eval_file(run, "log_density.png").is_file()
