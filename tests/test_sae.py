"""The sparse autoencoder (model=sae) against hand values: TopK, BatchTopK and its inference
threshold, JumpReLU's straight-through threshold gradient and L0 penalty, the decoder-norm
weighted L1, the unit-norm decoder recipe (parallel gradient removed, rows renormed), the encoder
as the decoder's transpose, b_dec from the data, AuxK on dead latents only; and its refusals."""

import contextlib
import math

import pytest
import torch

from aectl.cli import main
from aectl.models import build_model
from aectl.models.sae import _JumpReLU, _Step, batch_topk_latents, geometric_median, topk_latents
from aectl.objectives.objective import make_objective
from aectl.training.trainer import train_step


def _sae(activation="topk", d_in=3, latents=3, **kwargs):
    """An sae whose pre-activations are the input itself (W_enc = I, zero biases)."""
    torch.manual_seed(0)
    model = build_model("sae", input_shape=[1, 1, d_in], num_latents=latents, activation=activation, **kwargs)
    with torch.no_grad():
        model.W_enc.copy_(torch.eye(d_in, latents))
    return model


def test_topk_keeps_the_k_largest_of_each_row_through_a_relu():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, -4.0]])
    assert topk_latents(pre, 2).tolist() == [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_batchtopk_keeps_the_k_times_n_largest_of_the_batch():
    pre = torch.tensor([[5.0, 4.0, 0.5], [1.0, -1.0, 0.0]])
    assert batch_topk_latents(pre, 1).tolist() == [[5.0, 4.0, 0.0], [0.0, 0.0, 0.0]]


def test_batchtopk_estimates_its_threshold_in_training_and_uses_it_at_inference():
    model = _sae("batchtopk", k=1, threshold_decay=0.5)
    model.train()
    model(torch.tensor([[5.0, 4.0, 0.5], [1.0, 0.0, 0.0]]).view(2, 1, 1, 3))
    assert model.threshold.item() == pytest.approx(4.0)  # the first batch's smallest kept latent
    model(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]).view(2, 1, 1, 3))
    assert model.threshold.item() == pytest.approx(0.5 * 4.0 + 0.5 * 2.0)
    model(-torch.ones(2, 1, 1, 3))  # nothing positive kept: θ stays
    assert model.threshold.item() == pytest.approx(3.0)
    # at inference: pre > θ = 3, whatever the batch (its top k·N = 2 would keep 2.0 too)
    x = torch.tensor([[3.5, 2.0, 1.0], [1.0, 0.5, 0.25]]).view(2, 1, 1, 3)
    assert model.encode(x).tolist() == [[3.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    model.eval()
    assert model(x).z.tolist() == [[3.5, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_jumprelu_threshold_gradient_is_the_rectangle_kernel_estimate():
    theta, eps = torch.tensor([1.0, 2.0], requires_grad=True), 0.5
    pre = torch.tensor([[1.125, 2.375], [0.875, 1.0], [3.0, 2.125]], requires_grad=True)
    z = _JumpReLU.apply(pre, theta, eps)
    assert z.tolist() == [[1.125, 2.375], [0.0, 0.0], [3.0, 2.125]]
    z.sum().backward()
    # |z − θ| < ε/2 = 0.25: latent 0 at 1.125 and 0.875, latent 1 at 2.125 (2.375 is outside): −(θ/ε)·count
    assert theta.grad.tolist() == pytest.approx([-(1.0 / eps) * 2, -(2.0 / eps) * 1])
    assert pre.grad.tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]  # ∂z/∂pre = H(pre − θ)


def test_the_l0_step_has_only_the_threshold_gradient():
    theta, eps = torch.tensor([1.0, 2.0], requires_grad=True), 0.5
    pre = torch.tensor([[1.125, 2.375], [0.875, 1.0]], requires_grad=True)
    step = _Step.apply(pre, theta, eps)
    assert step.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    step.sum().backward()
    assert theta.grad.tolist() == pytest.approx([-2 / eps, 0.0])  # −(1/ε)·count in the window
    assert pre.grad.abs().sum() == 0


def test_the_jumprelu_objective_adds_lambda_times_the_mean_l0():
    model = _sae("jumprelu", init_threshold=0.5)
    x = torch.tensor([[1.0, 0.2, 0.7], [0.0, 0.0, 2.0]]).view(2, 1, 1, 3)
    objective = make_objective("sae", "gaussian", 1.0, {}, model={"activation": "jumprelu", "l0_coefficient": 0.1})
    out = model(x)
    loss, terms = objective(out, x, 0.0)
    recon = (out.recon - x).square().flatten(1).sum(1).mean()
    assert loss.item() == pytest.approx(recon.item() + 0.1 * (2 + 1) / 2)
    loss.backward()
    assert model.log_threshold.grad is not None


def test_relu_l1_weighs_each_latent_by_its_decoder_norm():
    model = _sae("relu_l1", normalize_decoder=False)
    with torch.no_grad():
        model.W_dec.copy_(torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 4.0]]))
    x = torch.tensor([[1.0, -1.0, 0.5]]).view(1, 1, 1, 3)
    out = model(x)
    assert out.sae.sparsity.tolist() == pytest.approx([1.0 * 2 + 0.5 * 4])
    objective = make_objective("sae", "gaussian", 1.0, {}, model={"activation": "relu_l1", "l1_coefficient": 5.0})
    loss, _ = objective(out, x, 0.0)
    assert loss.item() == pytest.approx((out.recon - x).square().sum().item() + 5.0 * 4.0)


def test_decoder_rows_start_at_unit_norm_and_the_encoder_as_their_transpose():
    model = build_model("sae", input_shape=[1, 1, 6], num_latents=10)
    assert model.W_dec.norm(dim=1).tolist() == pytest.approx([1.0] * 10)
    assert torch.equal(model.W_enc, model.W_dec.T)
    assert model.b_enc.abs().sum() == 0


def test_the_gradient_along_each_decoder_row_is_removed_and_rows_renormed():
    model = _sae()
    with torch.no_grad():
        model.W_dec.copy_(torch.tensor([[1.0, 0, 0], [0, 0.6, 0.8], [0, 1.0, 0]]))
    model.W_dec.grad = torch.tensor([[3.0, 4.0, 0], [1.0, 1.0, 2.0], [0, 0, 0]])
    model.before_optimizer_step()
    # g − (g·w)w: [3, 4, 0] − 3·[1, 0, 0]; [1, 1, 2] − 2.2·[0, .6, .8]
    expected = torch.tensor([[0, 4.0, 0], [1.0, 1 - 2.2 * 0.6, 2 - 2.2 * 0.8], [0, 0, 0]])
    assert torch.allclose(model.W_dec.grad, expected, atol=1e-6)
    with torch.no_grad():
        model.W_dec.copy_(torch.tensor([[3.0, 4.0, 0], [0, 0, 2.0], [1.0, 1.0, 1.0]]))
    model.after_optimizer_step()
    expected = torch.tensor([[0.6, 0.8, 0], [0, 0, 1.0], [3 ** -0.5] * 3])
    assert torch.allclose(model.W_dec, expected, atol=1e-6)


def test_a_training_step_keeps_the_decoder_on_the_unit_sphere_along_the_projected_gradient():
    model = build_model("sae", input_shape=[1, 1, 8], num_latents=16, k=2)
    x = torch.randn(32, 1, 1, 8)
    objective = make_objective("sae", "gaussian", 1.0, {}, model={"activation": "topk"})
    before = model.W_dec.detach().clone()
    loss = objective.step(model, x, x, 0.0)[1]
    grad = torch.autograd.grad(loss, model.W_dec)[0]
    parallel_free = grad - (grad * before).sum(1, keepdim=True) * before
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, optimizer, x, x, objective, 0.0, 0.0, contextlib.nullcontext(), upkeep=model)
    expected = before - 0.1 * parallel_free
    expected /= expected.norm(dim=1, keepdim=True)
    assert model.W_dec.norm(dim=1).tolist() == pytest.approx([1.0] * 16)
    assert torch.allclose(model.W_dec, expected, atol=1e-6)


def test_the_geometric_median_is_the_median_in_one_dimension():
    x = torch.tensor([[0.0], [1.0], [10.0]])
    assert geometric_median(x).item() == pytest.approx(1.0, abs=1e-3)
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [1.0, 1.0]])
    assert geometric_median(square).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


@pytest.mark.parametrize("how, expected", [("mean", [11 / 3, 1.0]), ("geometric_median", [1.0, 1.0]),
                                           ("zeros", [0.0, 0.0])])
def test_b_dec_starts_at_the_datas_mean_or_geometric_median(how, expected):
    model = build_model("sae", input_shape=[1, 1, 2], num_latents=4, k=1, b_dec_init=how)
    model.init_from_data(torch.tensor([[0.0, 1.0], [1.0, 1.0], [10.0, 1.0]]))
    assert model.b_dec.tolist() == pytest.approx(expected, abs=1e-3)


def test_auxk_reconstructs_the_residual_from_the_dead_latents_only():
    model = _sae(k=1, k_aux=2, dead_steps=2)
    with torch.no_grad():
        model.steps_since_active.copy_(torch.tensor([5, 1, 7]))  # latents 0 and 2 dead unless they fire now
    x = torch.tensor([[3.0, 2.0, 1.0], [4.0, 1.0, 2.0]]).view(2, 1, 1, 3)
    out = model.train()(x)  # topk k=1 fires latent 0 in both rows: it is alive again
    assert model.steps_since_active.tolist() == [0, 2, 8]  # latent 1 now dead too (2 steps)
    pre = x.flatten(1)
    dead = pre[:, 1:]  # latents 1 and 2, the k_aux = 2 largest of the dead
    assert torch.allclose(out.sae.aux_recon, dead @ model.W_dec[1:])
    objective = make_objective("sae", "gaussian", 1.0, {}, model={"activation": "topk", "aux_coefficient": 0.5})
    loss, terms = objective(out, x, 0.0)
    residual = (x - out.recon).flatten(1)
    aux = 0.5 * (residual - out.sae.aux_recon).square().sum(1).mean()
    recon = residual.square().sum(1).mean()
    assert loss.item() == pytest.approx((recon + aux).item())
    assert objective.named(terms.tolist(), 0.0)["aux"] == pytest.approx(aux.item())


def test_auxk_is_zero_while_no_latent_is_dead():
    model = _sae(k=1, dead_steps=100)
    x = torch.tensor([[3.0, 2.0, 1.0]]).view(1, 1, 1, 3)
    out = model.train()(x)
    objective = make_objective("sae", "gaussian", 1.0, {}, model={"activation": "topk"})
    loss, _ = objective(out, x, 0.0)
    assert out.sae.has_dead.item() == 0
    assert loss.item() == pytest.approx((out.recon - x).square().sum().item())


def test_a_dead_latents_aux_gradient_reaches_it():
    model = _sae(k=1, k_aux=1, dead_steps=1)
    with torch.no_grad():
        model.steps_since_active.fill_(5)
    x = torch.tensor([[3.0, 2.0, 1.0]]).view(1, 1, 1, 3)
    objective = make_objective("sae", "gaussian", 1.0, {}, model={"activation": "topk"})
    loss = objective.step(model.train(), x, x, 0.0)[1]
    loss.backward()
    assert model.W_enc.grad[:, 1].abs().sum() > 0  # latent 1, dead and the largest of the dead
    assert model.W_enc.grad[:, 2].abs().sum() == 0  # latent 2: dead, but not among the k_aux = 1


# ---------------------------------------------------------------- the config


@pytest.mark.parametrize("overrides, key, allowed", [
    (["model.num_latents=16", "model.expansion_factor=0", "model.k=16"], "model.k", "fewer than the 16 latents"),
    (["model.k=128"], "model.k", "fewer than the 128 latents"),  # expansion 8 × 16 inputs
    (["model.num_latents=16"], "model.num_latents", "exactly one of"),
    (["model.l0_coefficient=0.5"], "model.l0_coefficient", "unset for model.activation=topk"),
    (["model.activation=jumprelu", "model.k_aux=8"], "model.k_aux", "unset for model.activation=jumprelu"),
    (["model.activation=relu"], "model.activation", "topk, batchtopk, jumprelu, relu_l1"),
    (["model.b_dec_init=median"], "model.b_dec_init", "geometric_median"),
    (["model.hidden_dims=[8]"], "model.hidden_dims", "unset for model=sae"),
    (["penalty=l1"], "penalty.kind", "none for model=sae"),
])
def test_bad_sae_values_end_in_one_line(capsys, overrides, key, allowed):
    rc = main(["train", "model=sae", "dataset=synthetic", "dataset.shape=[1,4,4]", *overrides, "trainer.epochs=1",
               "trainer.progress=false"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and key in lines[0] and allowed in lines[0], lines


def test_the_sae_metrics_are_monitors_of_model_sae_only(capsys, train_run):
    rc = main(["train", "model=ae", "trainer.monitor=val/fvu", "trainer.epochs=1", "trainer.progress=false"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "trainer.monitor='val/fvu'" in lines[0] and "model=sae only" in lines[0]
    run = train_run("model=sae", "model.k=2", "trainer.monitor=val/explained_variance", "dataset=sparse_synthetic",
                    "dataset.num_samples=64", "dataset.n_directions=8", "dataset.dim=4", "trainer.epochs=1")
    import json

    best = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    assert best["metric"] == "val/explained_variance"


def test_sae_fields_are_refused_on_other_models(capsys):
    rc = main(["train", "model=ae", "model.num_latents=64", "trainer.epochs=1", "trainer.progress=false"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "model.num_latents" in lines[0] and "only model=sae" in lines[0]


def test_switching_the_activation_drops_the_presets_k(train_run):
    run = train_run("model=sae", "model.activation=jumprelu", "dataset=sparse_synthetic", "dataset.num_samples=64",
                    "dataset.n_directions=8", "dataset.dim=4", "trainer.epochs=1")
    import json

    config = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(config["val"]["loss"]) and "penalty" in config["val"]


# ---------------------------------------------------------------- the training loop's hooks


def test_training_starts_b_dec_at_the_train_splits_mean():
    from aectl.config import DatasetConfig, ModelConfig, TrainConfig, TrainerConfig
    from aectl.config.checks import validate
    from aectl.training.build import build

    config = TrainConfig(model=ModelConfig(kind="sae", activation="topk", k=2, num_latents=16),
                         dataset=DatasetConfig(name="sparse_synthetic", num_samples=64, n_directions=8, dim=4),
                         trainer=TrainerConfig(epochs=1, device="cpu", progress=False))
    validate(config)
    built = build(config)
    assert torch.allclose(built.model.b_dec, built.data.train.flatten(1).mean(0), atol=1e-6)


def test_trained_decoder_rows_stay_at_unit_norm(train_run):
    from aectl.runs.checkpoint import load_checkpoint

    run = train_run("model=sae", "model.num_latents=32", "model.expansion_factor=0", "model.k=2",
                    "dataset=sparse_synthetic", "dataset.num_samples=256", "dataset.n_directions=16", "dataset.dim=8",
                    "trainer.epochs=2", "trainer.batch_size=32", "trainer.lr=0.01")
    w_dec = load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]["W_dec"]
    assert w_dec.norm(dim=1).tolist() == pytest.approx([1.0] * 32, abs=1e-5)
