"""The IWAE's bound L_k (Burda et al. 2016, eq. 8) against hand values: its log-weights, the
ELBO at k = 1 on the same ε, the rise with k on a briefly trained model, the effective sample
size, and k as the config wires it into training, eval and the API."""

import math

import pytest
import torch

from aectl.models import build_model
from aectl.objectives import losses
from aectl.objectives.objective import TERMS, make_objective
from tests.conftest import read_metrics

SHAPE = (1, 2, 3)
X = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]).view(2, *SHAPE)


def networks(kind: str, k: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(kind, input_shape=SHAPE, latent_dim=3, hidden_dims=[4], likelihood="bernoulli",
                       **({"k": k} if kind == "iwae" else {})).double()


def log_normal(z: list[float], mu: list[float], var: list[float]) -> float:
    return sum(-0.5 * (math.log(2 * math.pi * v) + (a - m) ** 2 / v) for a, m, v in zip(z, mu, var))


def bernoulli_log_px(logits: list[float], x: list[float]) -> float:
    return sum(xi * -math.log1p(math.exp(-li)) + (1 - xi) * -math.log1p(math.exp(li)) for li, xi in zip(logits, x))


def hand_log_weights(model, x: torch.Tensor, eps: torch.Tensor) -> list[list[float]]:
    """log w_i = log p(x|z_i) + log N(z_i; 0, I) − log N(z_i; μ, σ²), z_i = μ + σ ε_i, by hand."""
    mu, logvar = (t.tolist() for t in model.encode(x.double()))
    rows = []
    for e in eps.tolist():
        row = []
        for n, en in enumerate(e):
            var = [math.exp(lv) for lv in logvar[n]]
            z = [m + math.sqrt(v) * a for m, v, a in zip(mu[n], var, en)]
            logits = model.decode(torch.tensor([z], dtype=torch.float64)).flatten().tolist()
            row.append(bernoulli_log_px(logits, x[n].flatten().tolist()) + log_normal(z, [0] * 3, [1] * 3)
                       - log_normal(z, mu[n], var))
        rows.append(row)
    return rows


@pytest.mark.parametrize("k", [1, 3])
def test_loss_is_minus_the_bound_of_the_hand_log_weights(k):
    model = networks("iwae", k)
    objective = make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, k)
    torch.manual_seed(5)
    eps = torch.randn(k, 2, 3, dtype=torch.float64)
    torch.manual_seed(5)
    _, loss, terms = objective.step(model, X.double(), X.double(), 1.0)
    log_w = hand_log_weights(model, X, eps)
    bound = [math.log(sum(math.exp(log_w[i][n]) for i in range(k)) / k) for n in range(2)]
    assert loss.item() == pytest.approx(-sum(bound) / 2, rel=1e-9)
    ess = [sum(math.exp(log_w[i][n]) for i in range(k)) ** 2 / sum(math.exp(2 * log_w[i][n]) for i in range(k))
           for n in range(2)]
    assert terms[TERMS.index("ess")].item() == pytest.approx(sum(ess) / 2, rel=1e-5)
    assert 1 <= terms[TERMS.index("ess")].item() <= k


def test_k1_is_the_vae_elbo_on_the_same_eps():
    vae, iwae = networks("vae"), networks("iwae", 1)
    iwae.load_state_dict(vae.state_dict())  # the same networks
    x = X.double()
    torch.manual_seed(3)
    out = vae(x)  # the VAE's z = μ + σ ε on this RNG state
    vae_loss, vae_terms = make_objective("vae", "bernoulli", 1.0, {"kind": "none"})(out, x, 1.0)
    torch.manual_seed(3)
    _, loss, terms = make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, 1).step(iwae, x, x, 1.0)
    recon = TERMS.index("recon")
    assert terms[recon].item() == pytest.approx(vae_terms[recon].item(), rel=1e-6)  # −log p(x|z), same z
    vae_recon = losses.reconstruction_batch_mean(out.recon, x, "bernoulli").item()  # in float64
    # −L_1 = −log p(x|z) + log q(z|x) − log p(z): the ELBO with its KL estimated at the same z
    log_q_minus_log_p = (losses.gaussian_log_density(out.z, out.mu, out.logvar)
                         - losses.gaussian_log_density(out.z, torch.zeros_like(out.z), torch.zeros_like(out.z)))
    assert loss.item() == pytest.approx(vae_recon + log_q_minus_log_p.mean().item(), rel=1e-12)
    assert terms[TERMS.index("ess")].item() == 1.0
    # ... whose mean over ε is the VAE's −ELBO with the analytic KL
    torch.manual_seed(0)
    estimates = torch.stack([make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, 1).step(iwae, x, x, 1.0)[1]
                             for _ in range(4000)])
    torch.manual_seed(0)
    elbos = torch.stack([make_objective("vae", "bernoulli", 1.0, {"kind": "none"})(vae(x), x, 1.0)[0]
                         for _ in range(4000)])
    assert estimates.mean().item() == pytest.approx(elbos.mean().item(), abs=4 * estimates.std().item() / 63)


def test_logged_recon_and_kl_are_the_vae_terms_on_the_same_draws():
    """The IWAE's recon and KL (train/ and val/) are diagnostics outside its loss: each is the VAE's
    term, summed over features per example and averaged over the batch (recon also over the k
    draws), so the two models' curves compare. Pinned on the VAE's objective, draw by draw."""
    from aectl.evaluation.validation import evaluate_split
    from aectl.models import ModelOutput

    k, iwae = 3, networks("iwae", 3)
    x = torch.cat([X, 1 - X[:1]]).double()  # 3 examples, split 1 + 2 for validation
    vae_objective = make_objective("vae", "bernoulli", 1.0, {"kind": "none"})
    iwae_objective = make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, k)

    def vae_terms(batch):  # (recon, kl) by the VAE's objective at each of the IWAE's k draws
        out = iwae(batch, samples=k)
        rows = [vae_objective(ModelOutput(out.recon[i], out.z[i], out.mu, out.logvar), batch, 1.0)[1] for i in range(k)]
        return (sum(r[TERMS.index("recon")].item() for r in rows) / k, rows[0][TERMS.index("kl")].item())

    torch.manual_seed(4)
    recon, kl = vae_terms(x)
    torch.manual_seed(4)
    terms = iwae_objective.step(iwae, x, x, 1.0)[2]
    assert terms[TERMS.index("recon")].item() == pytest.approx(recon, rel=1e-6)
    assert terms[TERMS.index("kl")].item() == pytest.approx(kl, rel=1e-6)
    per_example_kl = losses.gaussian_kl(*iwae.encode(x))
    assert kl == pytest.approx(per_example_kl.mean().item(), rel=1e-6) and len(set(per_example_kl.tolist())) == 3

    batches = [x[:1], x[1:]]
    val = evaluate_split(iwae, batches, iwae_objective, lambda b: b, 1.0, None, False, seed=6)
    torch.manual_seed(6)
    by_batch = [vae_terms(b) for b in batches]
    assert val["recon"] == pytest.approx((by_batch[0][0] + 2 * by_batch[1][0]) / 3, rel=1e-6)  # mean over examples
    assert val["kl"] == pytest.approx((by_batch[0][1] + 2 * by_batch[1][1]) / 3, rel=1e-6)


def test_bound_and_ess_by_hand():
    log_w = torch.tensor([[math.log(0.1)], [math.log(0.2)], [math.log(0.3)], [math.log(0.4)]])
    assert losses.importance_weighted_bound(log_w).item() == pytest.approx(math.log(0.25))
    assert losses.effective_sample_size(log_w).item() == pytest.approx(1 / (0.01 + 0.04 + 0.09 + 0.16))
    assert losses.effective_sample_size(torch.zeros(5, 1)).item() == pytest.approx(5)
    assert losses.effective_sample_size(torch.tensor([[0.0], [-80.0]])).item() == pytest.approx(1)


def test_the_bound_rises_with_k_on_a_briefly_trained_model():
    from aectl.datasets import load_dataset

    data = load_dataset("digits", binarize="threshold")
    x = data.as_float(data.train)[:512]
    torch.manual_seed(0)
    model = build_model("iwae", input_shape=data.input_shape, latent_dim=4, hidden_dims=[32], likelihood="bernoulli")
    train = make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, 5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        loss = train.step(model, x[step % 4::4], x[step % 4::4], 1.0)[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    bounds = []
    with torch.no_grad():
        for k in (1, 5, 50):
            torch.manual_seed(1)
            objective = make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, k)
            bounds.append(-torch.stack([objective.step(model, x, x, 1.0)[1] for _ in range(5)]).mean().item())
    assert bounds[0] + 0.3 < bounds[1] < bounds[2], bounds  # L_1 ≤ L_5 ≤ L_50 (Burda et al. 2016, thm. 1)


def test_k_is_wired_from_the_config_to_training_eval_and_the_api(train_run, monkeypatch):
    import json

    import aectl
    from aectl.cli import main
    from aectl.models import ImportanceWeightedAutoencoder
    from tests.conftest import eval_file

    seen = []
    forward = ImportanceWeightedAutoencoder.forward
    monkeypatch.setattr(ImportanceWeightedAutoencoder, "forward",
                        lambda self, x, samples=None: seen.append(samples) or forward(self, x, samples))
    run = train_run("model=iwae", "model.k=7", "model.hidden_dims=[16]", "trainer.epochs=1", "trainer.images_every=100")
    assert set(seen) - {None} == {7}  # training and validation draw k = 7 samples (pictures: one)
    val = read_metrics(run)["val"]
    assert 1 <= val["ess"] <= 7 and "beta" not in val and "kl_weighted" not in val
    assert val["loss"] < val["neg_elbo"]  # −L_7 below −ELBO: the bound is tighter
    seen.clear()
    assert main(["eval", f"ckpt={run}", "progress=false", "device=cpu", "projector=false", "k=20"]) == 0
    assert 7 in seen
    result = json.loads(eval_file(run).read_text())["metrics"]
    assert {"nll_iw", "active_units", "ess", "neg_elbo"} <= set(result)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert {"train/loss", "train/ess", "val/ess", "val/loss"} <= set(tags)
    model = aectl.load(run)
    assert model.encode(torch.zeros(3, 1, 8, 8)).shape == (3, 8)
    assert model.sample(4).shape == (4, 1, 8, 8)


@pytest.mark.parametrize("overrides, fragment", [
    (["model=iwae", "model.k=0"], "model.k=0 is not allowed: an integer ≥ 1"),
    (["model=vae", "model.k=3"], "model.k=3 is not allowed: unset for model=vae"),
    (["model=ae", "model.k=1"], "model.k=1 is not allowed: unset for model=ae"),
    (["model=iwae", "beta=0.5"], "beta=0.5 is not allowed: 1.0 for model=iwae"),
    (["model=iwae", "beta_schedule=linear"], "beta_schedule.kind='linear' is not allowed: constant for model=iwae"),
    (["model=iwae", "penalty=l1"], "penalty.kind='l1' is not allowed: none for model=iwae"),
])
def test_bad_iwae_settings_end_in_one_line(capsys, overrides, fragment):
    from aectl.cli import main

    assert main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines
