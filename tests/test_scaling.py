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

from aectl.cli import main
from aectl.runs.checkpoint import load_checkpoint, rebuild_model
from aectl.runs.tracking import CHARTS_SPEED
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


def train_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged train/ number of a run but its throughput (wall-clock): tag → [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if tag.startswith("train/") and tag != CHARTS_SPEED}


def train_losses(run: Path) -> list[tuple[int, float]]:
    return train_scalars(run)["train/loss"]


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
    if importlib.util.find_spec("aectl.evaluation.evaluate") is not None:  # `aectl eval` reads it like any checkpoint
        assert main(["eval", f"ckpt={run}", "k=5", "max_embed=50", "progress=false", "device=cpu",
                     "projector=false"]) == 0
        assert json.loads(eval_file(run).read_text())


# 201 examples in global batches of 100: shards of 50/50, then a last batch of 1 that rank 1
# steps on at weight 0 (it must add nothing to the sums); 3 steps an epoch.
TINY = ["model.hidden_dims=[32]", "trainer.epochs=2", "trainer.batch_size=100", "trainer.log_every=1",
        "trainer.images_every=100", "dataset.limit=201", "trainer.device=cpu", "trainer.progress=false"]


def assert_matches_one_process(tmp_path: Path, train_run, overrides: list[str]) -> dict:
    """Train `overrides` (TINY's 6 steps) with 2 ranks and in one process: the same logged numbers (loss, terms, a
    VQ-VAE's batch usage and perplexity) at every step and the same weights, up to float
    summation order (measured: ≤ 6e-8 in any weight; ε or codebook upkeep of a rank's shard
    alone moves the losses by 1e-4 to 2e-3 relative). Returns the 2-rank run's weights."""
    proc = torchrun(*overrides, f"hydra.run.dir={tmp_path / 'ddp'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train_run(*overrides)
    ddp_logged, logged = train_scalars(tmp_path / "ddp"), train_scalars(single)
    assert ddp_logged.keys() == logged.keys() and [s for s, _ in logged["train/loss"]] == list(range(1, 7))
    for tag, values in logged.items():
        assert [s for s, _ in ddp_logged[tag]] == [s for s, _ in values], tag
        for (_, a), (_, b) in zip(ddp_logged[tag], values):
            assert a == pytest.approx(b, rel=1e-5), tag
    weights, reference = load_checkpoint(tmp_path / "ddp")["state_dict"], load_checkpoint(single)["state_dict"]
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    return weights


def test_torchrun_vae_matches_one_process(tmp_path, train_run):
    # ε is drawn for the global batch and sliced: each example gets the ε one process gives it,
    # and the stream the masking noise of the next batch comes from stays the same on all ranks.
    assert_matches_one_process(tmp_path, train_run, ["model=vae", "noise=masking", *TINY])


@pytest.mark.parametrize("ema", ["false", "true"])
def test_torchrun_vqvae_matches_one_process(tmp_path, train_run, ema):
    # 16 codes, 2 positions per example, dead after 1 unused step: codes are reset every step, to
    # encoder outputs drawn from the global batch. Counts (and the EMA's sums) are summed over ranks.
    weights = assert_matches_one_process(tmp_path, train_run, [
        "model=vqvae", "model.arch=mlp", "model.latent_dim=8", "model.embedding_dim=4", "model.num_embeddings=16",
        "model.dead_code_steps=1", f"model.ema={ema}", *TINY])
    assert weights["quantizer.resets"] > 0


def test_standard_normal_gives_each_rank_its_rows_of_the_global_draw():
    from aectl.runtime.distributed import DataParallel, standard_normal

    def rank(r: int) -> DataParallel:
        dp = object.__new__(DataParallel)  # no process group: only the draws are tested
        dp.rank, dp.world_size, dp.weight, dp.global_size = r, 2, 0.5, 5
        return dp

    like = torch.zeros(())
    for shape, dim in (((5, 3), 0), ((4, 5, 3), 1)):  # a VAE's ε (N, K), an IWAE's (k, N, K)
        torch.manual_seed(5)
        whole, after = torch.randn(shape), torch.randn(2)
        for r, n in ((0, 3), (1, 2)):  # rank r holds examples r, r + 2, ...
            torch.manual_seed(5)
            with rank(r).global_batch():
                eps = standard_normal(shape[:dim] + (n,) + shape[dim + 1:], like, batch_dim=dim)
            assert torch.equal(eps, whole.index_select(dim, torch.arange(r, 5, 2)))
            assert torch.equal(torch.randn(2), after)  # the shared stream moved as in one process
        torch.manual_seed(5)
        assert torch.equal(standard_normal(shape, like), whole)  # outside a step: the local batch's draw


def test_torchrun_refuses_a_sweep():
    from aectl.config.errors import AectlError
    from aectl.runtime.distributed import setup

    with pytest.raises(AectlError, match="-m/--multirun cannot run under torchrun"):
        setup(["-m", "model.latent_dim=2,4"], "outputs/x")


def test_every_rank_gets_rank_0s_run_folder():
    from datetime import datetime

    from aectl.runtime.distributed import same_run_dir

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
