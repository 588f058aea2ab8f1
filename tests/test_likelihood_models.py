"""The VampPrior (Tomczak & Welling 2018) and the two-stochastic-layer model (Burda et al. 2016,
§5) against hand computations: the prior's log p(z) as a mixture, its KL estimate, the two-layer
log-weights and bound, k = 1 as the ELBO, β on the two-layer ELBO, and the burda lr schedule."""

import math

import pytest
import torch

from aectl.models import build_model
from aectl.objectives import losses, metrics
from aectl.objectives.objective import TERMS, make_objective
from aectl.training.lr_schedules import burda_stage, lr_at

SHAPE = (1, 2, 2)
X = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]], dtype=torch.float64).view(3, *SHAPE)


def log_normal(z, mu, var) -> float:
    return sum(-0.5 * (math.log(2 * math.pi * v) + (a - m) ** 2 / v) for a, m, v in zip(z, mu, var))


def bernoulli_log_px(logits, x) -> float:
    return sum(xi * -math.log1p(math.exp(-li)) + (1 - xi) * -math.log1p(math.exp(li)) for li, xi in zip(logits, x))


def vamp_vae(kind: str = "vae", pseudo_inputs: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    extra = {"k": 2} if kind == "iwae" else {}
    return build_model(kind, input_shape=SHAPE, latent_dim=2, hidden_dims=[3], likelihood="bernoulli", prior="vamp",
                       pseudo_inputs=pseudo_inputs, pseudo_input_range=(0.0, 1.0), **extra).double()


def hand_vamp_log_prior(model, z: list[float]) -> float:
    """log (1/K) Σ_k N(z; μ(u_k), σ²(u_k)), each component from the encoder at the clipped u_k."""
    u = model.pseudo_inputs.raw.detach().clamp(0, 1)
    mu_k, logvar_k = (t.tolist() for t in model.encode(u))
    densities = [math.exp(log_normal(z, m, [math.exp(v) for v in lv])) for m, lv in zip(mu_k, logvar_k)]
    return math.log(sum(densities) / len(densities))


def test_vamp_log_prior_is_the_mixture_of_the_encoder_at_the_pseudo_inputs():
    model = vamp_vae()
    with torch.no_grad():  # some pseudo-inputs outside [0, 1]: the clip must show
        model.pseudo_inputs.raw.copy_(torch.tensor([[-0.5, 0.3, 1.7, 0.9], [0.2, 0.8, 0.1, 0.4],
                                                    [1.2, -0.1, 0.6, 0.5]], dtype=torch.float64).view(3, *SHAPE))
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.1]], dtype=torch.float64)
    expected = [hand_vamp_log_prior(model, row) for row in z.tolist()]
    assert model.log_prior(z).tolist() == pytest.approx(expected, rel=1e-10)
    # and (k, N, K) draws, as the IW bound passes them
    assert model.log_prior(z.expand(2, 3, 2)).flatten().tolist() == pytest.approx(expected * 2, rel=1e-10)


def test_vamp_kl_is_log_q_minus_log_p_at_the_sampled_z_and_beta_weighs_it():
    model = vamp_vae()
    objective = make_objective("vae", "bernoulli", 1.0, {"kind": "none"}, model={"prior": "vamp"})
    torch.manual_seed(2)
    out, loss, terms = objective.step(model, X, X, 0.5)
    mu, logvar = model.encode(X)
    kl = []
    for n, z in enumerate(out.z.tolist()):
        var = [math.exp(v) for v in logvar[n].tolist()]
        kl.append(log_normal(z, mu[n].tolist(), var) - hand_vamp_log_prior(model, z))
    recon = -sum(bernoulli_log_px(out.recon[n].flatten().tolist(), X[n].flatten().tolist()) for n in range(3)) / 3
    assert terms[TERMS.index("kl")].item() == pytest.approx(sum(kl) / 3, rel=1e-6)
    assert loss.item() == pytest.approx(recon + 0.5 * sum(kl) / 3, rel=1e-9)


def test_vamp_iwae_bound_and_eval_use_the_mixture_prior():
    model = vamp_vae("iwae")
    objective = make_objective("iwae", "bernoulli", 1.0, {"kind": "none"}, 2, model={"prior": "vamp"})
    torch.manual_seed(4)
    eps = torch.randn(2, 3, 2, dtype=torch.float64)
    torch.manual_seed(4)
    _, loss, _ = objective.step(model, X, X, 1.0)
    mu, logvar = model.encode(X)
    bound = []
    for n in range(3):
        var = [math.exp(v) for v in logvar[n].tolist()]
        log_w = []
        for i in range(2):
            z = [m + math.sqrt(v) * e for m, v, e in zip(mu[n].tolist(), var, eps[i, n].tolist())]
            logits = model.decode(torch.tensor([z], dtype=torch.float64)).flatten().tolist()
            log_w.append(bernoulli_log_px(logits, X[n].flatten().tolist()) + hand_vamp_log_prior(model, z)
                         - log_normal(z, mu[n].tolist(), var))
        bound.append(math.log(sum(math.exp(w) for w in log_w) / 2))
    assert loss.item() == pytest.approx(-sum(bound) / 3, rel=1e-9)
    # aectl eval's estimate on the same ε
    assert metrics.iw_log_likelihood(model, X, 2, eps=eps).tolist() == pytest.approx(bound, rel=1e-9)


def test_vamp_samples_come_from_the_mixture():
    model = vamp_vae(pseudo_inputs=2)
    with torch.no_grad():
        model.posterior.weight.zero_()
        model.posterior.bias.copy_(torch.tensor([0.0, 0.0, -20.0, -20.0]))  # σ ≈ 0 at every input
        model.posterior.weight[0, 0] = 1.0  # μ_1 = the first hidden unit
    mu_k = model.encode(model.pseudo_inputs())[0]
    z = model.sample_prior(200, torch.Generator().manual_seed(0))
    distance = (z.unsqueeze(1) - mu_k.unsqueeze(0)).norm(dim=-1).min(1).values
    assert distance.max().item() < 1e-3  # every draw sits on a component's mean


def two_layer(k: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("hvae", input_shape=SHAPE, latent_dims=[2, 1], hidden_dims=[3], top_hidden_dims=[2],
                       activation="tanh", likelihood="bernoulli", k=k).double()


def hand_two_layer_log_weights(model, x: torch.Tensor, eps1: torch.Tensor, eps2: torch.Tensor) -> list[list[float]]:
    """log w = log p(x|z1) + log p(z1|z2) + log N(z2; 0, 1) − log q(z1|x) − log q(z2|z1), each
    network called on one vector at a time, every density written out."""
    mu1, logvar1 = (t.tolist() for t in model.encode(x))
    rows = []
    for i in range(eps1.shape[0]):
        row = []
        for n in range(x.shape[0]):
            var1 = [math.exp(v) for v in logvar1[n]]
            z1 = [m + math.sqrt(v) * e for m, v, e in zip(mu1[n], var1, eps1[i, n].tolist())]
            mu2, logvar2 = (t.flatten().tolist() for t in model.encode_upper(torch.tensor([z1], dtype=torch.float64)))
            var2 = [math.exp(v) for v in logvar2]
            z2 = [m + math.sqrt(v) * e for m, v, e in zip(mu2, var2, eps2[i, n].tolist())]
            prior = model.upper_prior(torch.tensor([z2], dtype=torch.float64)).flatten().tolist()
            prior_mu, prior_var = prior[:2], [math.exp(v) for v in prior[2:]]
            logits = model.decode(torch.tensor([z1], dtype=torch.float64)).flatten().tolist()
            row.append(bernoulli_log_px(logits, x[n].flatten().tolist()) + log_normal(z1, prior_mu, prior_var)
                       + log_normal(z2, [0.0], [1.0]) - log_normal(z1, mu1[n], var1) - log_normal(z2, mu2, var2))
        rows.append(row)
    return rows


@pytest.mark.parametrize("k", [1, 3])
def test_two_layer_iw_bound_against_a_hand_computation(k):
    model = two_layer(k)
    generator = torch.Generator().manual_seed(7)
    eps1 = torch.randn((k, 3, 2), generator=generator, dtype=torch.float64)
    eps2 = torch.randn((k, 3, 1), generator=generator, dtype=torch.float64)
    log_w = hand_two_layer_log_weights(model, X, eps1, eps2)
    bound = [math.log(sum(math.exp(log_w[i][n]) for i in range(k)) / k) for n in range(3)]
    estimate = metrics.iw_log_likelihood(model, X, k, generator=torch.Generator().manual_seed(7))
    assert estimate.tolist() == pytest.approx(bound, rel=1e-10)
    objective = make_objective("hvae", "bernoulli", 1.0, {"kind": "none"}, k)
    torch.manual_seed(7)  # training draws ε1 then ε2 from the global RNG, as the generator above
    _, loss, terms = objective.step(model, X, X, 1.0)
    assert loss.item() == pytest.approx(-sum(bound) / 3, rel=1e-10)
    if k > 1:
        weights = [[math.exp(log_w[i][n]) for i in range(k)] for n in range(3)]
        ess = sum(sum(w) ** 2 / sum(v * v for v in w) for w in weights) / 3
        assert terms[TERMS.index("ess")].item() == pytest.approx(ess, rel=1e-5)


def test_two_layer_k1_is_the_elbo_and_beta_weighs_its_kl():
    model = two_layer(1)
    generator = torch.Generator().manual_seed(3)
    eps1 = torch.randn((1, 3, 2), generator=generator, dtype=torch.float64)
    eps2 = torch.randn((1, 3, 1), generator=generator, dtype=torch.float64)
    log_w = hand_two_layer_log_weights(model, X, eps1, eps2)[0]
    objective = make_objective("hvae", "bernoulli", 1.0, {"kind": "none"}, 1)
    torch.manual_seed(3)
    out, loss_at_1, terms = objective.step(model, X, X, 1.0)
    recon, kl = terms[TERMS.index("recon")].item(), terms[TERMS.index("kl")].item()
    assert loss_at_1.item() == pytest.approx(-sum(log_w) / 3, rel=1e-10)  # −ELBO = −L_1
    assert recon + kl == pytest.approx(-sum(log_w) / 3, rel=1e-6)
    assert metrics.elbo(model, X, generator=torch.Generator().manual_seed(3)).tolist() == pytest.approx(log_w, rel=1e-10)
    torch.manual_seed(3)
    _, loss_at_quarter, _ = objective.step(model, X, X, 0.25)
    assert loss_at_quarter.item() == pytest.approx(recon + 0.25 * kl, rel=1e-6)
    assert "beta" in objective.named(terms.tolist(), 0.25) and "ess" not in objective.named(terms.tolist(), 0.25)


def test_burda_schedule_stages_and_lrs():
    # stage i lasts 3^i epochs: epoch 0; 1–3; 4–12; 13–39; …; 1093 onwards (the last)
    assert [burda_stage(e) for e in (0, 1, 3, 4, 12, 13, 39, 40, 1092, 1093, 3279, 5000)] == \
        [0, 1, 1, 2, 2, 3, 3, 4, 6, 7, 7, 7]
    assert sum(1 for e in range(3280) if burda_stage(e) == 7) == 3 ** 7
    for epoch, stage in ((0, 0), (2, 1), (500, 6), (2000, 7)):
        assert lr_at(0, epoch, base_lr=1e-3, kind="burda") == pytest.approx(1e-3 * 10 ** (-stage / 7))


@pytest.mark.parametrize("overrides, fragment", [
    (["model=vae", "model.prior=mixture"], "model.prior='mixture' is not allowed: one of gaussian, vamp"),
    (["model=cvae", "dataset=digits", "model.prior=vamp"], "model.prior='vamp' is not allowed: gaussian for model=cvae"),
    (["model=hvae", "model.prior=vamp"], "model.prior='vamp' is not allowed: gaussian for model=hvae"),
    (["model=vae", "model.pseudo_inputs=20"], "model.pseudo_inputs=20 is not allowed: unset unless model.prior=vamp"),
    (["model=vae", "model.prior=vamp", "model.pseudo_inputs=0"], "model.pseudo_inputs=0 is not allowed: an integer ≥ 1"),
    (["model=vae", "model.latent_dims=[4,2]"], "model.latent_dims=[4, 2] is not allowed: unset for model=vae"),
    (["model=vae", "model.top_hidden_dims=[8]"], "model.top_hidden_dims=[8] is not allowed: unset for model=vae"),
    (["model=hvae", "model.latent_dims=[4]"], "model.latent_dims=[4] is not allowed: two sizes > 0"),
    (["model=hvae", "model.latent_dim=4"], "model.latent_dim=4 is not allowed: unset for model=hvae"),
    (["model=hvae", "model.arch=conv"], "model.arch='conv' is not allowed: mlp for model=hvae"),
    (["model=hvae", "noise=gaussian"], "noise.kind='gaussian' is not allowed: none for model=hvae"),
    (["model=hvae", "model.k=3", "beta=0.5"], "beta=0.5 is not allowed: 1.0 for model=hvae with model.k=3"),
    (["model=vae", "lr_schedule=burda", "lr_schedule.gamma=0.5"], "lr_schedule=burda does not use gamma"),
])
def test_bad_prior_and_two_layer_settings_end_in_one_line(capsys, overrides, fragment):
    from aectl.cli import main

    assert main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines


def test_two_layer_and_vamp_runs_train_and_evaluate(tmp_path):
    """Through the command line: a VampPrior VAE, a VampPrior IWAE and a two-layer model (ELBO and
    L_3) train on digits, and `aectl eval` reports their IW estimate, which for the two-layer
    model is at least its ELBO on average; active units of both layers; prior samples."""
    import json

    from aectl.cli import main

    runs = {"vamp": ["model=vae", "model.prior=vamp", "model.pseudo_inputs=16"],
            "vamp_iwae": ["model=iwae", "model.prior=vamp", "model.pseudo_inputs=16"],
            "hvae": ["model=hvae", "model.latent_dims=[8,4]", "model.hidden_dims=[32]", "model.top_hidden_dims=[16]",
                     "model.likelihood=continuous_bernoulli"],
            "hvae_k3": ["model=hvae", "model.k=3", "model.latent_dims=[8,4]", "model.hidden_dims=[32]",
                        "model.top_hidden_dims=[16]", "model.likelihood=continuous_bernoulli"]}
    for name, overrides in runs.items():
        run = tmp_path / name
        assert main(["train", *overrides, "dataset=digits", "trainer.epochs=2", "trainer.progress=false",
                     f"hydra.run.dir={run}"]) == 0
        assert main(["eval", f"ckpt={run}", "k=20", "progress=false", "projector=false"]) == 0
        result = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())
        values = result["metrics"]
        assert math.isfinite(values["nll_iw"]) and values["nll_iw"] <= values["neg_elbo"] + 1.0
        assert (run / "eval" / result["name"] / "samples.png").exists()
        if name.startswith("hvae"):
            assert result["latent_dims"] == [8, 4] and 0 <= values["active_units_z2"] <= 4
            assert 0 <= values["active_units"] <= 8
        else:
            assert result["prior"] == "vamp" and result["pseudo_inputs"] == 16


def test_the_likelihood_presets_compose_and_differ_from_mnist_vae_where_they_say():
    import dataclasses

    from aectl.cli.compose import compose_train_config
    from aectl.config.checks import validate

    def flat(overrides):
        config = compose_train_config(overrides)
        validate(config)
        return {f"{group}.{k}": v for group, section in dataclasses.asdict(config).items()
                if isinstance(section, dict) for k, v in section.items()} | \
               {k: v for k, v in dataclasses.asdict(config).items() if not isinstance(v, dict)}

    vae = flat(["experiment=mnist_vae"])
    differences = {name: {k for k in vae if flat([f"experiment={name}"])[k] != vae[k]}
                   for name in ("mnist_vamp", "mnist_hvae", "mnist_vae_long", "mnist_iwae_long")}
    assert differences["mnist_vamp"] == {"model.prior"}  # 500 pseudo-inputs is the field's default
    assert {"model.kind", "model.latent_dims"} <= differences["mnist_hvae"]
    assert not {"trainer.epochs", "trainer.lr", "trainer.batch_size", "lr_schedule.kind"} & differences["mnist_hvae"]
    long = flat(["experiment=mnist_vae_long"])
    assert (long["trainer.epochs"], long["trainer.batch_size"], long["trainer.lr"], long["lr_schedule.kind"]) == \
        (3280, 20, 0.001, "burda")
    assert flat(["experiment=mnist_iwae_long"])["model.k"] == 5


def test_active_units_of_each_layer():
    """active_units counts z1's units, active_units_z2 those of μ(q(z2|z1 = μ1)), over the split."""
    from aectl.datasets.noise import Corruption
    from aectl.evaluation.validation import evaluate_split

    model = two_layer(1)
    with torch.no_grad():  # z1's means spread over the inputs; q(z2|z1)'s mean ignores z1 at first
        model.posterior.weight.mul_(30)
        model.upper_posterior[0].weight.div_(30)  # its tanh layer sees z1 at the scale it had
        model.upper_posterior[-1].weight.zero_()
        model.upper_posterior[-1].bias.zero_()
    x = torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64).round()
    objective = make_objective("hvae", "bernoulli", 1.0, {"kind": "none"}, 1)
    values = evaluate_split(model, [x[:25], x[25:]], objective, Corruption("none"), 1.0, (0.0, 1.0), False)
    mu1 = model.encode(x)[0]
    assert values["active_units"] == metrics.active_units(mu1)[0] == 2
    assert values["active_units_z2"] == 0  # z2's one unit does not vary with x
    with torch.no_grad():  # now it follows z1 through the first hidden unit of q(z2|z1)
        model.upper_posterior[-1].weight[0, 0] = 50.0
    values = evaluate_split(model, [x[:25], x[25:]], objective, Corruption("none"), 1.0, (0.0, 1.0), False)
    assert values["active_units_z2"] == metrics.active_units(model.encode_upper(mu1)[0])[0] == 1


def test_keep_every_keeps_a_checkpoint_of_every_nth_epoch(tmp_path):
    from aectl.cli import main
    from aectl.runs.checkpoint import load_checkpoint

    run = tmp_path / "run"
    assert main(["train", "trainer.epochs=4", "trainer.keep_every=2", "trainer.progress=false",
                 f"hydra.run.dir={run}"]) == 0
    kept = sorted(p.name for p in (run / "checkpoints").glob("epoch_*.pt"))
    assert kept == ["epoch_0002.pt", "epoch_0004.pt"]
    assert load_checkpoint(run / "checkpoints" / "epoch_0002.pt")["epoch"] == 2


@pytest.mark.parametrize("extra, recon, kl", [
    ({"latent_dims": [32, 16], "train_k": 1}, "−log p(x|z1) of one (z1, z2) ~ q(z1|x) q(z2|z1)",
     "KL(q(z1,z2|x) ‖ p(z1,z2)) (nats), estimated at the sampled z"),
    ({"latent_dims": [32, 16], "train_k": 5}, "−log p(x|z1) of the k training draws (z1, z2)",
     "KL(q(z1,z2|x) ‖ p(z1,z2)) (nats), estimated at the sampled z"),
])
def test_the_eval_table_names_what_a_two_layer_model_measures(extra, recon, kl):
    from aectl.evaluation.eval_tables import format_table
    from tests.test_tables import eval_result

    result = {**eval_result("hvae", {"recon": 80.0, "kl": 20.0, "active_units": 20, "active_units_z2": 9}), **extra}
    table = format_table(result)
    assert recon in table and kl in table
    assert "active units of z1 (of K=8)" in table and "active units of z2, at z1 = μ (of K=16)" in table
    vamp = format_table({**eval_result("vae", {"kl": 20.0}), "prior": "vamp"})
    assert "KL(q(z|x) ‖ p(z)) (nats), estimated at the sampled z" in vamp
    assert "estimated" not in format_table(eval_result("vae", {"kl": 20.0}))
