"""The conditional VAE (model=cvae): the label's one-hot code, where it enters the encoder and
the decoder, the KL of the conditional posterior, the label's wire from the data through the
trainer, validation and eval, the refusal of unlabelled data, eval's per-class samples, and
the Python API's labels."""

import json

import numpy as np
import pytest
import torch

from aectl.cli import main
from aectl.config import EvalConfig, TrainerConfig
from aectl.config.errors import DataError
from aectl.datasets import DataSplits
from aectl.datasets.noise import Corruption
from aectl.evaluation import evaluate as evaluation
from aectl.evaluation import pictures
from aectl.models import ConditionalVAE, build_model, mean_reconstruction, one_hot
from aectl.objectives import metrics
from aectl.objectives.objective import TERMS, make_objective
from aectl.runs.tracking import NullTracker
from aectl.training import build
from aectl.training.trainer import Progress, evaluate, make_loop, train_epoch
from aectl.training.training_log import IntervalLog

TINY = ["model=cvae", "model.hidden_dims=[16]", "model.latent_dim=2", "trainer.epochs=2", "trainer.batch_size=256",
        "trainer.images_every=100"]


def tiny_cvae(hidden=(), arch="mlp", classes=3, latent=2, shape=(1, 2, 2), seed=0) -> ConditionalVAE:
    torch.manual_seed(seed)
    return build_model("cvae", input_shape=list(shape), latent_dim=latent, num_classes=classes, arch=arch,
                       hidden_dims=list(hidden), conv_channels=[4], likelihood="gaussian",
                       output_activation="identity", sigma=0.5)


def test_one_hot_puts_a_single_one_at_the_label():
    expected = torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.float32)
    assert torch.equal(one_hot(torch.tensor([2, 0, 3, 1]), 4), expected)


def test_decoder_sees_the_one_hot_label_beside_z():
    """Same z, another y → another output; the first layer's pre-activation is W_z z + W[:, K+y] + b
    by hand (the label's one-hot column, nothing else, is added to z's part)."""
    model = tiny_cvae(hidden=(5,))
    z = torch.tensor([[0.3, -1.2], [0.3, -1.2]])
    out0, out2 = model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([2, 2]))
    assert not torch.allclose(out0, out2)
    first = model.decoder.body[0]
    w, b = first.weight.detach(), first.bias.detach()
    y = torch.tensor([0, 2])
    hand = z @ w[:, :2].T + w[:, 2 + y].T + b
    got = first(torch.cat([z, one_hot(y, 3)], 1))  # what decode feeds the decoder body
    assert torch.allclose(got, hand, atol=1e-6)
    # and decode(z, y) is that body's output: row 1 with y=2 equals out2's row 1
    assert torch.allclose(model.decode(z, y)[1], out2[1]) and torch.allclose(model.decode(z, y)[0], out0[0])


def test_posterior_is_q_z_given_x_and_y_and_the_kl_is_its_closed_form():
    """No hidden layer: (μ, log σ²) = W [x; e_y] + b by hand, which changes with y; the
    objective's KL term is −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²) of exactly that posterior."""
    model = tiny_cvae()
    x = torch.tensor([[[[0.1, 0.9], [0.4, 0.0]]], [[[0.7, 0.2], [0.3, 0.8]]]])
    y = torch.tensor([1, 2])
    w, b = model.posterior.weight.detach(), model.posterior.bias.detach()
    params = torch.cat([x.flatten(1), one_hot(y, 3)], 1) @ w.T + b
    mu_hand, logvar_hand = params[:, :2], params[:, 2:]
    mu, logvar = model.encode(x, y)
    assert torch.allclose(mu, mu_hand, atol=1e-6) and torch.allclose(logvar, logvar_hand, atol=1e-6)
    assert not torch.allclose(model.encode(x, torch.tensor([0, 0]))[0], mu)  # q(z|x,y) moves with y

    kl_hand = (-0.5 * (1 + logvar_hand - mu_hand.square() - logvar_hand.exp()).sum(1)).mean()
    objective = make_objective("cvae", "gaussian", 0.5, {"kind": "none"})
    torch.manual_seed(3)
    _, terms = objective(model(x, y), x, beta=1.0)
    assert terms[TERMS.index("kl")].item() == pytest.approx(kl_hand.item(), rel=1e-5)


def test_conv_encoder_takes_the_label_as_constant_maps():
    model = tiny_cvae(arch="conv", shape=(1, 4, 4))
    x = torch.rand(2, 1, 4, 4)
    y = torch.tensor([0, 2])
    stacked = model._with_label(x, one_hot(y, 3))
    assert stacked.shape == (2, 4, 4, 4)
    assert torch.equal(stacked[:, 1:], one_hot(y, 3)[:, :, None, None].expand(-1, -1, 4, 4))
    assert not torch.allclose(model.encode(x, y)[0], model.encode(x, torch.tensor([1, 1]))[0])


def labelled_data(n=64, classes=3, seed=0) -> DataSplits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataSplits(x, x[:16], x[:16], y, y[:16], y[:16], scale=1 / 255)


def one_epoch_terms(data: DataSplits) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's loss terms and the weights after one epoch of aectl's loop on `data`."""
    model = tiny_cvae(hidden=(4,))
    objective = make_objective("cvae", "gaussian", 0.5, {"kind": "none"})
    settings = TrainerConfig(batch_size=16, log_every=100)
    loop = make_loop(model, objective, Corruption("none"), lambda step: 1.0, settings)
    interval = IntervalLog(NullTracker(), settings.log_every, settings.batch_size, torch.device("cpu"), objective)
    bar = type("Bar", (), {"update": lambda self: None, "set_postfix": lambda self, **k: None})()
    train_epoch(loop, data, 0, Progress(), interval, bar)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return interval.rows[:interval.steps, :len(TERMS)].clone(), weights


def test_the_trainer_hands_the_batch_labels_to_the_objective():
    """The same data and seed with shuffled or zeroed labels: every step's loss changes, and
    so do the trained weights; the same labels give the same numbers (the control)."""
    data = labelled_data()
    terms, weights = one_epoch_terms(data)
    again, weights_again = one_epoch_terms(data)
    assert torch.equal(terms, again) and torch.equal(weights, weights_again)
    for labels in (data.train_labels[torch.randperm(64, generator=torch.Generator().manual_seed(1))],
                   torch.zeros_like(data.train_labels)):
        other = DataSplits(data.train, data.val, data.test, labels, data.val_labels, data.test_labels,
                           scale=data.scale)
        other_terms, other_weights = one_epoch_terms(other)
        assert (other_terms[:, TERMS.index("loss")] != terms[:, TERMS.index("loss")]).all()
        assert not torch.allclose(other_weights, weights)


def test_validation_and_eval_are_given_the_split_labels():
    """Validation's loss and eval's IW estimate with the split's labels differ from those with
    the labels zeroed: the labels reach both."""
    data, model = labelled_data(), tiny_cvae(hidden=(4,))
    objective = make_objective("cvae", "gaussian", 0.5, {"kind": "none"})
    val = evaluate(model, data.val, data, objective, Corruption("none"), 1.0, 8, labels=data.val_labels)
    zeroed = evaluate(model, data.val, data, objective, Corruption("none"), 1.0, 8,
                      labels=torch.zeros_like(data.val_labels))
    assert val["loss"] != pytest.approx(zeroed["loss"]) and val["neg_elbo"] != pytest.approx(zeroed["neg_elbo"])

    variant = evaluation.Variant("cvae", True, {"kind": "none"}, {"kind": "none"}, 1.0, True)
    settings = EvalConfig(ckpt="x", k=4, batch_size=8, progress=False)
    values = [evaluation.split_metrics(model, data, data.val, variant, settings, 4, labels)[0]
              for labels in (data.val_labels, torch.zeros_like(data.val_labels))]
    assert values[0]["nll_iw"] != pytest.approx(values[1]["nll_iw"])
    assert values[0]["psnr"] != pytest.approx(values[1]["psnr"])


def test_iw_estimate_is_of_p_x_given_y():
    """Through `given`, the IW estimate's decoder rows (S·N, sample-major) get the labels tiled S
    times: with k = 3 it equals the estimate computed by hand with each example's own label."""
    model, data = tiny_cvae(hidden=(4,)), labelled_data()
    x, y = data.as_float(data.val[:5]), data.val_labels[:5]
    eps = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0))
    got = metrics.iw_log_likelihood(model.given(y), x, 3, eps=eps)
    for i in range(5):
        alone = metrics.iw_log_likelihood(model.given(y[i:i + 1]), x[i:i + 1], 3, eps=eps[:, i:i + 1])
        assert got[i].item() == pytest.approx(alone.item(), rel=1e-5)


def test_class_samples_decode_each_row_with_its_class_and_share_z_down_a_column():
    model = tiny_cvae(hidden=(4,))
    images = pictures.class_samples(model, 4, torch.Generator().manual_seed(0))
    z = torch.randn((4, 2), generator=torch.Generator().manual_seed(0))
    for c in range(3):
        hand = mean_reconstruction(model, model.decode(z, torch.full((4,), c)))
        assert torch.allclose(images[4 * c:4 * (c + 1)], hand, atol=1e-6)


def test_unlabelled_data_is_refused_in_one_line(tmp_path, capsys):
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).random((40, 6)).astype(np.float32))
    rc = main(["train", *TINY, "dataset=tensor_file", f"dataset.path={tmp_path / 'rows.npy'}",
               f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == ["aectl train: error: model=cvae needs a labelled dataset: dataset.name=tensor_file has no labels "
                   "(tensor_file: dataset.label_key or dataset.label_column; image_folder: one sub-folder per class)"]
    with pytest.raises(DataError, match="dataset.name=synthetic has labels in \\[0, 5\\], expected integers in "):
        x = torch.zeros(4, 1, 1, 1)
        build.num_classes(DataSplits(x, x, x, torch.tensor([0, 5, 1, 1]), classes=["a", "b", "c"]), "synthetic")


def test_number_of_classes_comes_from_the_labels():
    x = torch.zeros(4, 1, 1, 1)
    assert build.num_classes(DataSplits(x, x, x, torch.tensor([0, 3, 1, 1]), torch.tensor([4] * 4)), "d") == 5
    assert build.num_classes(DataSplits(x, x, x, torch.tensor([0, 1, 1, 1]), classes=list("abc")), "d") == 3


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cvae") / "run"
    assert main(["train", *TINY, f"hydra.run.dir={run_dir}", "trainer.progress=false", "trainer.device=cpu"]) == 0
    return run_dir


def test_iw_estimate_of_more_examples_than_a_pass_holds_slices_their_labels_too():
    """A batch of more examples than one decoder pass holds is estimated slice by slice, each
    slice with its own labels: the same numbers as in one pass."""
    model, data = tiny_cvae(hidden=(4,)), labelled_data()
    x, y = data.as_float(data.val[:5]), data.val_labels[:5]
    eps = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0))
    whole = metrics.iw_log_likelihood(model.given(y), x, 3, eps=eps)
    sliced = metrics.iw_log_likelihood(model.given(y), x, 3, eps=eps, chunk=2)
    torch.testing.assert_close(sliced, whole)


def test_eval_of_a_cvae_with_batches_larger_than_an_iw_pass(cvae_run, capsys, monkeypatch):
    monkeypatch.setattr(evaluation, "IW_CHUNK", 64)  # as batch_size > 4096 with the real pass size
    assert main(["eval", f"ckpt={cvae_run}", "k=2", "batch_size=300", "progress=false", "projector=false"]) == 0, \
        capsys.readouterr().err
    assert np.isfinite(json.loads((cvae_run / "eval" / "last_test_k2" / "metrics.json").read_text())
                       ["metrics"]["nll_iw"])


def test_train_and_eval_a_cvae_on_digits(cvae_run, capsys):
    metrics_json = json.loads((cvae_run / "metrics.json").read_text())
    assert {"kl", "neg_elbo", "active_units", "beta"} <= set(metrics_json["val"])
    assert main(["eval", f"ckpt={cvae_run}", "k=5", "progress=false", "projector=false"]) == 0
    out = capsys.readouterr().out
    assert "−log p(x|y), IW bound k=5" in out and "KL(q(z|x,y) ‖ p(z))" in out
    result = json.loads((cvae_run / "eval" / "last_test_k5" / "metrics.json").read_text())
    assert {"nll_iw", "neg_elbo", "active_units", "probe_acc"} <= set(result["metrics"])
    assert "class_samples.png" in result["pictures"] and "samples.png" not in result["pictures"]
    assert (cvae_run / "eval" / "last_test_k5" / "class_samples.png").is_file()


def test_api_takes_labels(cvae_run):
    import aectl
    from aectl.config.errors import AectlError

    model = aectl.load(cvae_run)
    samples = model.sample(5, generator=torch.Generator().manual_seed(0), y=3)
    z = torch.randn((5, 2), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(samples, model.decode(z, torch.full((5,), 3)))
    assert not torch.allclose(samples, model.decode(z, 4))
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 9])
    assert torch.allclose(model.reconstruct(x, y), model.decode(model.encode(x, y), y))
    with pytest.raises(AectlError, match="needs the labels"):
        model.sample(2)
    with pytest.raises(AectlError, match=r"in \[0, 10\)"):
        model.encode(x, torch.tensor([0, 1, 2, 10]))


def test_each_example_reaches_the_model_with_its_own_label(monkeypatch):
    """Example i holds the value i and the label i mod 3: in every training step, the model is
    called with each input next to its own label (the permutation slices both alike)."""
    n = 48
    x = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.arange(n) % 3
    data = DataSplits(x, x[:8], x[:8], y, y[:8], y[:8], scale=1 / 255)
    calls, forward = [], ConditionalVAE.forward

    def recording(self, x_in, labels):
        calls.append(((x_in[:, 0, 0, 0] * 255).round().long(), labels.clone()))
        return forward(self, x_in, labels)

    monkeypatch.setattr(ConditionalVAE, "forward", recording)
    one_epoch_terms(data)
    assert len(calls) == 3
    seen = torch.cat([index for index, _ in calls])
    assert sorted(seen.tolist()) == list(range(n)) and seen.tolist() != list(range(n))  # all of them, shuffled
    for index, labels in calls:
        assert torch.equal(labels, index % 3)
