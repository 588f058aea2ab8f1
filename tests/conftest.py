"""Shared fixtures: every test runs in its own temporary folder, offline, on the CPU."""

import json
import signal
from pathlib import Path

import pytest

from aectl.cli import main


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def seen_batches(monkeypatch):
    """(input, clean target) of every training step, as the loop hands them to train_step."""
    seen = []
    from aectl.training import trainer

    step = trainer.train_step

    def recording(model, optimizer, x_in, x, *args, **kwargs):
        seen.append((x_in.detach().clone(), x.detach().clone()))
        return step(model, optimizer, x_in, x, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", recording)
    return seen


@pytest.fixture
def stop_after(monkeypatch):
    """Make the stop request read as SIGINT once k training steps are done (the flag the
    signal handler sets, set at a chosen moment)."""
    from aectl.runs import signals
    from aectl.training import trainer

    def arm(k: int) -> None:
        steps, real_step = [0], trainer.train_step

        def counted(*args, **kwargs):
            steps[0] += 1
            return real_step(*args, **kwargs)

        monkeypatch.setattr(trainer, "train_step", counted)
        monkeypatch.setattr(signals.StopSignals, "__call__", lambda self: signal.SIGINT if steps[0] >= k else 0)

    return arm


@pytest.fixture
def train_run(tmp_path):
    """Run `aectl train <overrides>` in-process into a fresh run folder; return the folder."""
    counter = iter(range(1000))

    def run(*overrides: str, expect_rc: int = 0) -> Path:
        run_dir = tmp_path / f"run{next(counter)}"
        rc = main(["train", *overrides, f"hydra.run.dir={run_dir}", "trainer.progress=false",
                   "trainer.device=cpu"])
        assert rc == expect_rc
        return run_dir

    return run


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def eval_file(run_dir: Path, name: str = "metrics.json") -> Path:
    """A file of the run's newest `aectl eval` (each evaluation writes <run>/eval/<name>/)."""
    folders = sorted((run_dir / "eval").glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    assert folders, f"no eval results in {run_dir}"
    return folders[-1].parent / name
