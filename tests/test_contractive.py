"""The contractive penalty λ·‖J_f(x)‖²_F (Rifai et al. 2011, eq. 2–3) against a finite-difference
Jacobian and the one-layer sigmoid closed form by hand, its weight and gradient as the objective
applies them, and `aectl eval`'s mean ‖J_f‖_F."""

import math

import pytest
import torch

from aectl.evaluation.validation import evaluate_split, jacobian_norm
from aectl.models import ACTIVATIONS, build_model
from aectl.objectives import contractive
from aectl.objectives.objective import TERMS, Objective, make_objective
from tests.conftest import read_metrics


def finite_difference_sq_norm(encode, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Σ_{j,i} (∂f_j/∂x_i)² per example, each column by a central difference (float64)."""
    flat = x.flatten(1)
    total = torch.zeros(len(x), dtype=torch.float64)
    for i in range(flat.shape[1]):
        step = torch.zeros_like(flat)
        step[:, i] = h
        plus, minus = encode((flat + step).view_as(x)), encode((flat - step).view_as(x))
        total += ((plus - minus) / (2 * h)).square().sum(1)
    return total


def deep_ae() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("stacked_ae", input_shape=(1, 2, 3), latent_dim=4, hidden_dims=[5],
                       activation="tanh", code_activation="sigmoid").double()


def sigmoid_ae() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("ae", input_shape=(1, 1, 3), latent_dim=2, hidden_dims=[], code_activation="sigmoid").double()


X_DEEP = torch.linspace(-1, 1, 18, dtype=torch.float64).view(3, 1, 2, 3) ** 3  # rows of different sizes


def test_exact_jacobian_of_a_deep_encoder_matches_finite_differences():
    model = deep_ae()
    assert contractive.one_layer_sigmoid(model) is None  # the batched-VJP path
    x = X_DEEP.clone().requires_grad_(True)
    got = contractive.jacobian_sq_norm(model, x, model.encode(x), create_graph=False)
    expected = finite_difference_sq_norm(model.encode, X_DEEP)
    assert got.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert len(set(round(v, 6) for v in expected.tolist())) == 3  # per example, not one batch value


def test_closed_form_of_a_one_layer_sigmoid_encoder_by_hand():
    model = sigmoid_ae()
    w, b = model.code[0].weight.tolist(), model.code[0].bias.tolist()
    x = [[0.2, -0.5, 0.9], [1.0, 0.3, -0.7]]
    by_hand = []
    for row in x:
        hs = [1 / (1 + math.exp(-(sum(wi * xi for wi, xi in zip(w[j], row)) + b[j]))) for j in range(2)]
        by_hand.append(sum((h * (1 - h)) ** 2 * sum(wi ** 2 for wi in w[j]) for j, h in enumerate(hs)))
    xt = torch.tensor(x, dtype=torch.float64).view(2, 1, 1, 3)
    assert contractive.one_layer_sigmoid(model) is model.code[0]
    closed = contractive.jacobian_sq_norm(model, xt, model.encode(xt), create_graph=False)
    assert closed.tolist() == pytest.approx(by_hand, rel=1e-9)
    assert finite_difference_sq_norm(model.encode, xt).tolist() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_each_code_activation_matches_the_autograd_jacobian(activation):
    """The closed form holds for a sigmoid code only: chosen for another activation of the same
    one-layer encoder it would give a wrong ‖J‖²_F, so each is compared with autograd's J."""
    torch.manual_seed(2)
    model = build_model("ae", input_shape=(1, 1, 3), latent_dim=2, hidden_dims=[],
                        code_activation=activation).double()
    assert (contractive.one_layer_sigmoid(model) is not None) == (activation == "sigmoid")
    x = torch.tensor([[0.2, -0.5, 0.9], [1.0, 0.3, -0.7], [-0.4, 0.8, 0.1]], dtype=torch.float64).view(3, 1, 1, 3)
    expected = [torch.autograd.functional.jacobian(model.encode, row.unsqueeze(0)).square().sum().item() for row in x]
    xg = x.clone().requires_grad_(True)
    got = contractive.jacobian_sq_norm(model, xg, model.encode(xg), create_graph=False)
    assert got.tolist() == pytest.approx(expected, rel=1e-9)
    assert len(set(round(v, 9) for v in expected)) > 1 or activation == "identity"  # examples differ


@pytest.mark.parametrize("make", [deep_ae, sigmoid_ae], ids=["batched_vjp", "closed_form"])
def test_penalty_is_lambda_times_the_batch_mean_and_its_gradient_is_exact(make):
    model = make()
    x = X_DEEP if make is deep_ae else X_DEEP.view(6, 1, 1, 3)
    objective = make_objective("ae", "gaussian", 0.5, {"kind": "contractive", "weight": 0.3})
    assert objective.contractive_weight == 0.3
    out, loss, terms = objective.step(model, x, x, 1.0)
    penalty = 0.3 * finite_difference_sq_norm(model.encode, x).mean().item()
    assert terms[TERMS.index("penalty")].item() == pytest.approx(penalty, rel=1e-5)
    recon = Objective("gaussian", False, sigma=0.5)(out, x, 1.0)[0]
    assert loss.item() == pytest.approx(recon.item() + penalty, rel=1e-6)
    # The gradient of the penalty (double backward through the Jacobian) against a central
    # difference in one weight.
    weight = model.code[0].weight
    (grad,) = torch.autograd.grad(loss - recon, weight)
    with torch.no_grad():
        weight[0, 0] += 1e-6
        up = 0.3 * finite_difference_sq_norm(model.encode, x, 1e-5).mean()
        weight[0, 0] -= 2e-6
        down = 0.3 * finite_difference_sq_norm(model.encode, x, 1e-5).mean()
        weight[0, 0] += 1e-6
    assert grad[0, 0].item() == pytest.approx(((up - down) / 2e-6).item(), rel=1e-3)


def test_validation_and_eval_report_the_mean_jacobian_norm():
    model = deep_ae()
    objective = Objective("gaussian", False, penalty="contractive", contractive_weight=0.5)
    values = evaluate_split(model, [X_DEEP[:2], X_DEEP[2:]], objective, lambda x: x, 1.0, (-1.0, 1.0), False)
    by_fd = finite_difference_sq_norm(model.encode, X_DEEP)
    assert values["jacobian_norm"] == pytest.approx(by_fd.sqrt().mean().item(), rel=1e-6)  # the norm, not squared
    assert values["penalty"] == pytest.approx(0.5 * by_fd.mean().item(), rel=1e-5)
    assert jacobian_norm(model, X_DEEP).grad_fn is None


def test_contractive_run_logs_penalty_and_eval_reports_jacobian_norm(train_run):
    from aectl.cli import main
    from tests.conftest import eval_file

    run = train_run("model=stacked_ae", "model.hidden_dims=[16]", "penalty=contractive", "penalty.weight=0.2",
                    "trainer.epochs=1", "trainer.images_every=100")
    val = read_metrics(run)["val"]
    assert val["penalty"] > 0 and val["jacobian_norm"] > 0
    assert main(["eval", f"ckpt={run}", "progress=false", "device=cpu", "projector=false"]) == 0
    import json

    result = json.loads(eval_file(run).read_text())["metrics"]
    assert result["jacobian_norm"] > 0 and result["penalty"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert {"train/penalty", "val/penalty", "val/jacobian_norm"} <= set(tags)
