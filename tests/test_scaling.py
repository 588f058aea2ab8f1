"""Sweeps on Hydra's joblib and submitit launchers, and one run across processes with torchrun:
each gives the numbers of a plain single-process run with the same seeds."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aectl.checkpoint import load_checkpoint, rebuild_model
from aectl.cli import main
from tests.conftest import eval_file

# 90 steps per epoch (~0.3 s here): long enough to be caught mid-run; the noise draws from the RNG.
SWEEP = ["model=dae", "noise=gaussian", "model.latent_dim=2,4", "model.hidden_dims=[256,256]", "trainer.epochs=3",
         "trainer.batch_size=16", "trainer.progress=false", "trainer.device=cpu", "trainer.images_every=100"]
JOBS = ("model.latent_dim=2", "model.latent_dim=4")


def sweep_metrics(folder: Path) -> dict[str, dict]:
    return {job: json.loads((folder / job / "metrics.json").read_text()) for job in JOBS}


def assert_same_metrics(folder: Path, reference: Path) -> None:
    got, want = sweep_metrics(folder), sweep_metrics(reference)
    for job, metrics in want.items():
        for split in ("val", "test"):
            assert got[job][split] == pytest.approx(metrics[split], rel=1e-6), (job, split)
        assert got[job]["steps"] == metrics["steps"] == 270


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("basic") / "sweep"
    assert main(["train", "-m", *SWEEP, f"hydra.sweep.dir={folder}"]) == 0
    return folder


def test_joblib_sweep_gives_the_basic_launchers_metrics(tmp_path, basic_sweep):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")  # the [sweep] extra
    folder = tmp_path / "sweep"
    assert main(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SWEEP,
                 f"hydra.sweep.dir={folder}"]) == 0
    assert_same_metrics(folder, basic_sweep)


def job_process(folder: Path, job: str) -> int | None:
    """Pid of the submitit task training `job` of this sweep: the process holding a file of the
    job's folder open (its train.log)."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"submitit.core._submit" not in (proc / "cmdline").read_bytes():
                continue
            if any(os.readlink(fd).startswith(f"{folder / job}/") for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # a process that ended meanwhile
            continue
    return None


def preempt_after_first_epoch(folder: Path, proc: subprocess.Popen, preempt: int) -> set[str]:
    """Send submitit's preemption signal to each job as soon as it has written last.pt once (at
    the end of its first epoch); return the jobs signalled."""
    deadline, signalled = time.monotonic() + 180, set()
    while len(signalled) < len(JOBS) and proc.poll() is None and time.monotonic() < deadline:
        for job in set(JOBS) - signalled:
            pid = job_process(folder, job) if (folder / job / "checkpoints" / "last.pt").is_file() else None
            if pid is not None:
                os.kill(pid, preempt)
                signalled.add(job)
        time.sleep(0.02)
    return signalled


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the job processes through /proc")
def test_submitit_sweep_preempted_mid_run_requeues_resumes_and_matches(tmp_path, basic_sweep):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the [slurm] extra
    from submitit import JobEnvironment

    folder = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "aectl", "train", "-m", "hydra/launcher=submitit_local",
                             "hydra.launcher.timeout_min=5", *SWEEP, f"hydra.sweep.dir={folder}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        signalled = preempt_after_first_epoch(folder, proc, JobEnvironment._usr_sig())
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert signalled == set(JOBS)
    for job in JOBS:
        log = (folder / job / "train.log").read_text()
        assert "requeued job: resuming from" in log and "resuming at epoch" in log, log[-2000:]
        weights = load_checkpoint(folder / job)["state_dict"]
        reference = load_checkpoint(basic_sweep / job)["state_dict"]
        for name, tensor in reference.items():  # bit-identical: the RNG state travels in last.pt
            assert torch.equal(weights[name], tensor), (job, name)
    assert_same_metrics(folder, basic_sweep)


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", "-m", "aectl", "train", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def train_losses(run: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def test_torchrun_two_ranks_match_one_process(tmp_path, train_run):
    # 600 examples in global batches of 199: shards of 100/99, and a last batch of 3 split 2/1.
    # Gradients weighted by shard size (2/3, 1/3) give the single-process step; DDP's plain
    # average (1/2, 1/2) would not. Noise is drawn for the global batch.
    overrides = ["model=dae", "noise=masking", "model.hidden_dims=[32]", "trainer.epochs=2",
                 "trainer.batch_size=199", "trainer.log_every=1", "trainer.images_every=100",
                 "dataset.limit=600", "trainer.device=cpu", "trainer.progress=false"]
    proc = torchrun(*overrides, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]  # one folder for both ranks
    single = train_run(*overrides)

    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in run.iterdir() if p.is_file() and not p.name.startswith("events")) == \
        ["metrics.json", "train.log"]
    ddp_losses, losses = train_losses(run), train_losses(single)
    assert [s for s, _ in ddp_losses] == [s for s, _ in losses] == list(range(1, 9))
    # Same global batches, same noise, gradients weighted by shard size: only the order of float
    # sums differs (measured: relative differences ~1e-7).
    for (_, a), (_, b) in zip(ddp_losses, losses):
        assert a == pytest.approx(b, rel=1e-5)

    ckpt = load_checkpoint(run)
    reference = load_checkpoint(single)
    assert set(ckpt["state_dict"]) == set(reference["state_dict"])  # the plain module, no "module." prefix
    model = rebuild_model(ckpt)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, reference["state_dict"][name], rtol=1e-4, atol=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["loss"] == pytest.approx(json.loads((single / "metrics.json").read_text())["val"]["loss"],
                                                   rel=1e-4)
    if importlib.util.find_spec("aectl.evaluation") is not None:  # `aectl eval` reads it like any checkpoint
        assert main(["eval", f"ckpt={run}", "k=5", "max_embed=50", "progress=false", "device=cpu",
                     "projector=false"]) == 0
        assert json.loads(eval_file(run).read_text())


def test_torchrun_vae_draws_each_ranks_epsilon_from_one_seeded_scheme(tmp_path, train_run):
    # Rank 0 draws ε from the run's stream, rank 1 from a stream seeded by (seed, step, rank): the
    # run differs from one process only in which ε each example gets, and repeats exactly.
    overrides = ["model.hidden_dims=[32]", "trainer.epochs=2", "trainer.batch_size=100", "trainer.log_every=1",
                 "trainer.images_every=100", "dataset.limit=400", "trainer.device=cpu", "trainer.progress=false"]
    runs = []
    for name in ("a", "b"):
        proc = torchrun(*overrides, f"hydra.run.dir={tmp_path / name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(tmp_path / name)
    a, b = (load_checkpoint(run)["state_dict"] for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ddp, single = train_losses(runs[0]), train_losses(train_run(*overrides))
    assert [s for s, _ in ddp] == [s for s, _ in single] == list(range(1, 9))
    assert ddp[0][1] != single[0][1]  # rank 1's half of the batch got other ε than one process gives it
    for (_, x), (_, y) in zip(ddp, single):
        assert x == pytest.approx(y, rel=0.05)


def test_own_rng_gives_each_rank_its_own_stream_and_leaves_the_shared_one_alone():
    from aectl.distributed import DataParallel

    def rank(r: int) -> DataParallel:
        dp = object.__new__(DataParallel)  # no process group: only the RNG scheme is tested
        dp.rank, dp.world_size, dp.is_main = r, 2, r == 0
        return dp

    def draws(r: int, seed: int = 0, step: int = 7):
        torch.manual_seed(5)
        with rank(r).own_rng(seed, step):
            inside = torch.randn(4)
        return inside, torch.randn(4)  # the shared stream after the step

    torch.manual_seed(5)
    shared = torch.randn(4), torch.randn(4)
    zero, one = draws(0), draws(1)
    assert torch.equal(zero[0], shared[0])  # rank 0 draws from the shared stream
    assert not torch.equal(one[0], zero[0]) and torch.equal(one[1], shared[0])  # rank 1: its own, shared untouched
    assert torch.equal(draws(1)[0], one[0])  # the same (seed, step, rank): the same ε
    assert not torch.equal(draws(1, step=8)[0], one[0]) and not torch.equal(draws(1, seed=1)[0], one[0])


def test_torchrun_refuses_a_sweep():
    from aectl.distributed import setup
    from aectl.errors import AectlError

    with pytest.raises(AectlError, match="-m/--multirun cannot run under torchrun"):
        setup(["-m", "model.latent_dim=2,4"], "outputs/x")


def test_every_rank_gets_rank_0s_run_folder():
    from datetime import datetime

    from aectl.distributed import same_run_dir

    started = datetime(2026, 11, 27, 10, 5, 3)
    default = "outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}"
    assert same_run_dir(["model=ae"], default, started) == ["model=ae", "hydra.run.dir=outputs/2026-11-27/10-05-03"]
    assert same_run_dir(["hydra.run.dir=runs/${now:%H%M}", "beta=2"], default, started) == \
        ["beta=2", "hydra.run.dir=runs/1005"]


def test_an_unknown_launcher_names_the_extras(capsys):
    assert main(["train", "-m", "hydra/launcher=slurm", "model.latent_dim=2,4"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("aectl train: error: hydra/launcher=slurm: no such option; allowed hydra/launcher=basic")
    assert "aectl[slurm]" in line
