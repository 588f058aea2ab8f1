import math

import torch

from aectl import losses


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


def test_reconstruction_sums_features_and_returns_per_example():
    x = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])
    x_hat = torch.tensor([[[[0.5, 0.5]]], [[[1.0, 0.0]]]])
    assert torch.allclose(losses.reconstruction_nll(x_hat, x, "gaussian"), torch.tensor([0.5, 1.0]))
    logits = torch.zeros(1, 1, 1, 3)  # p = 0.5 everywhere → 3·log 2 nats
    assert math.isclose(losses.reconstruction_nll(logits, torch.ones(1, 1, 1, 3), "bernoulli").item(),
                        3 * math.log(2), rel_tol=1e-6)


def test_gaussian_log_likelihood_is_normalised():
    # ‖x − x̂‖² + D/2·log π is the NLL of N(x̂, ½I).
    x, x_hat = torch.randn(2, 1, 1, 5), torch.randn(2, 1, 1, 5)
    expected = torch.distributions.Normal(x_hat, math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(losses.log_likelihood(x_hat, x, "gaussian"), expected, atol=1e-5)


def test_l1_activity():
    code = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    assert losses.l1_activity(code).item() == 3.0
