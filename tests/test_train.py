"""`aectl train` end to end on the bundled digits set: every variant learns, the run folder
holds what docs/reference/run-folder.md promises, TensorBoard gets the documented tags."""

import json

import pytest
import torch

from aectl.runs.checkpoint import load_checkpoint, rebuild_model
from tests.conftest import read_metrics

FAST = ("trainer.epochs=4", "trainer.log_every=5")

VARIANTS = [
    ("model=vae", "beta=0.5"),
    ("model=ae",),
    ("model=stacked_ae",),
    ("model=sparse_ae",),
    ("model=dae", "noise=salt_pepper"),
    ("model=dae", "noise=masking"),
    ("model=vae", "beta_schedule=cyclical"),
    ("model=vae", "model.arch=conv"),
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: " ".join(o))
def test_every_variant_learns_on_digits(train_run, overrides):
    metrics = read_metrics(train_run(*overrides, *FAST))
    history = metrics["val_loss_history"]
    assert len(history) == 4
    assert history[-1] < history[0], history
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics["test"].values())


def test_default_run_folder_layout(train_run):
    run = train_run("trainer.epochs=2")
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "train.log").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"train", "val", "test", "best_val_loss", "epochs", "steps"}
    assert set(metrics["val"]) >= {"loss", "recon", "kl", "kl_weighted", "beta", "neg_elbo", "mse", "psnr",
                                   "active_units"}
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["step"] == metrics["steps"]
    assert ckpt["model"]["kind"] == "vae" and ckpt["config"]["model"]["kind"] == "vae"
    assert set(ckpt) >= {"format_version", "aectl_version", "state_dict", "optimizer", "rng", "best_val_loss"}


def test_tensorboard_tags(train_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_run("model=dae", "trainer.epochs=2", "trainer.log_every=3")
    events = EventAccumulator(str(run), size_guidance={"images": 0, "histograms": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/recon", "val/loss", "val/recon", "val/mse", "val/psnr", "val/psnr_noisy",
                "val/psnr_denoised", "train/lr", "train/samples_per_s"):
        assert tag in scalars, tag
    # An AE has no KL, β or penalty: none is logged (not even as zeros).
    assert not {t for t in scalars if t.split("/")[-1] in ("kl", "kl_weighted", "beta", "penalty")}
    assert {"val_images/input", "val_images/noisy", "val_images/reconstruction"} <= set(events.Tags()["images"])
    assert "val_latent/z" in events.Tags()["histograms"]
    # TensorBoard lists tag groups by name: it opens on the training curves, the validation's next.
    groups = sorted({t.split("/")[0] for kind in ("scalars", "images", "histograms") for t in events.Tags()[kind]})
    assert groups[:2] == ["train", "val"], groups

    vae = EventAccumulator(str(train_run("trainer.epochs=1", "trainer.log_every=5")),
                           size_guidance={"images": 0}).Reload()
    assert {"train/kl", "train/kl_weighted", "train/beta", "val/neg_elbo", "val/active_units"} <= \
        set(vae.Tags()["scalars"])
    assert "val_images/samples" in vae.Tags()["images"]
    assert {"val_latent/mu", "val_latent/logvar"} <= set(vae.Tags()["histograms"])

    sparse = EventAccumulator(str(train_run("model=sparse_ae", "trainer.epochs=1", "trainer.log_every=5"))).Reload()
    assert {"train/penalty", "val/penalty", "val/rho_hat_mean"} <= set(sparse.Tags()["scalars"])


def test_beta_logged_follows_the_schedule(train_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 1437 training digits / batch 128 = 12 steps per epoch; linear warm-up over 24 steps.
    run = train_run("beta=0.5", "beta_schedule=linear", "beta_schedule.warmup_steps=24", "trainer.epochs=3",
                    "trainer.log_every=1")
    betas = {e.step: e.value for e in EventAccumulator(str(run)).Reload().Scalars("train/beta")}
    # The value logged at step s is β used for the step s−1 (0-based optimizer step).
    for step in (1, 7, 13, 25, 36):
        assert betas[step] == pytest.approx(0.5 * min(1.0, (step - 1) / 24), abs=1e-6)


def test_checkpoint_round_trip_gives_identical_outputs(train_run):
    run = train_run("model=vae", "model.arch=conv", "trainer.epochs=1")
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")  # weights_only=True inside
    model = rebuild_model(ckpt)
    reloaded = rebuild_model(load_checkpoint(run))  # a run folder resolves to last.pt
    x = torch.rand(5, 1, 8, 8)
    mu, logvar = model.encode(x)
    mu2, logvar2 = reloaded.encode(x)
    assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    assert torch.equal(model.decode(mu), reloaded.decode(mu2))


def _state(run):
    return load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]


@pytest.mark.parametrize("overrides", [("model=vae",), ("model=dae", "noise=masking")], ids=["vae", "dae"])
def test_resume_matches_uninterrupted_run(train_run, overrides):
    full = train_run(*overrides, "trainer.epochs=4")
    half = train_run(*overrides, "trainer.epochs=2")
    resumed = train_run(f"trainer.resume={half}", "trainer.epochs=4")
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(resumed)["step"] == load_checkpoint(full)["step"]
    # The resumed run kept the checkpoint's config (model, noise), not the defaults.
    assert load_checkpoint(resumed)["config"]["noise"] == load_checkpoint(full)["config"]["noise"]


def test_resume_applies_a_new_learning_rate(train_run):
    half = train_run("trainer.epochs=1")
    resumed = train_run(f"trainer.resume={half}", "trainer.epochs=2", "trainer.lr=0.0001")
    ckpt = load_checkpoint(resumed)
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [0.0001]
    assert ckpt["config"]["trainer"]["lr"] == 0.0001


def test_a_run_shorter_than_log_every_still_has_its_train_curves(train_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_run("model.hidden_dims=[16]", "trainer.epochs=1", "trainer.log_every=50")  # 12 steps < 50
    losses = EventAccumulator(str(run)).Reload().Scalars("train/loss")
    assert [e.step for e in losses] == [12]  # the last, partial interval is written at the end
