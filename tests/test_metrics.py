"""Metrics and pictures of `aectl eval` against hand-computed values and known estimator facts."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aectl.datasets.noise import Corruption
from aectl.evaluation import pictures
from aectl.models import build_model
from aectl.objectives import losses, metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def digits():
    """sklearn's bundled 8×8 digits (offline), scaled to [0, 1]: x (1797, 1, 8, 8), y (1797,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    return x, torch.tensor(data.target)


@pytest.fixture(scope="module")
def trained_vae(digits):
    """A tiny MLP VAE (64-64-4) after 400 Adam steps on the first 1400 digits (~2 s on a CPU).
    One thread: for a model this small, a second one only adds contention on a busy 2-core box."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = digits[0][:1400]
    model = build_model("vae", input_shape=[1, 8, 8], latent_dim=4, hidden_dims=[64],
                        likelihood="bernoulli")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        batch = x[torch.randint(0, len(x), (128,))]
        out = model(batch)
        loss = (losses.reconstruction_nll(out.recon, batch, "bernoulli")
                + losses.gaussian_kl(out.mu, out.logvar)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return model


def _vae(arch: str, likelihood: str) -> nn.Module:
    return build_model("vae", input_shape=[1, 8, 8], latent_dim=3, arch=arch, hidden_dims=[16],
                       conv_channels=[4, 8], likelihood=likelihood)


# ---------------------------------------------------------------- reconstruction metrics


def test_psnr_hand_values():
    x = torch.zeros(3, 1, 4, 4)
    x_hat = torch.full_like(x, 0.1)                       # MSE 0.01 → 10·log10(1/0.01) = 20 dB
    x_hat[1] = 0.5                                        # MSE 0.25 → 10·log10(4) = 6.0206 dB
    x_hat[2] = 0.0                                        # MSE 0 → capped at 100 dB
    assert torch.allclose(metrics.psnr(x_hat, x), torch.tensor([20.0, 10 * math.log10(4), 100.0]))
    # MAX = 255: an offset of 25.5 is 10 % of the range again → 20 dB.
    assert metrics.psnr(torch.full((1, 3, 2, 2), 25.5), torch.zeros(1, 3, 2, 2), 255.0).item() == \
        pytest.approx(20.0, abs=1e-4)


def test_per_element_mse_is_per_example_mean():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    assert torch.allclose(metrics.per_element_mse(x_hat, x), torch.tensor([0.25, 0.25]))


def test_active_units_hand_built():
    signs = torch.tensor([1.0, -1.0]).repeat(50)          # ±1 → mean 0, population variance 1
    mu = torch.stack([signs, 0.05 * signs, torch.full_like(signs, 3.0), 0.2 * signs], 1)
    count, variances = metrics.active_units(mu)
    assert count == 2                                     # variances 1, 0.0025, 0, 0.04
    assert torch.allclose(variances, torch.tensor([1.0, 0.0025, 0.0, 0.04]))
    assert metrics.active_units(mu, threshold=0.001)[0] == 3


def test_sparsity_stats_hand_built():
    rho = 0.05
    ones_per_unit = [2, 4, 1, 8, 0]                       # of 40 rows → ρ̂ = .05 .1 .025 .2 0
    codes = torch.zeros(40, 5)
    for j, n in enumerate(ones_per_unit):
        codes[:n, j] = 1.0
    stats = metrics.sparsity_stats(codes, rho)
    assert stats["rho_hat_mean"] == pytest.approx(0.075)
    # torch.quantile interpolates linearly in the sorted ρ̂ = [0, .025, .05, .1, .2].
    assert stats["rho_hat_q05"] == pytest.approx(0.005)
    assert stats["rho_hat_q25"] == pytest.approx(0.025)
    assert stats["rho_hat_q50"] == pytest.approx(0.05)
    assert stats["rho_hat_q75"] == pytest.approx(0.1)
    assert stats["rho_hat_q95"] == pytest.approx(0.18)
    assert stats["frac_within_2x"] == pytest.approx(3 / 5)   # .05, .1, .025 lie in [ρ/2, 2ρ]

    def kl(r):  # KL(ρ ‖ r) of two Bernoullis, r clamped as the loss does
        r = min(max(r, 1e-6), 1 - 1e-6)
        return rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r))

    assert stats["kl_sparsity"] == pytest.approx(sum(kl(n / 40) for n in ones_per_unit), rel=1e-6)


# ---------------------------------------------------------------- VAE likelihood estimates


@pytest.mark.parametrize("arch,likelihood", [("mlp", "bernoulli"), ("conv", "gaussian")])
def test_iw_with_one_sample_is_the_elbo_on_the_same_draws(arch, likelihood):
    model = _vae(arch, likelihood)
    x = torch.rand(10, 1, 8, 8)
    eps = torch.randn(1, 10, 3)
    iw = metrics.iw_log_likelihood(model, x, 1, eps=eps)
    assert torch.allclose(iw, metrics.elbo(model, x, kl="sample", eps=eps[0]), rtol=1e-5, atol=1e-4)
    # The same through equally seeded generators instead of pre-drawn noise.
    iw_g = metrics.iw_log_likelihood(model, x, 1, generator=torch.Generator().manual_seed(3))
    elbo_g = metrics.elbo(model, x, kl="sample", generator=torch.Generator().manual_seed(3))
    assert torch.allclose(iw_g, elbo_g, rtol=1e-5, atol=1e-4)


def test_iw_chunking_does_not_change_the_estimate():
    model = _vae("mlp", "bernoulli")
    x = torch.rand(10, 1, 8, 8)
    eps = torch.randn(7, 10, 3)
    whole = metrics.iw_log_likelihood(model, x, 7, eps=eps, chunk=10_000)
    for chunk in (1, 3, 25):                              # example slices; 2-sample passes
        assert torch.allclose(metrics.iw_log_likelihood(model, x, 7, eps=eps, chunk=chunk), whole,
                              atol=1e-4)


def test_iw_is_reproducible_from_a_generator():
    model = _vae("mlp", "gaussian")
    x = torch.rand(6, 1, 8, 8)
    a = metrics.iw_log_likelihood(model, x, 9, chunk=12, generator=torch.Generator().manual_seed(5))
    b = metrics.iw_log_likelihood(model, x, 9, chunk=12, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def _reference_iw(model: nn.Module, x: torch.Tensor, k: int, chunk: int, seed: int) -> torch.Tensor:
    """log (1/k) Σ_s w_s written out plainly: the inputs repeated per sample, the likelihood of
    losses.py on (S·N) rows, log p(z) and log q(z|x) as normal densities, one logsumexp at the end;
    the noise drawn as the estimate draws it (⌊chunk/N⌋ samples of all N examples per draw)."""
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    mu, logvar = model.encode(x)
    log_w = []
    for start in range(0, k, chunk // n):
        s = min(chunk // n, k - start)
        eps = torch.randn((s, *mu.shape), generator=g)
        z = mu + (0.5 * logvar).exp() * eps
        x_rep = torch.cat([x] * s)
        log_px = losses.log_likelihood(model.decode(z.reshape(s * n, -1)), x_rep, model.likelihood, model.sigma)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
        log_w.append(log_px.view(s, n) + log_pz - log_qz)
    return torch.cat(log_w).double().logsumexp(0) - math.log(k)


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli", "gaussian"])
def test_iw_equals_a_plain_reference_on_the_same_seed(likelihood):
    # The estimate's arithmetic (x broadcast, BCE as softplus(l) − x·l) must not move its numbers.
    model = build_model("vae", input_shape=[1, 8, 8], latent_dim=3, hidden_dims=[16], likelihood=likelihood)
    with torch.no_grad():                                # confident logits, as a trained model has
        model.decoder.body[-2].weight.mul_(20)
    x = torch.rand(12, 1, 8, 8)
    if likelihood == "bernoulli":
        x = (x > 0.5).float()
    got = metrics.iw_log_likelihood(model, x, 50, chunk=48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = _reference_iw(model, x, 50, 48, seed=4)
    assert torch.allclose(got.double(), want, rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_iw_allocates_one_input_sized_temporary_per_pass_besides_the_decoder(likelihood):
    # Per-pass temporaries of (S·N, D) floats were what made the estimate slow (page faults):
    # x is broadcast, not copied S times, and the likelihood needs one such tensor.
    from torch.profiler import ProfilerActivity, profile

    model = build_model("vae", input_shape=[1, 16, 16], latent_dim=3, hidden_dims=[8], likelihood=likelihood)
    x, s, passes = torch.rand(32, 1, 16, 16), 8, 2
    rows_bytes = s * len(x) * x[0].numel() * 4

    def big_allocations(fn) -> int:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        return sum(e.self_cpu_memory_usage >= rows_bytes for e in prof.events())

    with torch.no_grad():
        decoder = big_allocations(lambda: model.decode(torch.randn(s * len(x), 3)))
    estimate = big_allocations(lambda: metrics.iw_log_likelihood(model, x, s * passes, chunk=s * len(x)))
    assert estimate == passes * (decoder + 1)


def _prior_posterior_constant_decoder(arch: str, likelihood: str) -> tuple[nn.Module, torch.Tensor]:
    """q(z|x) = N(0, I) = p(z) and a decoder whose output is a constant b (per channel for conv):
    then every importance weight equals p(x), so the estimate is exact for any k."""
    model = _vae(arch, likelihood)
    with torch.no_grad():
        model.posterior.weight.zero_()
        model.posterior.bias.zero_()
        last = [m for m in model.decoder.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
        last.weight.zero_()
        last.bias.copy_(torch.randn_like(last.bias))
    b = last.bias.view(1, 8, 8) if arch == "mlp" else last.bias.view(-1, 1, 1).expand(1, 8, 8)
    return model, b


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 7, 50])
def test_iw_is_exact_when_posterior_is_prior_and_decoder_constant(arch, likelihood, k):
    model, b = _prior_posterior_constant_decoder(arch, likelihood)
    x = (torch.rand(12, 1, 8, 8) > 0.5).float()
    if likelihood == "bernoulli":                         # Σ_d x_d log σ(b_d) + (1−x_d) log(1−σ(b_d))
        exact = (x * F.logsigmoid(b) + (1 - x) * F.logsigmoid(-b)).flatten(1).sum(1)
    else:                                                 # log N(x; σ(b), ½I) = −‖x − σ(b)‖² − D/2·log π
        exact = -(x - b.sigmoid()).square().flatten(1).sum(1) - 32 * math.log(math.pi)
    assert torch.allclose(metrics.iw_log_likelihood(model, x, k, chunk=40), exact, atol=1e-4)


def test_iw_tightens_with_k_on_a_trained_vae(trained_vae, digits):
    # All 1797 digits: across seeds the means vary by ≈ 0.02 nats (k=1) and < 0.01 (k=10, 100),
    # well below the gaps asserted on (≈ 0.27 and 0.05 nats).
    x = digits[0]
    g = torch.Generator().manual_seed(0)
    iw = {k: metrics.iw_log_likelihood(trained_vae, x, k, generator=g).mean().item()
          for k in (1, 10, 100)}
    elbo = metrics.elbo(trained_vae, x, generator=g).mean().item()
    # Measured (torch 2.14, CPU): IW k=1 −24.79, k=10 −24.52, k=100 −24.47; ELBO −24.82 nats.
    assert iw[1] < iw[10] < iw[100]
    assert elbo <= iw[10] and elbo <= iw[100]
    assert abs(elbo - iw[1]) < 0.15                       # equal in expectation (both the ELBO)


def test_linear_probe_on_trained_latent_beats_chance(trained_vae, digits):
    x, y = digits
    mu = metrics.latent_means(trained_vae, x)
    acc = metrics.linear_probe(mu[:1400], y[:1400], mu[1400:], y[1400:])
    # Measured 0.733 on the 397 held-out digits (K=4, 3 active units); chance is 0.1, so 0.5
    # leaves room for platform drift while still demanding a clearly informative code.
    assert acc >= 0.5


def test_linear_probe_fits_on_one_blas_thread(monkeypatch, digits):
    # More threads split the products' sums, so the fit (and the accuracy) would depend on the
    # machine's core count; on a busy machine they also cost ~10× the CPU time.
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    seen, fit = [], LogisticRegression.fit

    def spy(self, *args, **kwargs):
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    x, y = digits
    with threadpool_limits(limits=2, user_api="blas"):   # a 2-core default, on any machine
        assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"][0] == 2
        metrics.linear_probe(x[:300].flatten(1), y[:300], x[300:400].flatten(1), y[300:400], max_iter=50)
    assert seen and set(seen) == {1}


def test_active_units_of_trained_vae_are_counted_from_latent_means(trained_vae, digits):
    count, variances = metrics.active_units(metrics.latent_means(trained_vae, digits[0]))
    assert variances.shape == (4,) and 1 <= count <= 4


# ---------------------------------------------------------------- denoising


def test_denoising_psnr_is_seeded_and_scores_the_noisy_input():
    model = build_model("dae", input_shape=[1, 8, 8], latent_dim=4, hidden_dims=[16])
    x = torch.full((50, 1, 8, 8), 0.5)
    runs = [metrics.denoising_psnr(model, x, Corruption("gaussian", sigma=0.3, clip=False),
                                   generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(runs[0].noisy, runs[1].noisy) and torch.equal(runs[0].denoised, runs[1].denoised)
    # Unclipped N(0, 0.3²) noise: MSE ≈ 0.09 → ≈ 10.46 dB; 3200 draws keep it within ±0.3 dB.
    assert runs[0].noisy.mean().item() == pytest.approx(10 * math.log10(1 / 0.09), abs=0.3)
    clean = metrics.denoising_psnr(model, x, Corruption("none"))
    assert torch.allclose(clean.noisy, torch.full((50,), 100.0))
    assert torch.allclose(clean.denoised, metrics.psnr(metrics.reconstruct(model, x), x))


# ---------------------------------------------------------------- pictures


def test_grids_have_expected_shapes():
    x = torch.rand(20, 1, 8, 8)                           # 8-px tiles + 2-px padding
    assert pictures.reconstruction_grid(x, x, n=16).shape == (3, 2 + 2 * 10, 2 + 16 * 10)
    assert pictures.noisy_denoised_grid(x, x, x, n=16).shape == (3, 2 + 3 * 10, 2 + 16 * 10)
    assert pictures.samples_grid(torch.rand(64, 1, 8, 8)).shape == (3, 82, 82)
    vae = _vae("mlp", "bernoulli")
    assert pictures.samples_grid(pictures.prior_samples(vae, 16), nrow=8).shape == (3, 22, 82)
    grid = pictures.traversal_grid(vae, torch.zeros(3), dims=[0, 2], steps=9)
    assert grid.shape == (3, 2 + 2 * 10, 2 + 9 * 10) and 0 <= grid.min() and grid.max() <= 1
    assert pictures.sprite_images(x * 2, 5).shape == (5, 1, 8, 8)
    assert pictures.sprite_images(x * 2, 5).max() <= 1


@pytest.mark.parametrize("k", [2, 5])
def test_latent_scatter_writes_png(tmp_path, k):
    z = torch.randn(300, k)
    path = tmp_path / f"scatter_{k}.png"
    img = pictures.latent_scatter_png(z, torch.randint(0, 10, (300,)), path, title=f"K={k}")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert img.dtype == torch.uint8 and img.dim() == 3 and img.shape[0] == 3
    assert img.float().std() > 0                          # something was drawn
    pictures.latent_scatter_png(z, None, tmp_path / "unlabelled.png")
    assert (tmp_path / "unlabelled.png").read_bytes()[:8] == PNG_SIGNATURE


def test_save_png(tmp_path):
    grid = pictures.reconstruction_grid(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8))
    pictures.save_png(grid, tmp_path / "grid.png")
    pictures.save_png(torch.rand(1, 8, 8), tmp_path / "gray.png")
    for name in ("grid.png", "gray.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_a_density_nll_can_be_negative_and_the_docs_say_so():
    # −log N(x; x, σ²I) = D/2·log(2πσ²): negative for the default σ = 0.1 (a density above 1), so the
    # metrics reference must not call nll_iw positive for every likelihood.
    x = torch.rand(3, 1, 8, 8)
    nll = losses.reconstruction_nll(x, x, "gaussian", 0.1)
    assert torch.allclose(nll, torch.full((3,), 32 * math.log(2 * math.pi * 0.01)))
    assert (nll < 0).all()
    guide = (Path(__file__).resolve().parent.parent / "docs" / "reference" / "metrics.md").read_text()
    row = next(line for line in guide.splitlines() if line.startswith("| `nll_iw` |"))
    assert "positive" not in row and "can be negative" in row
