"""The composed objective against hand-computed values, for every model kind: each term with
its weight and its reduction (summed over features, averaged over the batch). Batches hold
examples of different sizes of error, so a sum over the batch or a mean over the features
gives another number."""

import math

import pytest
import torch

from aectl.models import ModelOutput, build_model, reparameterize
from aectl.objectives.objective import TERMS, Objective, make_objective

X = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]).view(2, 1, 1, 3)
RECON = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.25]]).view(2, 1, 1, 3)  # means (gaussian) or logits
MU = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
LOGVAR = torch.tensor([[math.log(4.0), math.log(0.25)], [0.0, math.log(2.0)]])
CODE = torch.tensor([[0.2, 0.9], [0.4, 0.1]])  # a (0, 1) code: ρ̂ = (0.3, 0.5)


def _rows(t: torch.Tensor) -> list[list[float]]:
    return t.view(2, -1).tolist()


def gaussian_nll_by_hand(sigma: float) -> float:
    """Mean over the two examples of Σ_j (x_j − x̂_j)²/(2σ²) + D/2·log(2πσ²), D = 3."""
    per_example = [sum((a - b) ** 2 for a, b in zip(x, r)) / (2 * sigma ** 2) + 1.5 * math.log(2 * math.pi * sigma ** 2)
                   for x, r in zip(_rows(X), _rows(RECON))]
    return sum(per_example) / 2


def bernoulli_nll_by_hand() -> float:
    """Mean over examples of −Σ_j [x log s(l) + (1 − x) log(1 − s(l))], s the logistic sigmoid."""
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    per_example = [-sum(x * math.log(sig(v)) + (1 - x) * math.log(1 - sig(v)) for x, v in zip(xs, ls))
                   for xs, ls in zip(_rows(X), _rows(RECON))]
    return sum(per_example) / 2


def kl_by_hand() -> float:
    """Mean over examples of ½ Σ_j (σ_j² + μ_j² − 1 − log σ_j²)."""
    per_example = [0.5 * sum(math.exp(lv) + m ** 2 - 1 - lv for m, lv in zip(ms, lvs))
                   for ms, lvs in zip(MU.tolist(), LOGVAR.tolist())]
    return sum(per_example) / 2


def kl_sparsity_by_hand(rho: float) -> float:
    rho_hat = [0.3, 0.5]  # column means of CODE
    return sum(rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r)) for r in rho_hat)


def terms(objective: Objective, out: ModelOutput, beta: float) -> dict[str, float]:
    loss, stacked = objective(out, X, beta)
    assert loss.item() == pytest.approx(stacked[TERMS.index("loss")].item(), rel=1e-6)
    return objective.named(stacked.tolist(), beta)


@pytest.mark.parametrize("kind", ["ae", "stacked_ae", "dae"])
@pytest.mark.parametrize("sigma", [0.5, 0.2])
def test_ae_loss_is_the_gaussian_nll_with_sigma(kind, sigma):
    got = terms(make_objective(kind, "gaussian", sigma, {"kind": "none"}), ModelOutput(RECON, CODE), beta=0.0)
    assert got == pytest.approx({"loss": gaussian_nll_by_hand(sigma), "recon": gaussian_nll_by_hand(sigma)})


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_vae_loss_is_recon_plus_beta_times_the_batch_mean_kl(beta):
    objective = make_objective("vae", "bernoulli", 0.5, {"kind": "none"})
    got = terms(objective, ModelOutput(RECON, MU, MU, LOGVAR), beta)
    recon, kl = bernoulli_nll_by_hand(), kl_by_hand()
    assert got == pytest.approx({"loss": recon + beta * kl, "recon": recon, "kl": kl, "kl_weighted": beta * kl,
                                 "beta": beta}, rel=1e-5)


def test_vae_with_a_gaussian_decoder_uses_its_sigma():
    got = terms(make_objective("vae", "gaussian", 0.3, {"kind": "none"}), ModelOutput(RECON, MU, MU, LOGVAR), 1.0)
    assert got["loss"] == pytest.approx(gaussian_nll_by_hand(0.3) + kl_by_hand(), rel=1e-5)


@pytest.mark.parametrize("weight,rho", [(3.0, 0.05), (0.7, 0.2)])
def test_sparse_ae_adds_weight_times_the_kl_sparsity_of_the_batch_mean_activation(weight, rho):
    objective = make_objective("sparse_ae", "gaussian", 0.5, {"kind": "kl_sparsity", "rho": rho, "beta": weight})
    got = terms(objective, ModelOutput(RECON, CODE), beta=0.0)
    penalty = weight * kl_sparsity_by_hand(rho)
    assert got == pytest.approx({"loss": gaussian_nll_by_hand(0.5) + penalty, "recon": gaussian_nll_by_hand(0.5),
                                 "penalty": penalty}, rel=1e-5)


def test_l1_penalty_is_weight_times_the_batch_mean_of_the_summed_absolute_code():
    code = torch.tensor([[1.0, -2.0], [0.0, 3.0]])  # Σ_j |h_j| = 3 and 3: mean 3, sum over the batch 6
    objective = make_objective("ae", "bernoulli", 0.5, {"kind": "l1", "weight": 0.01})
    got = terms(objective, ModelOutput(RECON, code), beta=0.0)
    assert got == pytest.approx({"loss": bernoulli_nll_by_hand() + 0.03, "recon": bernoulli_nll_by_hand(),
                                 "penalty": 0.03}, rel=1e-5)


def test_only_the_terms_a_variant_has_are_named():
    row = [1.0, 2.0, 3.0, 4.0]
    assert set(make_objective("ae", "gaussian", 0.5, {"kind": "none"}).named(row, 0.0)) == {"loss", "recon"}
    assert set(make_objective("sparse_ae", "gaussian", 0.5, {"kind": "kl_sparsity"}).named(row, 0.0)) == \
        {"loss", "recon", "penalty"}
    assert set(make_objective("vae", "bernoulli", 0.5, {"kind": "none"}).named(row, 0.5)) == \
        {"loss", "recon", "kl", "kl_weighted", "beta"}


# ---------------------------------------------------------------- the reparameterisation


def test_reparameterize_is_mu_plus_sigma_times_eps_by_hand():
    eps = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    # σ = exp(½ log σ²): (2, 0.5) and (1, √2); σ² would give (4, 0.25) and (1, 2).
    expected = torch.tensor([[1.0 + 2 * 0.5, -2.0 + 0.5 * -1.0], [0.5 + 1 * 2.0, 0.0 + math.sqrt(2) * 0.3]])
    assert torch.allclose(reparameterize(MU, LOGVAR, eps), expected)


def test_vae_forward_samples_z_by_the_reparameterisation_of_its_own_posterior():
    torch.manual_seed(0)
    model = build_model("vae", input_shape=[1, 2, 3], latent_dim=2, hidden_dims=[8])
    with torch.no_grad():
        model.posterior.bias.copy_(torch.tensor([0.3, -0.2, 1.2, -1.5]))  # log σ² far from 0: σ ≠ σ²
    x = torch.rand(5, 1, 2, 3)
    mu, logvar = model.encode(x)
    torch.manual_seed(7)
    eps = torch.randn_like(mu)
    torch.manual_seed(7)
    out = model(x)
    assert torch.allclose(out.z, mu + (0.5 * logvar).exp() * eps, atol=1e-6)
    assert torch.allclose(out.mu, mu) and torch.allclose(out.logvar, logvar)
    assert torch.allclose(out.recon, model.decode(out.z), atol=1e-6)  # the decoder sees that z


# ---------------------------------------------------------------- validation's VAE terms


def test_validation_counts_active_units_of_mu_and_scores_a_noisy_vae_at_its_sigma():
    """Active units are of μ(x), not of a sampled z (Burda et al. 2016, §5.2): μ constant here, z
    spread by σ² ≈ 7. The −ELBO of a denoising VAE's clean input uses the decoder's σ: a constant
    decoder makes it ‖x − x̂‖²/(2σ²) + D/2·log(2πσ²) + KL whatever z is drawn."""
    from aectl.evaluation.validation import evaluate_split
    from aectl.objectives.losses import gaussian_kl

    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 1, 3), latent_dim=2, hidden_dims=[4], likelihood="gaussian",
                        sigma=0.3)
    with torch.no_grad():
        model.posterior.weight[:2].zero_()  # μ = its bias for every x
        model.posterior.bias.copy_(torch.tensor([0.5, -0.5, 2.0, 2.0]))
        head = model.decoder.body[-2]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-1.0, 0.2, 1.5]))
    x = torch.tensor([[0.1, 0.9, 0.4], [0.7, 0.2, 0.6], [0.3, 0.5, 0.8]]).view(3, 1, 1, 3)
    objective = make_objective("vae", "gaussian", 0.3, {"kind": "none"})
    assert evaluate_split(model, [x], objective, lambda b: b, 1.0, (0.0, 1.0), False)["active_units"] == 0
    values = evaluate_split(model, [x], objective, lambda b: (b + 0.1).clamp(0, 1), 1.0, (0.0, 1.0), True)
    x_hat = torch.tensor([-1.0, 0.2, 1.5]).sigmoid()
    nll = [sum((a - b) ** 2 for a, b in zip(row, x_hat.tolist())) / (2 * 0.09) + 1.5 * math.log(2 * math.pi * 0.09)
           for row in x.view(3, 3).tolist()]
    with torch.no_grad():
        kl = gaussian_kl(*model.encode(x)).mean().item()
    assert values["neg_elbo"] == pytest.approx(sum(nll) / 3 + kl, rel=1e-5)
