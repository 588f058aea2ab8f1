"""Resuming is exact or refused in one line: overrides that would make another run are refused,
the β curve and the history continue, a run continued into a new folder is complete."""

import signal

import pytest
import torch

from aectl.cli import main
from aectl.runs.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import read_metrics

TINY = ("model.hidden_dims=[16]", "trainer.images_every=100")
STEPS_PER_EPOCH = 12  # 1437 training digits in batches of 128


def refused(capsys, tmp_path, *overrides: str) -> str:
    assert main(["train", *overrides, f"hydra.run.dir={tmp_path / 'resumed'}", "trainer.progress=false",
                 "trainer.device=cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


@pytest.fixture
def finished(train_run):
    return train_run(*TINY, "trainer.epochs=1")


@pytest.mark.parametrize("override,key", [
    ("model.latent_dim=16", "model.latent_dim=16"),
    ("model.hidden_dims=[32]", "model.hidden_dims"),
    ("dataset.limit=100", "dataset.limit=100"),
    ("dataset=synthetic", "dataset=synthetic"),
    ("beta=0.5", "beta=0.5"),
    ("trainer.seed=3", "trainer.seed=3"),
    ("model=ae", "model=ae"),
])
def test_a_resume_that_would_train_another_model_is_refused(capsys, tmp_path, finished, override, key):
    line = refused(capsys, tmp_path, f"trainer.resume={finished}", "trainer.epochs=2", override)
    assert line.startswith("aectl train: error: trainer.resume: ") and key in line, line
    assert "trainer.epochs" in line  # says what may change


def test_batch_size_may_change_at_an_epoch_boundary_but_not_mid_epoch(capsys, tmp_path, train_run, finished):
    ckpt = load_checkpoint(finished)
    ckpt["batch"] = 3  # as if a signal had stopped it after the 3rd batch of epoch 2
    save_checkpoint(tmp_path / "mid" / "checkpoints" / "last.pt", ckpt)
    line = refused(capsys, tmp_path, f"trainer.resume={tmp_path / 'mid'}", "trainer.epochs=2",
                   "trainer.batch_size=64")
    assert "trainer.batch_size=64" in line and "mid-epoch" in line, line
    resumed = train_run(f"trainer.resume={finished}", "trainer.epochs=2", "trainer.batch_size=64")
    assert read_metrics(resumed)["steps"] == STEPS_PER_EPOCH + 23  # 1437 / 64 → 23 steps in epoch 2


def test_the_beta_curve_continues_unchanged_when_epochs_grow(train_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cyclical = ("beta_schedule=cyclical", "beta_schedule.cycles=4", "beta_schedule.ratio=0.5", "trainer.log_every=1")
    half = train_run(*TINY, *cyclical, "trainer.epochs=2")  # 24 steps: 4 cycles of 6 steps
    resumed = train_run(f"trainer.resume={half}", "trainer.epochs=4")
    betas = {e.step: e.value for e in EventAccumulator(str(resumed)).Reload().Scalars("train/beta")}
    assert sorted(betas) == list(range(25, 49))
    for step, value in betas.items():  # the same 6-step period, not 4 cycles over 48 steps
        assert value == pytest.approx(min(1.0, ((step - 1) % 6) / 6 / 0.5), abs=1e-6), step


def test_a_run_continued_into_a_new_folder_is_complete_and_holds_the_whole_history(train_run):
    first = train_run(*TINY, "trainer.epochs=2", "model.latent_dim=4")
    # lr 1e-12 leaves the weights as they were: the new epochs cannot beat the old best, so the
    # new folder has a best.pt only if the continuation brings it along.
    continued = train_run(f"trainer.resume={first}", "trainer.epochs=4", "trainer.lr=1e-12")
    before, after = read_metrics(first), read_metrics(continued)
    assert after["val_loss_history"][:2] == before["val_loss_history"] and len(after["val_loss_history"]) == 4
    assert after["train_time_s"] > before["train_time_s"]
    assert "model.latent_dim=4" in after["overrides"]
    assert [o for o in after["resumed_with"][-1] if o.startswith("trainer.epochs")] == ["trainer.epochs=4"]
    best = load_checkpoint(continued / "checkpoints" / "best.pt")  # in the new folder, always
    assert best["best_val_loss"] == after["best_val_loss"] == min(after["val_loss_history"])
    assert best["step"] == load_checkpoint(first / "checkpoints" / "best.pt")["step"]


def test_a_stop_seen_at_an_epoch_boundary_exits_with_its_signal_and_a_resumable_checkpoint(
        tmp_path, capsys, monkeypatch):
    from aectl.runtime import distributed

    def agree(self, stop_requested):  # like DDP's agreement: a request is reported by one read only
        calls = iter(range(1, 10 ** 6))
        return lambda: signal.SIGTERM if next(calls) == STEPS_PER_EPOCH + 1 else 0

    monkeypatch.setattr(distributed.Distributed, "agree", agree)
    run = tmp_path / "run"
    rc = main(["train", *TINY, "trainer.epochs=3", f"hydra.run.dir={run}", "trainer.progress=false",
               "trainer.device=cpu"])
    assert rc == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in capsys.readouterr().err
    ckpt = load_checkpoint(run)
    assert ckpt["epoch"] == 1 and ckpt["batch"] == 0
    assert torch.isfinite(ckpt["state_dict"]["decoder.body.0.weight"]).all()


@pytest.mark.parametrize("folder", ["outputs/2026-01-01/10-00-00", "multirun/x/model.latent_dim=4,beta=0.5",
                                    "runs/my run", 'odd "quoted" folder'])
def test_the_printed_resume_command_parses_back_to_the_run_folder(folder):
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from aectl.runs.signals import Interrupted

    stopped = Interrupted(signal.SIGTERM, 10, f"{folder}/checkpoints/last.pt")
    stopped.run_dir = folder
    command = stopped.message().split("resume with: ", 1)[1]
    words = shlex.split(command)
    assert words[:2] == ["aectl", "train"]
    parsed = OverridesParser.create().parse_overrides(words[2:])
    assert [(o.key_or_group, o.value()) for o in parsed] == [("trainer.resume", folder), ("hydra.run.dir", folder)]


def test_a_repeated_list_element_override_resumes_and_a_changed_one_is_refused(capsys, tmp_path, train_run):
    """The original command again with trainer.resume=auto: an indexed list override
    (`model.hidden_dims.0=32`) that repeats the saved value keeps it the same run."""
    first = train_run("model.hidden_dims.0=32", "trainer.images_every=100", "trainer.epochs=1")
    resumed = train_run("model.hidden_dims.0=32", "trainer.images_every=100", f"trainer.resume={first}",
                        "trainer.epochs=2")
    ckpt = load_checkpoint(resumed)
    assert ckpt["model"]["kwargs"]["hidden_dims"] == [32, 128] and ckpt["epoch"] == 2
    line = refused(capsys, tmp_path, f"trainer.resume={first}", "trainer.epochs=2", "model.hidden_dims.0=64")
    assert "model.hidden_dims.0=64 would make it another run" in line and "model.hidden_dims.0=32" in line, line
