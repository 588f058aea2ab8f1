import math

import pytest
import torch

from aectl.models import build_model, continuous_bernoulli_mean
from aectl.objectives import losses, metrics


def test_gaussian_kl_of_standard_normal_is_zero():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert torch.allclose(losses.gaussian_kl(mu, logvar), torch.zeros(3))


def test_gaussian_kl_matches_closed_form_by_hand():
    # KL(N(μ, σ²) ‖ N(0, 1)) = ½(σ² + μ² − 1 − log σ²) per dimension.
    mu = torch.tensor([[1.0, -2.0]])
    sigma2 = torch.tensor([[4.0, 0.25]])
    expected = 0.5 * (4 + 1 - 1 - math.log(4)) + 0.5 * (0.25 + 4 - 1 - math.log(0.25))
    assert math.isclose(losses.gaussian_kl(mu, sigma2.log()).item(), expected, rel_tol=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(losses.gaussian_kl(mu, logvar), expected, atol=1e-5)


def test_kl_sparsity_by_hand():
    # Two units; mean activations over the batch are 0.1 and 0.5; ρ = 0.05.
    code = torch.tensor([[0.0, 0.4], [0.2, 0.6]])
    rho = 0.05
    kl = lambda r: rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r))  # noqa: E731
    assert math.isclose(losses.kl_sparsity(code, rho).item(), kl(0.1) + kl(0.5), rel_tol=1e-5)


def test_kl_sparsity_is_zero_at_target_and_finite_at_extremes():
    assert abs(losses.kl_sparsity(torch.full((4, 3), 0.05), 0.05).item()) < 1e-6
    assert math.isfinite(losses.kl_sparsity(torch.zeros(4, 3), 0.05).item())
    assert math.isfinite(losses.kl_sparsity(torch.ones(4, 3), 0.05).item())


def test_gaussian_reconstruction_is_the_normalised_nll_with_sigma():
    # −log N(x; x̂, σ²I) = ‖x − x̂‖²/(2σ²) + D/2·log(2πσ²), by hand for D = 2, σ = 0.5.
    x = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])
    x_hat = torch.tensor([[[[0.5, 0.5]]], [[[1.0, 0.0]]]])
    const = math.log(2 * math.pi * 0.25)  # D/2 · log(2πσ²) with D = 2
    expected = torch.tensor([0.5 / 0.5 + const, 1.0 / 0.5 + const])
    assert torch.allclose(losses.reconstruction_nll(x_hat, x, "gaussian", sigma=0.5), expected)


@pytest.mark.parametrize("sigma", [0.05, 0.3, losses.DEFAULT_SIGMA, 2.0])
def test_gaussian_log_likelihood_matches_torch_distributions(sigma):
    torch.manual_seed(0)
    x, x_hat = torch.randn(3, 1, 2, 5), torch.randn(3, 1, 2, 5)
    expected = torch.distributions.Normal(x_hat, sigma).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(losses.log_likelihood(x_hat, x, "gaussian", sigma), expected, rtol=1e-5, atol=1e-3)


def test_default_sigma_is_the_squared_error_plus_a_constant():
    x, x_hat = torch.rand(4, 1, 1, 6), torch.rand(4, 1, 1, 6)
    squared = (x - x_hat).square().flatten(1).sum(1)
    assert torch.allclose(losses.reconstruction_nll(x_hat, x, "gaussian"), squared + 3 * math.log(math.pi))


def test_bernoulli_reconstruction_is_the_exact_mass_of_binary_data():
    torch.manual_seed(0)
    logits, x = torch.randn(4, 1, 3, 3) * 3, torch.randint(0, 2, (4, 1, 3, 3)).float()
    expected = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(losses.reconstruction_nll(logits, x, "bernoulli"), expected, atol=1e-5)
    half = losses.reconstruction_nll(torch.zeros(1, 1, 1, 3), torch.ones(1, 1, 1, 3), "bernoulli")
    assert math.isclose(half.item(), 3 * math.log(2), rel_tol=1e-6)  # p = ½ everywhere: 3·log 2 nats


def test_continuous_bernoulli_matches_torch_distributions_also_near_half():
    logits = torch.tensor([-30.0, -4.0, -0.5, -1e-3, 0.0, 2e-3, 0.7, 5.0, 25.0]).view(1, 1, 1, 9)
    x = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.5, 0.9, 0.6, 1.0, 0.99]).view(1, 1, 1, 9)
    expected = -torch.distributions.ContinuousBernoulli(logits=logits.double()).log_prob(x.double())
    got = losses.reconstruction_nll(logits, x, "continuous_bernoulli")
    assert math.isclose(got.item(), expected.sum().item(), rel_tol=1e-4, abs_tol=1e-3)


@pytest.mark.parametrize("logit", [-6.0, -0.3, 0.0, 1e-3, 2.5])
def test_continuous_bernoulli_density_integrates_to_one(logit):
    x = torch.linspace(0, 1, 20001).view(-1, 1, 1, 1)
    density = losses.log_likelihood(torch.full_like(x, logit), x, "continuous_bernoulli").exp()
    assert math.isclose(torch.trapezoid(density.flatten(), x.flatten()).item(), 1.0, rel_tol=1e-4)


def continuous_bernoulli_mean_by_hand(logit: float) -> float:
    """E[x] = λ/(2λ − 1) + 1/(2·atanh(1 − 2λ)), λ = sigmoid(l) (Loaiza-Ganem & Cunningham 2019, §3)."""
    lam = 1 / (1 + math.exp(-logit))
    return lam / (2 * lam - 1) + 1 / (2 * math.atanh(1 - 2 * lam))


def test_continuous_bernoulli_reconstruction_is_its_mean_not_lambda():
    """What eval, the API and the pictures show of a continuous-Bernoulli decoder is E[x|z]: by the
    formula, by integrating x·p(x) of the normalised density, and far from λ (away from λ = ½,
    where the two coincide)."""
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 1, 4), latent_dim=2, hidden_dims=[3],
                        likelihood="continuous_bernoulli").double()
    with torch.no_grad():
        head = model.decoder.body[-2]  # the Linear before the Unflatten
        head.weight.mul_(0.1)
        head.bias.copy_(torch.tensor([-4.0, -1.5, 0.8, 3.0]))  # logits far from 0
    x = torch.rand(3, 1, 1, 4, dtype=torch.float64)
    logits = model.decode(model.encode(x)[0])
    got = metrics.reconstruct(model, x)
    by_hand = [continuous_bernoulli_mean_by_hand(v) for v in logits.flatten().tolist()]
    assert got.flatten().tolist() == pytest.approx(by_hand, rel=1e-9)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64).view(-1, 1, 1, 1)
    for logit, mean in zip(logits.flatten().tolist()[:4], got.flatten().tolist()[:4]):
        density = losses.log_likelihood(torch.full_like(grid, logit), grid, "continuous_bernoulli").exp().flatten()
        assert torch.trapezoid(grid.flatten() * density, grid.flatten()).item() == pytest.approx(mean, abs=1e-6)
    assert (got - logits.sigmoid()).abs().min().item() > 0.05  # λ itself would be a different picture
    near_half = torch.tensor([-5e-3, 0.0, 5e-3], dtype=torch.float64)  # the series branch
    assert continuous_bernoulli_mean(near_half).tolist() == pytest.approx(
        [continuous_bernoulli_mean_by_hand(-5e-3), 0.5, continuous_bernoulli_mean_by_hand(5e-3)], rel=1e-9)


@pytest.mark.parametrize("likelihood", losses.LIKELIHOODS)
def test_batch_mean_is_the_mean_of_the_per_example_losses(likelihood):
    torch.manual_seed(1)
    recon, x = torch.randn(5, 1, 3, 4), torch.rand(5, 1, 3, 4)
    per_example = losses.reconstruction_nll(recon, x, likelihood, 0.4)
    batch_mean = losses.reconstruction_batch_mean(recon, x, likelihood, 0.4)
    assert math.isclose(batch_mean.item(), per_example.mean().item(), rel_tol=1e-5)
    # Summed over features, not averaged: doubling the features (same values) doubles it.
    doubled = losses.reconstruction_batch_mean(recon.repeat(1, 1, 2, 1), x.repeat(1, 1, 2, 1), likelihood, 0.4)
    assert math.isclose(doubled.item(), 2 * batch_mean.item(), rel_tol=1e-5)


def test_l1_activity():
    code = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    assert losses.l1_activity(code).item() == 3.0


# ---------------------------------------------------------------- what every picture shows


def constant_decoder_vae(likelihood: str) -> torch.nn.Module:
    """A VAE whose decoder emits the same logits l for every z (its head's weights zeroed), so
    E[x|z] is known whatever z a path draws: sigmoid(l) (Bernoulli) or the continuous
    Bernoulli's mean, which differs from both l and λ = sigmoid(l)."""
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 2, 2), latent_dim=2, hidden_dims=[3], likelihood=likelihood)
    with torch.no_grad():
        head = model.decoder.body[-2]  # the Linear before the Unflatten
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-4.0, -1.5, 0.8, 3.0]))
    return model


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_every_reconstruction_and_picture_path_shows_the_mean_not_a_parameter(likelihood):
    """eval's reconstructions, validation's mse/psnr, prior samples, traversals, the API and the
    training log's images: each is E[x|z], by hand, not the logits or λ."""
    from types import SimpleNamespace

    from torchvision.utils import make_grid

    from aectl import api
    from aectl.evaluation import pictures
    from aectl.evaluation.validation import evaluate_split
    from aectl.objectives.objective import make_objective
    from aectl.runs import tracking
    from aectl.training.training_log import log_images

    model = constant_decoder_vae(likelihood)
    logits = [-4.0, -1.5, 0.8, 3.0]
    by_hand = [1 / (1 + math.exp(-v)) if likelihood == "bernoulli" else continuous_bernoulli_mean_by_hand(v)
               for v in logits]
    mean = torch.tensor(by_hand).view(1, 1, 2, 2)

    def assert_mean(images, n):
        assert images.shape == (n, 1, 2, 2)
        assert images.flatten().tolist() == pytest.approx(by_hand * n, abs=1e-6)

    x = torch.rand(3, 1, 2, 2)
    assert_mean(metrics.reconstruct(model, x), 3)
    assert_mean(pictures.prior_samples(model, 5), 5)
    traversal = pictures.traversal_grid(model, torch.zeros(2), steps=3)
    assert torch.allclose(traversal, pictures.samples_grid(mean.expand(6, 1, 2, 2), nrow=3), atol=1e-6)
    wrapped = api.Autoencoder(model, {"config": {}, "model": {"kind": "vae"}}, {})
    assert_mean(wrapped.reconstruct(x), 3)
    assert_mean(wrapped.sample(4), 4)
    assert_mean(wrapped.decode(torch.randn(2, 2)), 2)

    values = evaluate_split(model, [x], make_objective("vae", likelihood, 1.0, {"kind": "none"}), lambda b: b, 1.0,
                            (0.0, 1.0), False)
    # ... and the loss reads the decoder's output as logits (not squashed to probabilities first)
    lam = [1 / (1 + math.exp(-v)) for v in logits]
    log_c = [math.log(2 * math.atanh(1 - 2 * p) / (1 - 2 * p)) if likelihood != "bernoulli" else 0.0 for p in lam]
    recon = [-sum(xi * math.log(p) + (1 - xi) * math.log(1 - p) + c for xi, p, c in zip(row, lam, log_c))
             for row in x.view(3, 4).tolist()]
    assert values["recon"] == pytest.approx(sum(recon) / 3, rel=1e-5)
    mse = (mean - x).square().flatten(1).mean(1)
    assert values["mse"] == pytest.approx(mse.mean().item(), rel=1e-5)
    assert values["psnr"] == pytest.approx((-10 * mse.log10()).mean().item(), rel=1e-5)

    images = {}
    tracker = SimpleNamespace(image=lambda tag, image, step: images.update({tag: image}),
                              histogram=lambda *args: None)
    log_images(model, x, lambda b: b, tracker, step=1)
    for tag in (tracking.IMG_RECON, tracking.IMG_SAMPLES):
        assert torch.allclose(images[tag], make_grid(mean.expand(3, 1, 2, 2), nrow=8, pad_value=1.0), atol=1e-6)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_cvae_class_samples_show_the_mean(likelihood):
    from aectl.evaluation import pictures

    torch.manual_seed(0)
    model = build_model("cvae", input_shape=(1, 2, 2), latent_dim=2, num_classes=3, hidden_dims=[3],
                        likelihood=likelihood)
    with torch.no_grad():
        head = model.decoder.body[-2]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-4.0, -1.5, 0.8, 3.0]))
    by_hand = [1 / (1 + math.exp(-v)) if likelihood == "bernoulli" else continuous_bernoulli_mean_by_hand(v)
               for v in (-4.0, -1.5, 0.8, 3.0)]
    images = pictures.class_samples(model, 2)
    assert images.shape == (6, 1, 2, 2) and images.flatten().tolist() == pytest.approx(by_hand * 6, abs=1e-6)
