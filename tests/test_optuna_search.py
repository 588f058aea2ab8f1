"""Optuna search (hydra/sweeper=aectl_optuna, configs/hparams_search/): the monitor as the
objective and its direction (one per metric of a list), failed trials recorded as FAIL,
n_trials counting the whole study, a rerun that continues the search instead of replaying it,
cut-off trials, pruning wired into training, and a study resumed after its controller was killed
at a deterministic point. `devtools/optuna_versions.sh` runs this file under optuna 4.x and 5.x."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")

import optuna  # noqa: E402
from hydra.core.utils import JobReturn, JobStatus  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from aectl.config import monitoring as monitor  # noqa: E402
from aectl.config.errors import ConfigError  # noqa: E402
from aectl.runs import optuna_study  # noqa: E402
from aectl.training.monitor import objective  # noqa: E402
from hydra_plugins.aectl_optuna_sweeper.sweeper import AectlOptunaSweeper  # noqa: E402

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
    assert objective(metrics, "val/loss") == 2.0
    assert objective(metrics, "train/psnr") == 5.0
    with pytest.raises(ValueError, match="non-finite"):
        objective({"val": {"loss": math.nan}}, "val/loss")
    with pytest.raises(ValueError, match="no such metric"):
        objective(metrics, "val/mse")


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


FOLDER = "hydra.sweep.subdir=${hydra.job.num}"


def sweeper(tmp_path, n_trials, launcher, monitor="val/loss", **conf):
    conf = {"sampler": {"name": "random", "seed": 0}, "study_name": "s", "n_trials": n_trials,
            "params": {"x": "interval(0.0, 1.0)"}, **conf}
    sweep = AectlOptunaSweeper(**conf)
    sweep.launcher, sweep.sweep_dir = launcher, str(tmp_path)
    sweep.config = OmegaConf.create({"trainer": {"monitor": monitor}})
    return sweep


def load(tmp_path, name="s"):
    return optuna.load_study(study_name=name, storage=optuna_study.open_storage(str(tmp_path / optuna_study.JOURNAL)))


def states(tmp_path):
    return [t.state.name for t in load(tmp_path).trials]


def test_study_is_a_journal_in_the_sweep_folder_and_described_for_the_report(tmp_path):
    sweeper(tmp_path, 2, FakeLauncher(lambda num, job: float(num))).sweep([])
    assert (tmp_path / "optuna_journal.log").is_file()
    assert json.loads((tmp_path / "optuna_study.json").read_text()) == {
        "storage": "optuna_journal.log", "study_name": "s", "metrics": ["val/loss"], "directions": ["minimize"]}


def test_n_trials_counts_every_trial_of_the_study(tmp_path):
    first = FakeLauncher(lambda num, job: float(num))
    sweeper(tmp_path, 3, first).sweep([])
    assert [n for n, _ in first.launched] == [0, 1, 2]
    again = FakeLauncher(lambda num, job: float(num))
    sweeper(tmp_path, 5, again).sweep([])
    assert [n for n, _ in again.launched] == [3, 4]  # only the missing ones, numbered after the others
    assert all(job[-1] == FOLDER for _, job in first.launched + again.launched)  # trial n in <sweep.dir>/<n>
    assert states(tmp_path) == ["COMPLETE"] * 5
    done = FakeLauncher(lambda num, job: float(num))
    sweeper(tmp_path, 5, done).sweep([])
    assert done.launched == []


def test_a_seeded_rerun_continues_the_search_instead_of_replaying_it(tmp_path):
    sweeper(tmp_path, 4, FakeLauncher(lambda num, job: 0.5)).sweep([])
    sweeper(tmp_path, 8, FakeLauncher(lambda num, job: 0.5)).sweep([])
    xs = [t.params["x"] for t in load(tmp_path).trials]
    assert len(xs) == 8 and len(set(xs)) == 8


def test_search_space_syntax_on_the_command_line(tmp_path):
    launcher = FakeLauncher(lambda num, job: 0.5)
    sweeper(tmp_path, 3, launcher, params={}).sweep(["lr=tag(log, interval(1e-4, 1e-2))", "n=int(interval(1, 4))",
                                                    "model.hidden_dims.0=choice(16, 32)", "epochs=2"])
    for trial in load(tmp_path).trials:
        assert 1e-4 <= trial.params["lr"] <= 1e-2 and trial.params["n"] in range(1, 5)
        assert trial.params["model.hidden_dims.0"] in (16, 32)
    assert all("epochs=2" in job for _, job in launcher.launched)


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    def objective(num, job):
        if num == 1:
            raise ConfigError("model.latent_dim", 0, "an integer > 0")
        return math.nan if num == 2 else 0.5

    sweeper(tmp_path, 4, FakeLauncher(objective)).sweep([])
    assert states(tmp_path) == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]


def test_a_pruned_job_is_told_pruned(tmp_path):
    launcher = FakeLauncher(lambda num, job: {"pruned": {"epoch": 1, "value": 3.0}} if num == 1 else 0.5)
    sweeper(tmp_path, 3, launcher).sweep([])
    assert states(tmp_path) == ["COMPLETE", "PRUNED", "COMPLETE"]


def journal_study(tmp_path):
    return optuna.create_study(study_name="s", storage=optuna_study.open_storage(str(tmp_path / optuna_study.JOURNAL)))


def test_a_cut_off_trial_is_run_again_with_its_number_and_params(tmp_path):
    study = journal_study(tmp_path)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.3)
    cut = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # its controller died: still RUNNING
    launcher = FakeLauncher(lambda num, job: 0.1)
    sweeper(tmp_path, 3, launcher).sweep([])
    assert launcher.launched[0] == (1, [f"x={cut.params['x']}", "trainer.resume=auto", FOLDER])
    assert [n for n, _ in launcher.launched] == [1, 2]
    assert states(tmp_path) == ["COMPLETE"] * 3


def test_a_trial_cut_off_before_its_params_is_failed_and_asked_again_never_launched_empty(tmp_path):
    study = journal_study(tmp_path)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.3)
    study.ask()  # the controller died between ask and sampling: RUNNING without parameters
    launcher = FakeLauncher(lambda num, job: 0.1)
    sweeper(tmp_path, 3, launcher).sweep([])
    assert [n for n, _ in launcher.launched] == [2]
    assert all(any(o.startswith("x=") for o in job) for _, job in launcher.launched)
    assert states(tmp_path) == ["COMPLETE", "FAIL", "COMPLETE"]


def test_a_list_monitor_has_one_direction_per_metric_told_in_order(tmp_path):
    launcher = FakeLauncher(lambda num, job: [float(num), 10.0 - num])
    sweeper(tmp_path, 3, launcher, monitor=["val/recon", "val/psnr"]).sweep([])
    study = load(tmp_path)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert [t.values for t in study.trials] == [[0.0, 10.0], [1.0, 9.0], [2.0, 8.0]]
    assert json.loads((tmp_path / "optuna_study.json").read_text())["directions"] == ["minimize", "maximize"]
    assert study.metric_names == ["val/recon", "val/psnr"]  # what optuna-dashboard labels its axes with


def test_the_trial_reports_each_epoch_and_hears_the_pruner(tmp_path, monkeypatch):
    study = journal_study(tmp_path)
    for value in (1.0, 2.0):  # two finished trials at 1.0 and 2.0 after epoch 1
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    trial = study.ask()
    spec = {"storage": str(tmp_path / optuna_study.JOURNAL), "study_name": "s",
            "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}}
    monkeypatch.setenv(optuna_study.TRIAL_ENV, json.dumps(spec))
    reporter = optuna_study.trial_reporter(trial.number)
    assert reporter.report(1, 1.2) is False  # better than the median (1.5): goes on
    assert reporter.report(2, 9.0) is False  # no other trial reached epoch 2: nothing to compare
    assert load(tmp_path).trials[trial.number].intermediate_values == {1: 1.2, 2: 9.0}
    worse = study.ask()
    assert optuna_study.trial_reporter(worse.number).report(1, 5.0) is True


def test_training_stops_cleanly_when_the_pruner_says_so(tmp_path, monkeypatch):
    from aectl.cli import main

    told = []

    def report(epoch, value):
        told.append((epoch, value))
        return epoch == 2

    monkeypatch.setattr(optuna_study, "epoch_report", lambda: report)
    run = tmp_path / "run"
    assert main(["train", f"hydra.run.dir={run}", *FAST, "trainer.epochs=4"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e for e, _ in told] == [1, 2]
    assert metrics["pruned"] == {"epoch": 2, "value": pytest.approx(told[1][1])}
    assert metrics["epochs"] == 2 and (run / "checkpoints" / "best.pt").is_file()


def test_a_plain_train_reports_to_no_study(monkeypatch):
    monkeypatch.delenv(optuna_study.TRIAL_ENV, raising=False)
    assert optuna_study.epoch_report() is None


# ---- end to end: kill the controller at a deterministic point, rerun ----

def test_killed_study_resumes_to_exactly_n_trials_of_distinct_configurations(tmp_path):
    sweep = tmp_path / "study"
    command = [*AECTL, "train", "-m", "hparams_search=digits_vae", f"hydra.sweep.dir={sweep}", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, env={**env, "AECTL_OPTUNA_EXIT_AFTER_TELL": "4"}, capture_output=True)
    assert first.returncode == 9  # died hard right after telling the 4th trial
    killed = load(sweep, "digits_vae").trials
    assert [t.state.name for t in killed] == ["COMPLETE"] * 4
    stamps = {n: (sweep / str(n) / "metrics.json").stat().st_mtime_ns for n in range(4)}

    subprocess.run(command, env=env, check=True, capture_output=True)
    trials = load(sweep, "digits_vae").trials
    assert [t.number for t in trials] == list(range(8))
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8  # 8 configurations, no replay
    for t in trials:  # job number = trial number: each folder ran its own trial's parameters
        overrides = (sweep / str(t.number) / ".hydra" / "overrides.yaml").read_text()
        assert f"trainer.lr={t.params['trainer.lr']}" in overrides
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        assert t.value == pytest.approx(metrics["val"]["neg_elbo"])  # the preset's β-free objective
        assert len(t.intermediate_values) == 1  # one epoch reported
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(str(n) for n in range(8))
    for n in range(4):  # not rerun
        assert (sweep / str(n) / "metrics.json").stat().st_mtime_ns == stamps[n]
    subprocess.run([*AECTL, "report", str(sweep)], env=env, check=True, capture_output=True)


@pytest.mark.parametrize("preset", ["digits_vae", "mnist_vae", "mnist_dae"])
def test_an_interrupted_trial_resumes_under_every_preset(preset):
    """A trial job's overrides: its preset and its sampled values, indexed list overrides included;
    the resume merge composes the preset again instead of refusing it."""
    from hydra import compose, initialize_config_dir

    from aectl import cli
    from aectl.cli.resume import resumed_config

    cli.register_schemas()
    overrides = [f"hparams_search={preset}", "model.hidden_dims.0=16", "trainer.lr=0.003"]
    with initialize_config_dir(config_dir=cli.config_dir(), version_base="1.3"):
        composed = compose("train", overrides=overrides)
    saved = OmegaConf.to_container(composed, resolve=True)
    merged = resumed_config(saved, [*overrides, "trainer.resume=auto"], composed)
    assert merged.model.hidden_dims[0] == 16 and merged.trainer.lr == 0.003


def test_a_list_monitor_is_checked_per_metric_and_the_run_watches_its_first():
    monitor.check_monitors(["val/kl", "val/recon"], "vae", "none")
    assert monitor.primary(["val/kl", "val/recon"]) == "val/kl" and monitor.primary("val/psnr") == "val/psnr"
    for bad, kind in ((["val/kl", "val/kl"], "vae"), ([], "vae"), (["val/recon", "val/kl"], "ae")):
        with pytest.raises(ConfigError) as err:
            monitor.check_monitors(bad, kind, "none")
        assert "trainer.monitor" in str(err.value) and "\n" not in str(err.value)


def test_a_list_monitor_search_tells_both_values_and_trains_on_the_first(tmp_path):
    sweep = tmp_path / "front"
    subprocess.run([*AECTL, "train", "-m", "hydra/sweeper=aectl_optuna", "hydra.sweeper.n_trials=2",
                    "beta=interval(0.5, 2.0)", "trainer.monitor=[val/kl,val/recon]", f"hydra.sweep.dir={sweep}",
                    "hydra.sweep.subdir=${hydra.job.num}", *FAST], check=True, capture_output=True)
    study = load(sweep, "aectl")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    for t in study.trials:
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        assert t.values == pytest.approx([metrics["val"]["kl"], metrics["val"]["recon"]])
        assert metrics["best_checkpoint"]["metric"] == "val/kl"


def test_a_broken_storage_url_is_one_line_naming_the_key(tmp_path):
    launcher = FakeLauncher(lambda num, job: 0.5)
    with pytest.raises(ConfigError) as err:
        sweeper(tmp_path, 2, launcher, storage="bogus://nowhere").sweep([])
    assert "hydra.sweeper.storage" in str(err.value) and "bogus://nowhere" in str(err.value)
    assert "\n" not in str(err.value) and launcher.launched == []


def test_a_second_controller_on_the_same_study_is_refused_and_nothing_is_lost(tmp_path):
    import fcntl

    sweeper(tmp_path, 2, FakeLauncher(lambda num, job: 0.5)).sweep([])
    with open(tmp_path / "optuna_controller.lock", "w") as held:  # the first command, still running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        launcher = FakeLauncher(lambda num, job: 0.5)
        with pytest.raises(ConfigError, match="hydra.sweep.dir"):
            sweeper(tmp_path, 4, launcher).sweep([])
    assert launcher.launched == [] and states(tmp_path) == ["COMPLETE"] * 2


def test_searching_beta_on_the_loss_is_refused_before_the_study_is_touched(tmp_path):
    launched = []
    with pytest.raises(ConfigError, match="sweeps beta"):
        sweeper(tmp_path / "a", 1, FakeLauncher(lambda num, job: launched.append(num) or 0.5),
                params={"beta": "interval(0.5, 2.0)"}).sweep([])
    assert not launched and not (tmp_path / "a").exists()
    sweeper(tmp_path / "b", 1, FakeLauncher(lambda num, job: 0.5), monitor="val/neg_elbo",
            params={"beta": "interval(0.5, 2.0)"}).sweep([])
    assert (tmp_path / "b" / "optuna_journal.log").is_file()


@pytest.mark.parametrize("conf, kind, fields", [
    ({"name": "none"}, optuna.pruners.NopPruner, {}),
    ({"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}, optuna.pruners.MedianPruner,
     {"_n_startup_trials": 2, "_n_warmup_steps": 1}),
    ({"name": "hyperband", "min_resource": 2, "max_resource": 9, "reduction_factor": 2}, optuna.pruners.HyperbandPruner,
     {"_min_resource": 2, "_max_resource": 9, "_reduction_factor": 2}),
    ({"name": "successive_halving", "min_resource": 2, "reduction_factor": 4}, optuna.pruners.SuccessiveHalvingPruner,
     {"_min_resource": 2, "_reduction_factor": 4}),
])
def test_each_pruner_is_built_from_its_own_fields(conf, kind, fields):
    pruner = optuna_study.make_pruner(conf)
    assert type(pruner) is kind
    for name, value in fields.items():
        assert getattr(pruner, name) == value


@pytest.mark.parametrize("conf, key", [
    ({"name": "median", "min_resource": 2}, "hydra.sweeper.pruner.min_resource"),
    ({"name": "successive_halving", "max_resource": 9}, "hydra.sweeper.pruner.max_resource"),
    ({"name": "none", "n_warmup_steps": 3}, "hydra.sweeper.pruner.n_warmup_steps"),
    ({"name": "asha"}, "hydra.sweeper.pruner.name"),
])
def test_a_field_the_chosen_pruner_does_not_read_is_refused_before_the_study_is_touched(tmp_path, conf, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "="):
        sweeper(tmp_path / "s", 1, FakeLauncher(lambda num, job: 0.5), pruner=conf).sweep([])
    assert not (tmp_path / "s").exists()


def test_the_trials_study_is_in_the_environment_only_while_the_search_runs(tmp_path, monkeypatch):
    """A later run in the same process (the Python API, a plain sweep) must report to no study."""
    monkeypatch.delenv(optuna_study.TRIAL_ENV, raising=False)
    seen = []
    sweeper(tmp_path, 2, FakeLauncher(lambda num, job: seen.append(optuna_study.TRIAL_ENV in os.environ) or 0.5)).sweep([])
    assert seen == [True, True] and optuna_study.TRIAL_ENV not in os.environ
