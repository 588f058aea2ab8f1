"""Optuna search (hydra/sweeper=aectl_optuna, configs/hparams_search/): the monitor as the
objective and its direction, failed trials recorded as FAIL, n_trials counting the whole study,
a study resumed after its controller was killed, and the study in `aectl report`."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

import optuna  # noqa: E402
from hydra.core.utils import JobReturn, JobStatus  # noqa: E402

from aectl.training import monitor  # noqa: E402
from aectl.config.errors import ConfigError  # noqa: E402
from aectl.report.study import read_studies, running_best  # noqa: E402
from hydra_plugins.aectl_optuna_sweeper._impl import ResumableOptunaSweeperImpl  # noqa: E402

AECTL = [sys.executable, "-m", "aectl"]
FAST = ["trainer.progress=false", "trainer.epochs=1", "dataset.limit=200", "trainer.batch_size=100"]


# ---- the monitor: objective and direction ----

@pytest.mark.parametrize("name,expected", [("val/loss", "minimize"), ("val/recon", "minimize"),
                                           ("train/mse", "minimize"), ("val/neg_elbo", "minimize"),
                                           ("val/psnr", "maximize"), ("val/psnr_denoised", "maximize"),
                                           ("val/active_units", "maximize")])
def test_monitor_direction(name, expected):
    assert monitor.direction(name) == expected


def test_monitor_objective_reads_the_named_split_and_metric():
    metrics = {"train": {"loss": 1.0, "psnr": 5.0}, "val": {"loss": 2.0, "psnr": 7.0}}
    assert monitor.objective(metrics, "val/loss") == 2.0
    assert monitor.objective(metrics, "train/psnr") == 5.0
    with pytest.raises(ValueError, match="non-finite"):
        monitor.objective({"val": {"loss": math.nan}}, "val/loss")
    with pytest.raises(ValueError, match="no such metric"):
        monitor.objective(metrics, "val/mse")


@pytest.mark.parametrize("name,kind,noise", [("val/bogus", "vae", "none"), ("test/loss", "vae", "none"),
                                             ("val/neg_elbo", "ae", "none"), ("val/psnr_denoised", "dae", "none"),
                                             ("val/active_units", "vqvae", "none")])
def test_bad_monitor_is_one_line_naming_key_and_allowed(name, kind, noise):
    with pytest.raises(ConfigError) as err:
        monitor.check_monitor(name, kind, noise)
    text = str(err.value)
    assert "trainer.monitor" in text and name in text and "\n" not in text


def test_train_refuses_a_bad_monitor_in_one_line(capsys):
    from aectl.cli import main

    assert main(["train", "trainer.monitor=val/bogus", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "trainer.monitor" in err and "val/bogus" in err and "val/loss" in err and "\n" not in err


def test_preset_direction_follows_the_monitor():
    def direction(*overrides):
        out = subprocess.run([*AECTL, "train", "--cfg", "all", "--resolve", "hparams_search=digits_vae",
                              *overrides], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("direction:"))

    assert direction() == "minimize"
    assert direction("trainer.monitor=val/psnr") == "maximize"


# ---- the sweeper, with a stand-in launcher ----

class FakeLauncher:
    """Runs no training: each job's objective is `objective(trial number, overrides)`."""

    def __init__(self, objective):
        self.objective, self.launched = objective, []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for i, job in enumerate(overrides):
            num = initial_job_idx + i
            self.launched.append((num, list(job)))
            try:
                returns.append(JobReturn(overrides=list(job), status=JobStatus.COMPLETED,
                                         _return_value=self.objective(num, job)))
            except Exception as err:
                returns.append(JobReturn(overrides=list(job), status=JobStatus.FAILED, _return_value=err))
        return returns


def sweeper(tmp_path, n_trials, launcher):
    impl = ResumableOptunaSweeperImpl(sampler=optuna.samplers.RandomSampler(seed=0), direction="minimize",
                                      storage=f"sqlite:///{tmp_path}/optuna.db", study_name="s", n_trials=n_trials,
                                      n_jobs=1, max_failure_rate=1.0, search_space=None, custom_search_space=None,
                                      params={"x": "interval(0.0, 1.0)"})
    impl.launcher, impl.sweep_dir, impl.config = launcher, str(tmp_path), None
    return impl


def states(tmp_path):
    return [t.state for t in read_studies(tmp_path / "optuna.db")[0].trials]


def test_n_trials_counts_every_trial_of_the_study(tmp_path):
    first = FakeLauncher(lambda num, job: float(num))
    sweeper(tmp_path, 3, first).sweep([])
    assert [n for n, _ in first.launched] == [0, 1, 2]
    again = FakeLauncher(lambda num, job: float(num))
    sweeper(tmp_path, 5, again).sweep([])
    assert [n for n, _ in again.launched] == [3, 4]  # only the missing ones, numbered after the others
    assert states(tmp_path) == ["COMPLETE"] * 5
    done = FakeLauncher(lambda num, job: float(num))
    sweeper(tmp_path, 5, done).sweep([])
    assert done.launched == []


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    def objective(num, job):
        if num == 1:
            raise ConfigError("model.latent_dim", 0, "an integer > 0")
        return math.nan if num == 2 else 0.5

    sweeper(tmp_path, 4, FakeLauncher(objective)).sweep([])
    assert states(tmp_path) == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]


def test_a_cut_off_trial_is_run_again_with_its_number_and_params(tmp_path):
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    study.tell(study.ask({"x": optuna.distributions.UniformDistribution(0, 1)}), 0.3)
    cut = study.ask({"x": optuna.distributions.UniformDistribution(0, 1)})  # its controller died: still RUNNING
    launcher = FakeLauncher(lambda num, job: 0.1)
    sweeper(tmp_path, 3, launcher).sweep([])
    assert launcher.launched[0] == (1, [f"x={cut.params['x']}", "trainer.resume=auto"])
    assert [n for n, _ in launcher.launched] == [1, 2]
    assert states(tmp_path) == ["COMPLETE"] * 3


def test_running_best_follows_the_direction():
    from aectl.report.study import Study, Trial

    trials = [Trial(i, "COMPLETE", v, 1.0) for i, v in enumerate([3.0, 1.0, 2.0, 0.5])]
    assert running_best(Study("s", "MINIMIZE", trials)) == [(0, 3.0), (1, 1.0), (2, 1.0), (3, 0.5)]
    assert running_best(Study("s", "MAXIMIZE", trials)) == [(0, 3.0), (1, 3.0), (2, 3.0), (3, 3.0)]


# ---- end to end: kill the controller, rerun, report ----

def complete_trials(db: Path) -> int:
    import sqlite3

    try:
        return sum(t.state == "COMPLETE" for s in read_studies(db) for t in s.trials)
    except sqlite3.Error:  # not created yet, or being written
        return 0


def test_killed_study_resumes_to_exactly_n_trials_then_reports(tmp_path):
    sweep = tmp_path / "study"
    command = [*AECTL, "train", "-m", "hparams_search=digits_vae", f"hydra.sweep.dir={sweep}", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # generous: a loaded machine starts each trial slowly
    while complete_trials(sweep / "optuna.db") < 3 and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = read_studies(sweep / "optuna.db")[0].trials
    finished = [t.number for t in killed if t.state == "COMPLETE"]
    assert 3 <= len(finished) < 8
    stamps = {n: [(sweep / str(n) / f).stat().st_mtime_ns for f in ("train.log", "metrics.json")] for n in finished}

    subprocess.run(command, env=env, check=True, capture_output=True)
    trials = read_studies(sweep / "optuna.db")[0].trials
    assert [t.number for t in trials] == list(range(8))
    assert [t.state for t in trials] == ["COMPLETE"] * 8
    for t in trials:  # job number = trial number: each folder ran its own trial's parameters
        overrides = (sweep / str(t.number) / ".hydra" / "overrides.yaml").read_text()
        assert f"trainer.lr={t.params['trainer.lr']}" in overrides
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        assert t.value == pytest.approx(metrics["val"]["neg_elbo"])  # the objective is the preset's trainer.monitor
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(str(n) for n in range(8))
    for n in finished:  # not rerun
        assert [(sweep / str(n) / f).stat().st_mtime_ns for f in ("train.log", "metrics.json")] == stamps[n]

    subprocess.run([*AECTL, "report", str(sweep)], env=env, check=True, capture_output=True)
    report = (sweep / "report.md").read_text()
    assert "## Optuna study `digits_vae`" in report and "8 trials: 8 COMPLETE" in report
    best = min(trials, key=lambda t: t.value)
    assert f"Best trial: {best.number} " in report
    for name in ["optimization_history", *(f"objective_vs_{k}" for k in trials[0].params)]:
        assert (sweep / f"{name}.png").stat().st_size > 0
