"""`aectl report`: a real sweep (one job failing) becomes one table, a CSV and valid PNG plots;
every job's TensorBoard run carries its hparams session; statuses, best marks and log scales
follow the rules on hand-made run folders."""

import contextlib
import csv
import json
import os
from pathlib import Path

import pytest

from aectl.cli import main
from aectl.report import jobs, plots, ranking
from aectl.runs.tables import format_metric

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["model.hidden_dims=[16]", "trainer.epochs=1", "trainer.batch_size=256", "trainer.progress=false",
        "trainer.device=cpu", "trainer.images_every=100"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 3-job VAE sweep over K on digits; K=0 fails validation inside its job."""
    folder = tmp_path_factory.mktemp("sweep") / "multirun"
    rc = main(["train", "-m", "model.latent_dim=2,4,0", *TINY, f"hydra.sweep.dir={folder}"])
    assert rc == 2  # the sweep reports its failed job...
    return folder  # ...after running the others


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_report_of_a_sweep_with_a_failed_job(sweep, capsys):
    assert main(["report", str(sweep)]) == 0
    out = capsys.readouterr().out
    table = out.splitlines()
    assert table[0].split()[:3] == ["job", "status", "model.latent_dim"]
    assert [line.split()[1] for line in table[1:4]] == ["ok", "ok", "failed"]
    notes = table[table.index("notes:") + 1:]
    assert notes[0].startswith("  model.latent_dim=0: ") and "model.latent_dim=0 is not allowed" in notes[0]

    rows = read_csv(sweep / "report.csv")
    assert [(r["job"], r["status"], r["model.latent_dim"]) for r in rows] == [
        ("model.latent_dim=2", "ok", "2"), ("model.latent_dim=4", "ok", "4"), ("model.latent_dim=0", "failed", "0")]
    columns = set(rows[0])
    assert {"val/loss", "val/recon", "val/kl", "val/mse", "test/loss", "test/mse", "train_time_s", "best",
            "note"} <= columns
    assert "trainer.epochs" not in columns  # fixed overrides are not swept parameters
    for row in rows[:2]:
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["val/loss"]) == pytest.approx(metrics["val"]["loss"])
        assert float(row["test/mse"]) == pytest.approx(metrics["test"]["mse"])
    assert rows[2]["val/loss"] == "" and "latent_dim" in rows[2]["note"]
    best_loss = min(rows[:2], key=lambda r: float(r["val/loss"]))
    assert "val/loss" in best_loss["best"].split(";")
    assert all("val/kl" not in r["best"].split(";") for r in rows)  # KL is a trade-off, not a score

    md = (sweep / "report.md").read_text()
    assert "| model.latent_dim=0 | failed |" in md
    assert f"**{format_metric('val/loss', float(best_loss['val/loss']))}**" in md
    for name in ("metrics_vs_model.latent_dim.png", "rate_distortion.png"):
        assert f"]({name})" in md
        assert_png(sweep / name)


def hparams_of(run: Path):
    """The HPARAMS tab's experiment (its columns) and session (the run's values) of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run)).Reload()
    content = events.PluginTagToContent("hparams")
    read = lambda tag: plugin_data_pb2.HParamsPluginData.FromString(content[f"_hparams_/{tag}"])  # noqa: E731
    return read("experiment").experiment, read("session_start_info").session_start_info.hparams, events


def test_every_job_has_its_hparams_session_in_tensorboard(sweep):
    """The HPARAMS table: the swept key, then a few final val metrics (not the ~75 constants of
    the config); each run's session still holds every value."""
    for k in (2, 4):
        job = sweep / f"model.latent_dim={k}"
        (event_file,) = job.glob("events.out.tfevents.*")  # the hparams live in the run itself
        experiment, hparams, events = hparams_of(job)
        assert [(i.name, i.differs) for i in experiment.hparam_infos] == [("model.latent_dim", True)]
        assert [m.name.tag for m in experiment.metric_infos] == \
            ["val_final/loss", "val_final/recon", "val_final/kl", "val_final/psnr", "val_final/active_units"]
        assert hparams["model.latent_dim"].number_value == k
        assert hparams["model.kind"].string_value == "vae" and len(hparams) > 40
        final = json.loads((job / "metrics.json").read_text())["val"]["loss"]
        assert events.Scalars("val_final/loss")[-1].value == pytest.approx(final, rel=1e-6)


def test_a_single_runs_hparams_lead_with_its_overrides_then_every_constant(train_run):
    overrides = [*TINY, "model.latent_dim=3", "trainer.monitor=val/mse"]
    experiment, hparams, _ = hparams_of(train_run(*overrides))
    given = list(dict.fromkeys([o.split("=")[0] for o in overrides] + ["trainer.progress", "trainer.device"]))
    columns = [(i.name, i.differs) for i in experiment.hparam_infos]
    assert columns[:len(given)] == [(key, True) for key in given] and len(columns) == len(hparams)
    assert not any(differs for _, differs in columns[len(given):])  # TensorBoard puts the differing ones first
    assert [m.name.tag for m in experiment.metric_infos][-1] == "val_final/mse"  # the monitored metric too


def fake_job(folder: Path, overrides: list[str], metrics: dict | None, kind: str = "ae", num: int = 0,
             beta: float = 1.0) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / ".hydra" / "config.yaml").write_text(f"model:\n  kind: {kind}\nbeta: {beta}\n")
    (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def metrics_of(loss: float, psnr: float, kl: float = 1.0) -> dict:
    return {"val": {"loss": loss, "psnr": psnr, "kl": kl, "recon": loss - kl}, "test": {"loss": loss},
            "train_time_s": 1.5, "val_loss_history": [loss]}


def test_statuses_best_marks_eval_metrics_and_several_folders(tmp_path, capsys):
    a, b = tmp_path / "day" / "10-00-00", tmp_path / "day" / "11-00-00"
    fake_job(a / "lr=0.1", ["trainer.lr=0.1"], metrics_of(3.0, 20.0), num=0)
    fake_job(a / "lr=0.01", ["trainer.lr=0.01"], metrics_of(2.0, 25.0), num=1)
    live = fake_job(b / "lr=1e-3", ["trainer.lr=0.001"], None, num=0)
    fake_job(b / "lr=1e-4", ["trainer.lr=0.0001"], None, num=1)
    for job, log_px in (("lr=0.01", -90.5), ("lr=0.1", -95.0)):
        (a / job / "eval").mkdir()
        (a / job / "eval" / "metrics.json").write_text(
            json.dumps({"split": "test", "k": 10, "metrics": {"log_px_iw": log_px, "probe_acc": 0.9}}))

    with held_lock(live):
        assert main(["report", str(tmp_path / "day" / "*")]) == 0
    rows = {r["job"]: r for r in read_csv(tmp_path / "day" / "report.csv")}
    assert {j: r["status"] for j, r in rows.items()} == {
        "10-00-00/lr=0.1": "ok", "10-00-00/lr=0.01": "ok", "11-00-00/lr=1e-3": "running",
        "11-00-00/lr=1e-4": "stub"}
    assert rows["10-00-00/lr=0.01"]["eval/log_px_iw"] == "-90.5"
    assert "eval/log_px_iw" in rows["10-00-00/lr=0.01"]["best"].split(";")
    assert "eval/k" not in rows["10-00-00/lr=0.01"]  # the eval's settings are not metrics
    assert set(rows["10-00-00/lr=0.01"]["best"].split(";")) >= {"val/loss", "val/psnr", "test/loss"}
    assert set(rows["10-00-00/lr=0.1"]["best"].split(";")) == {"train_time_s", "eval/probe_acc"}  # ties: all
    assert "val/kl" not in rows["10-00-00/lr=0.01"]["best"]
    assert "val_loss_history" not in rows["10-00-00/lr=0.1"]  # lists are not table cells
    assert (tmp_path / "day" / "metrics_vs_trainer.lr.png").is_file()
    assert not (tmp_path / "day" / "rate_distortion.png").exists()  # no VAE among them
    assert "25.00*" in capsys.readouterr().out  # the best PSNR is marked in the terminal


@pytest.mark.parametrize("values, log", [([2, 4, 8, 32], False), ([2, 8, 200], True), ([1e-4, 1e-3, 1e-2], True),
                                         ([0, 10, 1000], False), ([-1, 1], False)])
def test_log_x_scale_when_a_parameter_spans_two_decades(values, log):
    assert plots.log_scale(values) is log


def test_a_folder_without_runs_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["report", str(tmp_path / "missing*")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "no run folders" in err[0] and "empty" in err[0]
    assert "missing*: no such folder" in err[1]


def test_report_imports_neither_torch_nor_hydra(tmp_path):
    import subprocess
    import sys

    fake_job(tmp_path / "sweep" / "a", ["model.latent_dim=2"], metrics_of(2.0, 20.0), kind="vae")
    fake_job(tmp_path / "sweep" / "b", ["model.latent_dim=8"], metrics_of(1.0, 24.0, kl=3.0), kind="vae", num=1)
    code = ("import sys; from aectl.cli import main; assert main(['report', sys.argv[1]]) == 0; "
            "print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sweep")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert_png(tmp_path / "sweep" / "rate_distortion.png")


def test_with_beta_swept_the_loss_is_not_ranked(tmp_path):
    fake_job(tmp_path / "a", ["beta=0.5"], metrics_of(2.0, 20.0, kl=2.0), kind="vae")
    fake_job(tmp_path / "b", ["beta=4"], metrics_of(3.0, 19.0, kl=0.5), kind="vae", num=1)
    report = ranking.build_report([tmp_path])
    assert report.best["val/loss"] == set() and report.best["test/loss"] == set()  # different objectives
    assert report.best["val/recon"] == {0} and report.best["val/psnr"] == {0}


def test_a_sweeps_hparams_lead_with_the_swept_keys():
    from aectl.training.run_summary import hparams

    config = {"model": {"kind": "vae", "latent_dim": 8}, "trainer": {"lr": 0.001}, "beta": 0.5}
    assert list(hparams(config, ["trainer.lr=0.001", "beta=0.5"]))[:2] == ["trainer.lr", "beta"]
    assert list(hparams(config, ["model=vae"]))[:2] == ["model.kind", "model.latent_dim"]  # a group: its fields
    assert list(hparams(config, [])) == ["model.kind", "model.latent_dim", "trainer.lr", "beta"]


# ---------------------------------------------------------------- single runs, stopped sweeps


def test_plain_run_folders_and_outputs(tmp_path, capsys):
    for name, lr in (("10-00-00", "0.01"), ("11-00-00", "0.001")):
        assert main(["train", *TINY, f"trainer.lr={lr}", f"hydra.run.dir=outputs/2026-01-01/{name}"]) == 0
    capsys.readouterr()
    assert main(["report", "outputs"]) == 0  # a single run's hydra.job.num is '???'
    rows = read_csv(tmp_path / "outputs" / "report.csv")
    assert [(r["job"], r["status"], r["trainer.lr"]) for r in rows] == [
        ("2026-01-01/10-00-00", "ok", "0.01"), ("2026-01-01/11-00-00", "ok", "0.001")]
    assert main(["report", "outputs/2026-01-01/10-00-00"]) == 0
    assert read_csv(tmp_path / "outputs" / "2026-01-01" / "10-00-00" / "report.csv")[0]["status"] == "ok"
    assert "Traceback" not in capsys.readouterr().err


def test_a_stopped_sweep_lists_every_job_it_planned(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the second of three jobs: the first is ok, the second interrupted (not
    "running"), the third never started; none is dropped."""
    import signal

    from aectl.runs import signals

    entered, real_enter = [], signals.StopSignals.__enter__
    monkeypatch.setattr(signals.StopSignals, "__enter__", lambda self: entered.append(self) or real_enter(self))
    monkeypatch.setattr(signals.StopSignals, "__call__", lambda self: signal.SIGINT if len(entered) == 2 else 0)
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", "model.latent_dim=2,4,8", *TINY, f"hydra.sweep.dir={sweep}"]) == 130
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["model.latent_dim=2", "model.latent_dim=4"]
    capsys.readouterr()

    assert main(["report", str(sweep)]) == 0
    out = capsys.readouterr().out
    rows = read_csv(sweep / "report.csv")
    assert [(r["job"], r["status"], r["model.latent_dim"]) for r in rows] == [
        ("model.latent_dim=2", "ok", "2"), ("model.latent_dim=4", "interrupted", "4"),
        ("model.latent_dim=8", "not started", "8")]
    assert "stopped by SIGINT after step 1" in rows[1]["note"]
    assert f"""'trainer.resume="{sweep / 'model.latent_dim=4'}"'""" in rows[1]["note"]  # quoted: '=' in the name
    assert "interrupted" in out and "not started" in out

    monkeypatch.undo()
    job = sweep / "model.latent_dim=4"
    assert main(["train", *TINY, f"trainer.resume='{job}'", f"hydra.run.dir='{job}'"]) == 0  # '=' in the path
    assert not (job / "interrupted.txt").exists()  # the resumed run cleared the record of the stop
    assert jobs.job_status(job)[0] == "ok"


@contextlib.contextmanager
def held_lock(run: Path):
    """The run folder's lock held as a training process holds it (its own open file, flock'd)."""
    import fcntl

    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield
    finally:
        os.close(fd)


def test_how_a_run_stands_is_read_from_what_its_folder_holds(tmp_path):
    """Recent files do not make a run "running": only a live run's lock does; a folder left
    without a word is told apart by whether it holds a checkpoint and a stale lock file."""
    job = fake_job(tmp_path / "run", ["model.latent_dim=2"], None)
    assert jobs.job_status(job) == ("stub", "ended without metrics.json or an error, before its first checkpoint")
    with held_lock(job):
        assert jobs.job_status(job)[0] == "running"
    assert jobs.job_status(job) == ("stub", "killed while training, before its first checkpoint")  # the lock file stays
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "last.pt").write_bytes(b"")
    assert jobs.job_status(job) == ("incomplete", "killed while training; checkpoints/last.pt can resume it")
    (job / "error.txt").write_text("NonFiniteError: the loss is nan at step 3\n")
    assert jobs.job_status(job) == ("failed", "NonFiniteError: the loss is nan at step 3")
    (job / "metrics.json").write_text("{}")
    assert jobs.job_status(job)[0] == "ok"
    with held_lock(job):  # resumed to train longer: its old metrics.json is not its result yet
        assert jobs.job_status(job)[0] == "running"


def test_a_single_run_that_fails_while_training_is_listed_as_failed(tmp_path, monkeypatch, capsys):
    from aectl.config.errors import AectlError
    from aectl.training import run_record

    def fails(run):
        raise AectlError("the disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(run_record, "final_metrics", fails)
        assert main(["train", *TINY, "hydra.run.dir=outputs/run"]) == 2
    assert (tmp_path / "outputs" / "run" / "checkpoints" / "last.pt").is_file()
    assert jobs.job_status(tmp_path / "outputs" / "run") == ("failed", "AectlError: the disk is full")
    assert main(["train", *TINY, "trainer.epochs=2", "trainer.resume=auto", "hydra.run.dir=outputs/run"]) == 0
    assert not (tmp_path / "outputs" / "run" / "error.txt").exists()  # the resumed run cleared the record
    assert jobs.job_status(tmp_path / "outputs" / "run")[0] == "ok"


def test_an_interrupted_run_without_a_checkpoint_says_so(tmp_path):
    job = fake_job(tmp_path / "run", ["model.latent_dim=2"], None)
    (job / "interrupted.txt").write_text("interrupted by Ctrl-C\n")
    assert jobs.job_status(job) == ("interrupted", "interrupted before its first checkpoint")
    (job / "checkpoints").mkdir()
    (job / "checkpoints" / "last.pt").write_bytes(b"")
    assert jobs.job_status(job) == ("interrupted", "interrupted by Ctrl-C")


@pytest.mark.parametrize("how", ["a file in the way", "no permission"])
def test_an_unwritable_out_folder_is_one_line(tmp_path, capsys, monkeypatch, how):
    fake_job(tmp_path / "sweep" / "a", ["trainer.lr=0.1"], metrics_of(3.0, 20.0))
    fake_job(tmp_path / "sweep" / "b", ["trainer.lr=0.01"], metrics_of(2.0, 25.0), num=1)
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "report"
    if how == "no permission":  # as root a read-only folder is still writable: refuse the write itself
        out = tmp_path / "read-only"
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if self == out:
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(["report", str(tmp_path / "sweep"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"aectl report: --out={out}: cannot write the report there (")
    assert ("Not a directory" if how == "a file in the way" else "Permission denied") in lines[0]


# ---------------------------------------------------------------- what the table and plots show

EVAL_METRICS = {"recon": 40.0, "mse": 0.05, "psnr": 13.0, "probe_acc": 0.8, "kl": 5.0, "neg_elbo": 45.0,
                "nll_iw": 44.0, "active_units": 6, **{f"psnr_{w}_{k}": 10.0 for w in ("noisy", "denoised")
                                                       for k in ("gaussian", "salt_pepper", "masking", "trained")}}


@pytest.mark.parametrize("columns", [80, 120])
def test_the_terminal_table_fits_the_terminal_and_leads_with_key_columns(tmp_path, capsys, monkeypatch, columns):
    for i, (k, beta) in enumerate([(2, 0.5), (8, 0.5), (2, 4.0), (8, 4.0)]):
        job = fake_job(tmp_path / "sweep" / f"beta={beta},model.latent_dim={k}", [f"model.latent_dim={k}",
                       f"beta={beta}"], metrics_of(3.0 - i / 10, 20.0 + i), kind="vae", num=i)
        (job / "eval").mkdir()
        (job / "eval" / "metrics.json").write_text(json.dumps({"metrics": {**EVAL_METRICS, "nll_iw": 44.0 - i}}))
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["report", str(tmp_path / "sweep")]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[:lines.index(next(line for line in lines if line.startswith("* best")))]
    assert max(len(line) for line in lines if not line.startswith("wrote ")) <= columns, "\n".join(lines)
    assert table[0].split()[:6] == ["job", "status", "model.latent_dim", "beta", "val/loss", "val/recon"]
    if columns == 120:
        assert "eval/nll_iw" in table[0].split()
    md = (tmp_path / "sweep" / "report.md").read_text()
    assert "eval/psnr_denoised_masking" in md and "eval/psnr_denoised_masking" not in table[0]


def test_new_metric_names_are_lower_is_better_and_old_names_still_rank(tmp_path):
    for i, (nll, log_px) in enumerate([(90.0, -90.0), (80.0, -80.0)]):
        job = fake_job(tmp_path / f"job{i}", [f"model.latent_dim={2 + i}"], metrics_of(2.0, 20.0), kind="vae", num=i)
        (job / "eval").mkdir()
        (job / "eval" / "metrics.json").write_text(json.dumps({"metrics": {
            "nll_iw": nll, "neg_elbo": nll + 1, "log_px_iw": log_px, "elbo": log_px - 1}}))
    report = ranking.build_report([tmp_path])
    assert report.best["eval/nll_iw"] == {1} and report.best["eval/neg_elbo"] == {1}
    assert report.best["eval/log_px_iw"] == {1} and report.best["eval/elbo"] == {1}


def test_legends_of_several_sweeps_name_the_values(tmp_path):
    """Sweep a over K at the default β, sweep b over K at β=0.5: each line's legend says its β."""
    for i, k in enumerate((2, 8)):
        fake_job(tmp_path / "a" / f"k={k}", [f"model.latent_dim={k}"], metrics_of(3.0, 20.0), kind="vae", num=i)
        fake_job(tmp_path / "b" / f"k={k}", [f"model.latent_dim={k}", "beta=0.5"], metrics_of(2.0, 21.0),
                 kind="vae", num=i, beta=0.5)
    report = ranking.build_report([tmp_path / "a", tmp_path / "b"])
    assert report.params == ["model.latent_dim", "beta"]
    groups = plots.line_groups(report, "model.latent_dim")
    assert {label: len(jobs) for label, jobs in groups.items()} == {"beta=1": 2, "beta=0.5": 2}


def test_runs_that_share_no_swept_key_get_no_plot_against_it(tmp_path, capsys):
    """outputs/ of runs that each changed something else: every key varies, but no two runs
    differ in one key only, so no plot of single points; a baseline run makes each key a line."""
    outputs = tmp_path / "outputs"

    def run(name: str, overrides: list[str], loss: float) -> None:
        job = fake_job(outputs / name, overrides, metrics_of(loss, 20.0))
        values = {"trainer.lr": 0.001, "model.latent_dim": 8, "beta": 1.0, **jobs.parse_overrides(overrides)}
        (job / ".hydra" / "config.yaml").write_text(
            f"model: {{kind: ae, latent_dim: {values['model.latent_dim']}}}\n"
            f"trainer: {{lr: {values['trainer.lr']}}}\nbeta: {values['beta']}\n")

    for i, overrides in enumerate((["trainer.lr=0.01"], ["model.latent_dim=4"], ["beta=0.5"])):
        run(f"run{i}", overrides, 3.0 - i / 10)
    report = ranking.build_report([outputs])
    assert set(report.params) == {"trainer.lr", "model.latent_dim", "beta"}
    assert [plots.line_groups(report, p) for p in report.params] == [{}, {}, {}]
    assert plots.numeric_params(report) == []
    assert main(["report", str(outputs)]) == 0
    assert "and 0 plot(s)" in capsys.readouterr().out and not list(outputs.glob("metrics_vs_*.png"))

    run("baseline", [], 2.5)  # the defaults: each run above differs from it in one key
    report = ranking.build_report([outputs])
    assert sorted(plots.numeric_params(report)) == ["beta", "model.latent_dim", "trainer.lr"]
    for param, other in (("trainer.lr", "run0"), ("model.latent_dim", "run1"), ("beta", "run2")):
        (line,) = plots.line_groups(report, param).values()
        assert sorted(j.path.name for j in line) == ["baseline", other], param


def test_the_newest_eval_of_each_job_is_shown_and_named(tmp_path, capsys):
    for i in range(2):
        job = fake_job(tmp_path / "sweep" / f"k={2 + i}", [f"model.latent_dim={2 + i}"], metrics_of(2.0, 20.0),
                       kind="vae", num=i)
        for age, (name, nll) in enumerate([("last_test_k100", 80.0 + i), ("best_val_k10", 99.0)][::-1]):
            (job / "eval" / name).mkdir(parents=True)
            (job / "eval" / name / "metrics.json").write_text(json.dumps({"name": name, "metrics": {"nll_iw": nll}}))
            os.utime(job / "eval" / name / "metrics.json", (1e9 + age, 1e9 + age))  # last_test_k100 is newer
    assert main(["report", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    rows = read_csv(tmp_path / "sweep" / "report.csv")
    assert [(r["eval"], r["eval/nll_iw"]) for r in rows] == [("last_test_k100", "80.0"), ("last_test_k100", "81.0")]
    assert "eval/* columns: each job's eval/last_test_k100/" in out
    assert "eval/last_test_k100/" in (tmp_path / "sweep" / "report.md").read_text()


def test_rate_distortion_labels_of_close_points_do_not_overlap(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aectl.report.plots import place_labels

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = [(10 + 0.05 * i, 20 + 0.05 * i) for i in range(6)]  # six jobs almost on one spot
    ax.scatter(*zip(*points))
    ax.set(xlim=(0, 100), ylim=(0, 100))  # a sweep's other jobs far away: these six share a few pixels
    place_labels(fig, ax, points, [f"beta={b}" for b in (0.25, 0.5, 1, 2, 4, 8)])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_objective_terms_are_ranked_only_against_jobs_with_the_same_objective(tmp_path):
    """−L_k of an IWAE, −ELBO of a VAE and an AE's penalised loss are different objectives: the
    loss marks compare within each; metrics of the model (PSNR) compare across all."""
    for i, (name, config, loss, psnr) in enumerate((
            ("vae", "model:\n  kind: vae\n", 2.0, 20.0),
            ("iwae_a", "model:\n  kind: iwae\n  k: 5\n", 1.0, 18.0),
            ("iwae_b", "model:\n  kind: iwae\n  k: 5\n", 1.5, 19.0),
            ("iwae_k50", "model:\n  kind: iwae\n  k: 50\n", 0.5, 17.0))):
        fake_job(tmp_path / name, [f"trainer.lr={i}"], metrics_of(loss, psnr), num=i)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(config)
    report = ranking.build_report([tmp_path])
    names = [job.path.name for job in report.jobs]
    assert {names[i] for i in report.best["val/loss"]} == {"iwae_a"}  # alone in their objective: vae, k=50
    assert {names[i] for i in report.best["val/psnr"]} == {"vae"}


def test_cvae_and_vae_are_ranked_apart(tmp_path):
    """A cvae's numbers are of p(x|y): ranked against the other cvae only, never against a VAE's
    p(x) (here the cvae's loss is lower than every VAE's, yet the best VAE keeps its mark)."""
    fake_job(tmp_path / "a", ["model=vae"], metrics_of(3.0, 20.0), kind="vae")
    fake_job(tmp_path / "b", ["model=vae"], metrics_of(2.5, 19.0), kind="vae", num=1)
    fake_job(tmp_path / "c", ["model=cvae"], metrics_of(1.0, 22.0), kind="cvae", num=2)
    fake_job(tmp_path / "d", ["model=cvae"], metrics_of(1.5, 23.0), kind="cvae", num=3)
    report = ranking.build_report([tmp_path])
    assert report.best["val/loss"] == {1, 2} and report.best["val/psnr"] == {0, 3}
    assert ranking.objective_of(report.jobs[2]) == "p(x|y)" and ranking.objective_of(report.jobs[0]) == "p(x)"


def test_the_table_says_whose_weights_its_numbers_are_and_prints_each_unit_fixed(tmp_path, capsys):
    last = {**metrics_of(2.0, 19.995), "weights": "last",
            "best": {"epoch": 3, "val": {"loss": 2.5, "psnr": 19.0}, "test": {"loss": 2.6}}}
    fake_job(tmp_path / "sweep" / "lr=0.1", ["trainer.lr=0.1"], last, num=0)
    fake_job(tmp_path / "sweep" / "lr=0.01", ["trainer.lr=0.01"], {**metrics_of(3.0, 18.0), "weights": "last"}, num=1)
    assert main(["report", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())  # the line under the table is wrapped to the terminal's width
    assert "train/val/test columns: the last weights of each run" in words
    assert "best.pt's where it differs: best/* in report.csv" in words
    assert "20.00*" in out and "18.00" in out  # dB to 2 decimals, not "20" and "18"
    rows = {r["job"]: r for r in read_csv(tmp_path / "sweep" / "report.csv")}
    assert rows["lr=0.1"]["weights"] == "last" and rows["lr=0.1"]["best/val/psnr"] == "19.0"
    md = (tmp_path / "sweep" / "report.md").read_text()
    assert "the last weights of each run" in md and "**20.00**" in md and "| 18.00 |" in md
