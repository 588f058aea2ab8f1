"""Searches as a user runs them, on the bundled digits: a command-line search that grows, the
median pruner through the basic and joblib launchers, and the pruning decision across torchrun
ranks."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("optuna")
import optuna  # noqa: E402

from aectl.runs import optuna_study  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
AECTL = [sys.executable, "-m", "aectl"]
# this tree's aectl first, then whatever the caller put on the path (devtools/optuna_versions.sh: an optuna)
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
SMALL = ["trainer.progress=false", "dataset.limit=300", "trainer.batch_size=100"]


def study(sweep: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna_study.open_storage(str(sweep / optuna_study.JOURNAL)))


def test_a_command_line_search_grows_from_3_to_5_trials_in_its_sweep_folder(tmp_path):
    sweep = tmp_path / "lr"
    # the same space in both spellings: the command line's, and Hydra's hydra.sweeper.params
    for n_trials, space in ((3, "trainer.lr=interval(0.0005,0.005)"),
                            (5, "hydra.sweeper.params.trainer.lr=interval(0.0005,0.005)")):
        subprocess.run([*AECTL, "train", "-m", "hydra/sweeper=aectl_optuna", f"hydra.sweeper.n_trials={n_trials}",
                        space, f"hydra.sweep.dir={sweep}", "trainer.epochs=1", *SMALL],
                       env=ENV, cwd=tmp_path, check=True, capture_output=True)
    trials = study(sweep, "aectl").trials
    assert [t.number for t in trials] == list(range(5)) and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [str(n) for n in range(5)]
    assert len({t.params["trainer.lr"] for t in trials}) == 5
    assert all(0.0005 <= t.params["trainer.lr"] <= 0.005 for t in trials)


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                                       "hydra.sweeper.n_jobs=2"]],
                         ids=["basic", "joblib", "submitit"])
def test_the_median_pruner_prunes_a_trial_that_lags_and_the_report_shows_it(tmp_path, launcher):
    """lr drawn over four decades: a trial with a tiny lr lags the finished trials' median after
    its first epoch. The median pruner compares with COMPLETE trials only, and a batch of n_jobs
    trials is told before the next is asked, so the outcome does not depend on timing."""
    if any("submitit" in a for a in launcher):
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the [slurm] extra
    sweep = tmp_path / "search"
    subprocess.run([*AECTL, "train", "-m", "hparams_search=digits_vae", "hydra.sweeper.n_trials=6",
                    "hydra.sweeper.sampler.name=random", "hydra.sweeper.pruner.name=median",
                    "hydra.sweeper.pruner.n_startup_trials=2", "trainer.epochs=3",
                    "trainer.lr=tag(log, interval(1e-6, 1e-2))", f"hydra.sweep.dir={sweep}", *launcher, *SMALL],
                   env=ENV, cwd=tmp_path, check=True, capture_output=True)
    pruned = [t for t in study(sweep, "digits_vae").trials if t.state.name == "PRUNED"]
    assert pruned, [(t.number, t.state.name, t.intermediate_values) for t in study(sweep, "digits_vae").trials]
    for t in pruned:
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        epoch = metrics["pruned"]["epoch"]
        assert epoch < 3 and metrics["epochs"] == epoch and metrics["weights"] == "best"
        assert metrics["pruned"]["value"] == pytest.approx(t.intermediate_values[epoch])
        assert (sweep / str(t.number) / "checkpoints" / "best.pt").is_file()
    subprocess.run([*AECTL, "report", str(sweep)], env=ENV, cwd=tmp_path, check=True, capture_output=True)
    report = (sweep / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if "| PRUNED |" in line}
    assert sorted(rows) == sorted(str(t.number) for t in pruned)
    for t in pruned:  # the row says after which epoch the trial was stopped
        assert f"| PRUNED | {max(t.intermediate_values)} |" in rows[str(t.number)]
    assert (sweep / "intermediate_values.png").is_file()


RANKS = textwrap.dedent("""
    import sys, types
    import torch.distributed as dist
    from aectl.runtime.distributed import current
    from aectl.training.loop import Progress
    from aectl.training.pruning import prune_when_told

    dist.init_process_group("gloo")
    progress = Progress(epoch=2, score_history=[3.0, 2.5])
    run = types.SimpleNamespace(progress=progress, settings=types.SimpleNamespace(monitor="val/loss"),
                                loop=types.SimpleNamespace(dist=current()), checkpoint=lambda name: None)
    told = []
    stop = prune_when_told(run, lambda epoch, value: told.append((epoch, value)) or True)
    with open(f"rank{dist.get_rank()}.txt", "w") as out:  # a file per rank: their stdout lines would interleave
        out.write(f"rank {dist.get_rank()}: stop={stop} told={told} pruned={progress.pruned}")
    dist.destroy_process_group()
""")


def test_under_torchrun_rank_0_reports_and_every_rank_stops(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)]
    assert lines == ["rank 0: stop=True told=[(2, 2.5)] pruned={'epoch': 2, 'value': 2.5}",
                     "rank 1: stop=True told=[] pruned={'epoch': 2, 'value': 2.5}"]
