"""The math as `aectl train` and `aectl eval` wire it: each config value reaches the piece it
names (a schedule's step count, a noise probability, σ, the target β, the IW estimate's
−log k), checked against hand formulas on what the training path really computed."""

import json
import math

import pytest
import torch

from aectl.cli import main
from aectl.datasets import load_dataset
from aectl.runs.checkpoint import load_checkpoint, rebuild_model, save_checkpoint
from tests.conftest import eval_file, read_metrics

TINY = ("model.hidden_dims=[16]", "trainer.images_every=100")
STEPS_PER_EPOCH = 12  # 1437 training digits in batches of 128


def scalars(run, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return {e.step: e.value for e in EventAccumulator(str(run)).Reload().Scalars(tag)}


def eval_metrics(run, *args: str) -> dict:
    assert main(["eval", f"ckpt={run}", "progress=false", "device=cpu", "projector=false", *args]) == 0
    return json.loads(eval_file(run).read_text())


# ---------------------------------------------------------------- β(t) as the CLI wires it

# f(t) by hand for a run of 3 epochs × 12 steps = 36 optimizer steps.
SCHEDULES = {
    "constant": ((), lambda t: 1.0),
    "linear": (("beta_schedule.warmup_steps=20",), lambda t: min(1.0, t / 20)),
    "sigmoid": (("beta_schedule.k=0.3", "beta_schedule.x0=15"), lambda t: 1 / (1 + math.exp(-0.3 * (t - 15)))),
    # 3 cycles of 36/3 = 12 steps, rising over the first half of each.
    "cyclical": (("beta_schedule.cycles=3", "beta_schedule.ratio=0.5"), lambda t: min(1.0, (t % 12) / 12 / 0.5)),
}


@pytest.mark.parametrize("kind", SCHEDULES)
def test_logged_beta_is_the_schedule_at_every_optimizer_step(train_run, kind):
    extra, f = SCHEDULES[kind]
    run = train_run("beta=0.5", f"beta_schedule={kind}", *extra, *TINY, "trainer.epochs=3", "trainer.log_every=1")
    betas = scalars(run, "train/beta")
    assert sorted(betas) == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    for step, value in betas.items():  # the value at step s is the β of optimizer step t = s − 1
        assert value == pytest.approx(0.5 * f(step - 1), abs=1e-6), (step, value)


def test_validation_is_at_the_target_beta_not_the_annealed_one(train_run):
    run = train_run("beta=0.8", "beta_schedule=linear", "beta_schedule.warmup_steps=100000", *TINY,
                    "trainer.epochs=2", "trainer.log_every=1")
    assert max(scalars(run, "train/beta").values()) < 0.001  # training is still near β = 0
    for split in ("val", "test"):
        values = read_metrics(run)[split]
        assert values["beta"] == 0.8
        assert values["loss"] == pytest.approx(values["recon"] + 0.8 * values["kl"], rel=1e-6)
    assert all(v == pytest.approx(0.8) for v in scalars(run, "val/beta").values())
    evaluated = eval_metrics(run, "k=2")  # eval scores the same objective: at the trained β
    values = evaluated["metrics"]
    assert evaluated["beta"] == values["beta"] == 0.8
    assert values["loss"] == pytest.approx(values["recon"] + 0.8 * values["kl"], rel=1e-6)


# ---------------------------------------------------------------- noise through the training path


def _stack(seen) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([a for a, _ in seen]), torch.cat([b for _, b in seen])


def test_masking_zeroes_each_entry_with_probability_p(train_run, seen_batches):
    train_run("model=dae", "noise=masking", "noise.p=0.4", *TINY, "trainer.epochs=1")
    noisy, clean = _stack(seen_batches)
    assert len(seen_batches) == STEPS_PER_EPOCH
    kept = noisy[clean != 0] == clean[clean != 0]
    assert (noisy[~(noisy == clean)] == 0).all()  # what changed became 0
    assert 1 - kept.float().mean().item() == pytest.approx(0.4, abs=0.01)  # ~45k non-zero entries


def test_salt_and_pepper_sets_p_over_2_to_each_end_of_the_data_range(train_run, seen_batches):
    train_run("model=dae", "noise=salt_pepper", "noise.p=0.3", *TINY, "trainer.epochs=1")
    noisy, clean = _stack(seen_batches)
    low, high = clean.min().item(), clean.max().item()  # digits: 0 and 1
    inside = (clean > low) & (clean < high)
    assert (noisy[inside] == low).float().mean().item() == pytest.approx(0.15, abs=0.01)
    assert (noisy[inside] == high).float().mean().item() == pytest.approx(0.15, abs=0.01)


def test_gaussian_noise_has_the_configured_sigma_not_its_square(train_run, seen_batches):
    train_run("model=dae", "noise=gaussian", "noise.sigma=0.2", "noise.clip=false", *TINY, "trainer.epochs=1")
    noisy, clean = _stack(seen_batches)
    difference = noisy - clean
    assert difference.std().item() == pytest.approx(0.2, rel=0.02)
    assert abs(difference.mean().item()) < 0.005


def test_gaussian_noise_is_clipped_to_the_train_split_range(train_run, seen_batches):
    train_run("model=dae", "noise=gaussian", "noise.sigma=0.5", *TINY, "trainer.epochs=1")
    noisy, clean = _stack(seen_batches)
    assert noisy.min().item() == 0.0 and noisy.max().item() == 1.0
    assert ((noisy == 0) | (noisy == 1)).float().mean() > 0.2  # σ = 0.5 pushes many values past the ends


def test_dynamic_binarization_draws_every_batch_anew(train_run, seen_batches):
    train_run("dataset.binarize=dynamic", "dataset.limit=512", "trainer.batch_size=512", *TINY, "trainer.epochs=3")
    first, second, third = (x for _, x in seen_batches)
    assert all(((x == 0) | (x == 1)).all() for x in (first, second, third))
    # One batch per epoch holding all 512 examples (permuted): a fixed binarization would give the
    # same per-pixel counts every epoch.
    assert not torch.equal(first.sum(0), second.sum(0)) and not torch.equal(second.sum(0), third.sum(0))
    grey = load_dataset("digits", limit=512)
    assert first.mean().item() == pytest.approx(grey.as_float(grey.train).mean().item(), abs=0.01)


# ---------------------------------------------------------------- eval's numbers, by hand


def _constant_decoder_vae(train_run, tmp_path, *overrides):
    """A VAE whose posterior is the prior (μ = 0, log σ² = 0) and whose decoder ignores z: then
    every importance weight is p(x|b) and log p(x) = log p(x|b) exactly, for any k."""
    run = train_run(*overrides, *TINY, "trainer.epochs=1")
    ckpt = load_checkpoint(run)
    state = ckpt["state_dict"]
    for name in state:
        if name.startswith("posterior.") or (name.startswith("decoder.") and name.endswith("weight")):
            state[name] = torch.zeros_like(state[name])
    folder = tmp_path / "constant"
    save_checkpoint(folder / "checkpoints" / "last.pt", ckpt)
    return folder, rebuild_model(ckpt)


@pytest.mark.parametrize("likelihood", [("model.likelihood=bernoulli",),
                                        ("model.likelihood=gaussian", "model.sigma=0.3")],
                         ids=["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 20])
def test_iw_estimate_through_eval_is_the_exact_log_likelihood_of_a_constant_decoder(
        train_run, tmp_path, likelihood, k):
    folder, model = _constant_decoder_vae(train_run, tmp_path, *likelihood)
    data = load_dataset("digits")
    x = data.as_float(data.test)
    with torch.no_grad():
        out = model.decode(torch.zeros(1, 8))[0]  # the same for every z
    if model.likelihood == "bernoulli":
        p = out.sigmoid()
        nll = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    else:  # σ = 0.3 from the config: ‖x − x̂‖²/(2·0.09) + D/2·log(2π·0.09), D = 64
        nll = (x - out).square().flatten(1).sum(1) / (2 * 0.09) + 32 * math.log(2 * math.pi * 0.09)
    values = eval_metrics(folder, f"k={k}")["metrics"]
    assert values["nll_iw"] == pytest.approx(nll.mean().item(), rel=1e-5)  # −log k included
    assert values["neg_elbo"] == pytest.approx(nll.mean().item(), rel=1e-5)  # KL = 0


def test_psnr_mse_and_active_units_through_eval_match_hand_values(train_run):
    run = train_run("model.likelihood=bernoulli", *TINY, "trainer.epochs=2")
    model = rebuild_model(load_checkpoint(run))
    data = load_dataset("digits")
    x = data.as_float(data.test)
    with torch.no_grad():
        mu, _ = model.encode(x)
        x_hat = model.decode(mu).sigmoid()
    mse = (x_hat - x).square().flatten(1).mean(1)
    values = eval_metrics(run, "k=2")["metrics"]
    assert values["mse"] == pytest.approx(mse.mean().item(), rel=1e-5)
    assert values["psnr"] == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), rel=1e-5)  # MAX = 1
    assert values["active_units"] == int((mu.var(0, unbiased=False) > 0.01).sum())


@pytest.mark.parametrize("likelihood", [("model.likelihood=bernoulli",),
                                        ("model.likelihood=gaussian", "model.sigma=0.2")],
                         ids=["bernoulli", "gaussian"])
def test_validation_loss_at_beta_1_is_evals_negative_elbo(train_run, likelihood):
    run = train_run(*likelihood, "trainer.epochs=3")
    val_loss = read_metrics(run)["val"]["loss"]
    neg_elbo = eval_metrics(run, "split=val", "k=2")["metrics"]["neg_elbo"]
    assert neg_elbo == pytest.approx(val_loss, rel=0.01)


def test_a_denoising_model_reports_the_same_psnr_in_training_and_eval(train_run):
    run = train_run("model=dae", *TINY, "trainer.epochs=2")
    trained = read_metrics(run)["val"]
    evaluated = eval_metrics(run, "split=val")["metrics"]
    for name in ("psnr", "mse"):  # the clean input's reconstruction: deterministic
        assert evaluated[name] == pytest.approx(trained[name], rel=1e-6)
    assert evaluated["psnr_denoised"] == pytest.approx(trained["psnr_denoised"], abs=0.1)
