"""Reliability: no run lost, no bad input unexplained, no untrusted file executed.

Killed runs (SIGKILL at random moments, SIGINT, SIGTERM) resume to exactly the weights of an
uninterrupted run; non-finite losses stop or skip as configured; full disks, unwritable or
busy run folders and malicious checkpoints end in one line and leave every file intact.
"""

import errno
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from aectl.cli import main
from aectl.config.errors import AectlError, CheckpointError
from aectl.objectives.objective import TERMS
from aectl.runs import checkpoint as checkpoint_mod
from aectl.runs import runfolder, signals
from aectl.runs.checkpoint import load_checkpoint, save_checkpoint
from aectl.training import guards

HERE = Path(__file__).resolve().parent
# 160 synthetic 4×4 examples → 128 for training, 8 steps of 16 per epoch; a small VAE with
# input masking, so both the batch order and the per-step noise/ε draws must be restored.
TINY = ("dataset=synthetic", "dataset.num_samples=160", "dataset.shape=[1,4,4]", "trainer.batch_size=16",
        "trainer.log_every=3", "model.hidden_dims=[32]", "noise=masking", "trainer.progress=false",
        "trainer.device=cpu", "trainer.images_every=1000")
STEPS_PER_EPOCH = 8


def weights(run: Path) -> dict:
    return load_checkpoint(run)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def train(tmp_path, run: str, *overrides: str) -> tuple[int, Path]:
    run_dir = tmp_path / run
    return main(["train", *TINY, *overrides, f"hydra.run.dir={run_dir}"]), run_dir


# ---------------------------------------------------------------- processes killed and resumed


class ForkRunner:
    """tests/fork_runner.py: imports torch once, then forks a child per run (see there)."""

    def __init__(self, cwd: Path):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fork_runner.py")], cwd=cwd, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _ask(self, request: dict) -> int:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def start(self, args: list[str], log: Path) -> int:
        return self._ask({"args": args, "log": str(log)})

    def save_loop(self, path: Path) -> int:
        return self._ask({"save_loop": str(path)})

    def wait(self, pid: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:  # never hang the suite on a stuck child
            time.sleep(0.02)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        return self._ask({"wait": pid})

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _alive(pid: int) -> bool:
    """Whether the child still runs (a zombie waiting for the runner's waitpid counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    if not hasattr(os, "fork") or not Path("/proc/self/stat").exists():
        pytest.skip("needs fork and /proc")
    runner = ForkRunner(tmp_path_factory.mktemp("runner"))
    yield runner
    runner.close()


def wait_for(path: Path, text: str, timeout: float = 30, count: int = 1, process=None) -> None:
    """Until `text` is `count` times in `path` (or `process`, when given, has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before {text!r} appeared in {path}")
        time.sleep(0.005)
    raise AssertionError(f"{text!r} never appeared {count} time(s) in {path}")


def wait_until(state, what: str, timeout: float = 60) -> None:
    """Poll `state()` until it holds (a generous bound, never a duration the test asserts)."""
    deadline = time.monotonic() + timeout
    while not state():
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        time.sleep(0.001)


def wait_for_epochs(run: Path, count: int, timeout: float = 30) -> None:
    """Until the run has written checkpoints/last.pt `count` more times (once an epoch: each a
    fresh file renamed into place), whatever its log says (validation is logged every few epochs)."""
    path, deadline = run / "checkpoints" / "last.pt", time.monotonic() + timeout

    def version():
        try:
            stat = path.stat()
            return stat.st_ino, stat.st_mtime_ns
        except FileNotFoundError:
            return None

    seen, last = 0, version()
    while time.monotonic() < deadline:
        now = version()
        if now is not None and now != last:
            seen, last = seen + 1, now
            if seen >= count:
                return
        time.sleep(0.005)
    raise AssertionError(f"{path} was not written {count} more time(s)")


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights(runner, tmp_path):
    """A run killed 10 times at random moments (3 during start-up, 7 during training) and
    resumed with the same command each time (`trainer.resume=auto` in its own folder) ends with
    the weights of an uninterrupted run; two of the killed states, finished on their own, too."""
    args = ["train", *TINY, "trainer.epochs=60", "trainer.resume=auto"]
    reference = runner.start([*args, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path / "reference.log")
    run, rng, branches, epochs_seen = tmp_path / "killed", random.Random(7), [], set()
    for kill in range(10):
        log = tmp_path / f"segment{kill}.log"
        pid = runner.start([*args, f"hydra.run.dir={run}"], log)
        if kill % 4 == 3:
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere in start-up: Hydra, data, model
        else:  # once this segment trained an epoch (so each makes progress, however loaded the machine),
            wait_for_epochs(run, count=2)  # somewhere in a step, an evaluation or a checkpoint write
            time.sleep(rng.uniform(0.0, 0.12))
        os.kill(pid, signal.SIGKILL)
        assert runner.wait(pid) == -signal.SIGKILL, log.read_text()
        if (run / "checkpoints" / "last.pt").exists():
            ckpt = load_checkpoint(run)  # every last.pt left by a kill loads
            assert ckpt["step"] == ckpt["epoch"] * STEPS_PER_EPOCH + ckpt["batch"]
            epochs_seen.add(ckpt["epoch"])
            if len(branches) < 2 and ckpt["epoch"] not in [b[1] for b in branches]:
                branch = tmp_path / f"branch{len(branches)}"
                shutil.copytree(run, branch)
                branches.append((runner.start([*args, f"hydra.run.dir={branch}"], tmp_path / f"{branch.name}.log"),
                                 ckpt["epoch"]))
    final = runner.start([*args, f"hydra.run.dir={run}"], tmp_path / "final.log")
    assert runner.wait(final) == 0 and runner.wait(reference) == 0
    expected = weights(tmp_path / "reference")
    assert load_checkpoint(run)["epoch"] == 60
    assert_same_weights(weights(run), expected)
    assert len(epochs_seen) >= 3 and len(branches) == 2  # the kills did land at different points of training
    for i, (pid, _) in enumerate(branches):
        assert runner.wait(pid) == 0
        assert_same_weights(weights(tmp_path / f"branch{i}"), expected)
    assert not list(run.glob("checkpoints/.*.tmp")) and not (run / ".lock").exists()


def test_sigkill_while_writing_a_checkpoint_leaves_old_or_new_never_half(runner, tmp_path):
    """A process rewriting a 16 MB checkpoint in a loop, killed while a new one is half written
    (its temporary file is there): the file at the path always loads, and is exactly one of the
    payloads written. Each kill waits for that state, never for an amount of time."""
    path = tmp_path / "checkpoints" / "last.pt"
    for round_ in range(6):
        for stale in tmp_path.glob("checkpoints/.last.pt.*.tmp"):  # the last round's, so this round waits for its own
            stale.unlink()
        pid = runner.save_loop(path)
        wait_until(lambda: path.exists() and any(path.parent.glob(".last.pt.*.tmp")), f"round {round_}: mid-write")
        os.kill(pid, signal.SIGKILL)
        assert runner.wait(pid) == -signal.SIGKILL
        ckpt = load_checkpoint(path)
        assert torch.equal(ckpt["state_dict"]["w"], torch.full((4_000_000,), float(ckpt["step"])))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_mid_epoch_prints_resume_command_and_resumes_exactly(runner, tmp_path, signum):
    args = ["train", *TINY, "trainer.epochs=40"]
    run, log = tmp_path / "run", tmp_path / "run.log"
    pid = runner.start([*args, f"hydra.run.dir={run}"], log)
    wait_for(run / "train.log", "epoch 2/40")
    os.kill(pid, signum)
    assert runner.wait(pid) == 128 + signum
    out = log.read_text()
    name = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}[signum]
    assert f"stopped by {name} after step" in out
    command = re.search(r"resume with: (aectl train .*)", out).group(1)
    assert command == f"aectl train trainer.resume={run} hydra.run.dir={run}"
    ckpt = load_checkpoint(run)
    assert 2 <= ckpt["epoch"] < 40 and ckpt["step"] == ckpt["epoch"] * STEPS_PER_EPOCH + ckpt["batch"]
    assert re.search(rf"after step {ckpt['step']}; saved {re.escape(str(run))}/checkpoints/last.pt", out)
    # TensorBoard was flushed: it holds the train/loss of every log step up to the stop, and of
    # the partial interval before it.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = [e.step for e in EventAccumulator(str(run)).Reload().Scalars("train/loss")]
    assert logged == sorted({*range(3, ckpt["step"] + 1, 3), ckpt["step"]})

    resumed = runner.start(command.split()[1:] + list(args[1:]), tmp_path / "resumed.log")
    reference = runner.start([*args, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path / "reference.log")
    assert runner.wait(resumed) == 0 and runner.wait(reference) == 0
    assert_same_weights(weights(run), weights(tmp_path / "reference"))


def test_sigterm_through_the_console_script(tmp_path):
    """The installed entry point: exit code 143 and the resume command on stderr."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "aectl", "train", *TINY, "trainer.epochs=500",
                             f"hydra.run.dir={run}"], cwd=tmp_path, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_epochs(run, count=1, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert f"resume with: aectl train trainer.resume={run} hydra.run.dir={run}" in err
    assert load_checkpoint(run)["epoch"] >= 1


@pytest.mark.parametrize("both", [False, True], ids=["stdout-piped", "stdout-and-stderr-piped"])
def test_ctrl_c_with_a_dead_pipe_reader_saves_and_says_how_to_resume(tmp_path, both):
    """Ctrl-C on `aectl train | tee log` (or `2>&1 | tee log`) ends tee too: aectl then writes into
    a pipe without a reader (Python ignores SIGPIPE, so each write raises). That must not cost
    last.pt: exit 130, the checkpoint, and the resume line on stderr or in train.log."""
    run = tmp_path / "run"
    args = [a for a in TINY if a != "trainer.progress=false"] if both else TINY  # progress lines on stderr too
    # The reader dies of SIGINT as tee does, also when the suite runs with SIGINT ignored (a shell's
    # background job), a disposition every child would inherit.
    reader = subprocess.Popen([sys.executable, "-c", "import signal, sys\n"
                               "signal.signal(signal.SIGINT, signal.SIG_DFL)\nfor line in sys.stdin: pass"],
                              stdin=subprocess.PIPE)
    err_file = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aectl", "train", *args, "trainer.epochs=1000",
                             f"hydra.run.dir={run}"], cwd=tmp_path, stdout=reader.stdin,
                            stderr=subprocess.STDOUT if both else err_file)
    reader.stdin.close()  # the reader holds the pipe's only read end
    try:
        wait_for(run / "train.log", "epoch 50/1000", timeout=120)  # val lines every 50 epochs
        reader.send_signal(signal.SIGINT)  # Ctrl-C reaches every process of the pipeline
        reader.wait(timeout=60)
        # Two more val lines: both were logged to the reader-less stdout before the signal.
        wait_for(run / "train.log", "epoch 150/1000", timeout=120, process=proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        err_file.close()
    log = (run / "train.log").read_text()
    assert proc.returncode == 130, log
    stopped = re.search(rf"stopped by SIGINT after step (\d+); saved {re.escape(str(run))}/checkpoints/last.pt", log)
    assert stopped, log
    assert load_checkpoint(run)["step"] == int(stopped.group(1))
    resume = f"resume with: aectl train trainer.resume={run} hydra.run.dir={run}"
    assert resume in log
    if not both:  # stderr still reaches the terminal: the usual lines, and no logging tracebacks
        err = (tmp_path / "stderr.txt").read_text()
        assert resume in err and "Traceback" not in err and "Logging error" not in err, err


@pytest.mark.parametrize("stop_step", [3, 8, 13], ids=["mid-epoch", "last-batch", "second-epoch"])
def test_interrupt_at_any_batch_resumes_to_the_uninterrupted_weights(tmp_path, capsys, monkeypatch, stop_after,
                                                                     stop_step):
    rc, reference = train(tmp_path, "reference", "trainer.epochs=3")
    assert rc == 0
    stop_after(stop_step)
    rc, run = train(tmp_path, "run", "trainer.epochs=3")
    assert rc == 130
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == stop_step
    assert (ckpt["epoch"], ckpt["batch"]) == divmod(stop_step, STEPS_PER_EPOCH) or \
        (ckpt["epoch"], ckpt["batch"]) == (stop_step // STEPS_PER_EPOCH - 1, STEPS_PER_EPOCH)
    assert f"resume with: aectl train trainer.resume={run} hydra.run.dir={run}" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["train", *TINY, "trainer.epochs=3", f"trainer.resume={run}", f"hydra.run.dir={run}"]) == 0
    assert_same_weights(weights(run), weights(reference))
    assert load_checkpoint(run)["step"] == 3 * STEPS_PER_EPOCH


def test_a_second_signal_stops_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with signals.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop() == signal.SIGINT  # the first only asks
        with pytest.raises(signals.Interrupted) as raised:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert raised.value.checkpoint is None and raised.value.exit_code == 130
    assert "at once" in raised.value.message()
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored


# ---------------------------------------------------------------- non-finite losses


def test_absurd_learning_rate_stops_naming_step_and_term(tmp_path, capsys):
    rc, run = train(tmp_path, "run", "trainer.lr=1e6", "trainer.epochs=2")
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    match = re.search(r"non-finite (\w+) at step (\d+);.*trainer\.on_nonfinite=stop.*no checkpoint was written", line)
    assert match and match.group(1) in TERMS and 1 <= int(match.group(2)) <= STEPS_PER_EPOCH, line
    assert not (run / "checkpoints" / "last.pt").exists()  # nothing non-finite was saved


def test_absurd_learning_rate_with_skip_batch_stops_after_the_limit(tmp_path, capsys):
    rc, run = train(tmp_path, "run", "trainer.lr=1e6", "trainer.epochs=3", "trainer.on_nonfinite=skip_batch",
                    "trainer.max_skipped_batches=5")
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert re.search(r"5 batches in a row skipped for a non-finite \w+ \(steps \d+-\d+\).*"
                     r"trainer\.max_skipped_batches=5", line), line


@pytest.fixture
def poison_step(monkeypatch):
    """Make the input of the k-th training step (not evaluation) all NaN."""
    from aectl.datasets import noise

    def arm(k: int) -> None:
        corrupt, calls = noise.corrupt, iter(range(1, 10**9))

        def poisoned(x, *args, **kwargs):
            out = corrupt(x, *args, **kwargs)
            return out * float("nan") if torch.is_grad_enabled() and next(calls) == k else out

        monkeypatch.setattr(noise, "corrupt", poisoned)

    return arm


def test_nonfinite_in_a_later_epoch_names_the_last_good_checkpoint(tmp_path, capsys, poison_step):
    poison_step(11)
    rc, run = train(tmp_path, "run", "trainer.epochs=3")
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert f"non-finite recon at step 11; training stopped (trainer.on_nonfinite=stop); last good checkpoint: " \
           f"{run}/checkpoints/last.pt" in line, line
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == STEPS_PER_EPOCH  # the one from epoch 1, intact and finite
    assert all(v.isfinite().all() for v in ckpt["state_dict"].values())


def test_skip_batch_skips_the_bad_batch_counts_it_and_trains_on(tmp_path, poison_step):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    poison_step(11)
    rc, run = train(tmp_path, "run", "trainer.epochs=3", "trainer.on_nonfinite=skip_batch")
    assert rc == 0
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 3 * STEPS_PER_EPOCH and ckpt["nonfinite"] == {"skipped": 1, "in_a_row": 0}
    assert all(v.isfinite().all() for v in ckpt["state_dict"].values())
    skipped = {e.step: e.value for e in EventAccumulator(str(run)).Reload().Scalars("train/skipped_batches")}
    assert skipped[9] == 0 and skipped[12] == 1 and skipped[24] == 1
    train_loss = EventAccumulator(str(run)).Reload().Scalars("train/loss")
    assert all(torch.isfinite(torch.tensor(e.value)) for e in train_loss)  # the skipped batch is left out


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_a_skipped_step_leaves_weights_and_optimizer_state_untouched(kind):
    import contextlib

    from aectl.models import build_model
    from aectl.objectives.objective import Objective
    from aectl.training.optim import make_optimizer
    from aectl.training.trainer import train_step

    torch.manual_seed(0)
    model = build_model("ae", input_shape=[1, 4, 4], latent_dim=3, hidden_dims=[8])
    optimizer = make_optimizer(kind, model.parameters(), 1e-2, 0.01, fused=True)
    objective, x = Objective(likelihood="gaussian", variational=False), torch.rand(4, 1, 4, 4)
    train_step(model, optimizer, x, x, objective, 0.0, 0.0, contextlib.nullcontext(), True)
    before = ({k: v.clone() for k, v in model.state_dict().items()},
              {i: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
               for i, s in optimizer.state_dict()["state"].items()})
    terms, norm = train_step(model, optimizer, x * float("nan"), x, objective, 0.0, 0.0, contextlib.nullcontext(), True)
    assert not terms.isfinite().all() and not norm.isfinite()
    assert_same_weights(model.state_dict(), before[0])
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            assert torch.equal(v, before[1][i][k]) if torch.is_tensor(v) else v == before[1][i][k]
    train_step(model, optimizer, x, x, objective, 0.0, 0.0, contextlib.nullcontext(), True)
    assert not all(torch.equal(v, before[0][k]) for k, v in model.state_dict().items())  # good steps apply


def test_watch_blames_the_first_bad_term_and_counts_runs():
    row = lambda **bad: [bad.get(t, 1.0) for t in TERMS] + [bad.get("grad", 1.0)]  # noqa: E731
    assert guards.blame(row()) is None
    assert guards.blame(row(loss=float("nan"), kl=float("inf"))) == "kl"
    assert guards.blame(row(grad=float("nan"))) == "gradients"
    watch = guards.NonFiniteWatch("skip_batch", 3)
    assert watch.inspect([row(), row(recon=float("nan")), row(recon=float("nan")), row()], 5) == \
        [True, False, False, True]
    assert (watch.skipped, watch.in_a_row) == (2, 0)
    watch.inspect([row(grad=float("inf")), row(grad=float("inf"))], 9)
    with pytest.raises(guards.NonFiniteError, match=r"3 batches in a row .*gradients \(steps 9-11\)"):
        watch.inspect([row(grad=float("inf"))], 11)  # the run continues across reads
    with pytest.raises(guards.NonFiniteError, match="non-finite penalty at step 4"):
        guards.NonFiniteWatch("stop", 1).inspect([row(), row(penalty=float("nan"))], 3)


# ---------------------------------------------------------------- disks, folders, locks


def _fill_disk(monkeypatch, after_bytes: int):
    """From now on checkpoint files get `after_bytes` bytes written, then the disk is full."""

    def write(fd, data):
        os.write(fd, bytes(data)[:after_bytes])
        os.close(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_mod, "_write_synced", write)


def test_full_disk_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {}, "state_dict": {"w": torch.ones(1000)}, "step": 1, "epoch": 1, "config": {}})
    before = path.read_bytes()
    _fill_disk(monkeypatch, after_bytes=500)
    with pytest.raises(CheckpointError) as raised:
        save_checkpoint(path, {"model": {}, "state_dict": {"w": torch.zeros(1000)}, "step": 2, "epoch": 2,
                               "config": {}})
    assert str(raised.value) == f"{path}: could not write the checkpoint (No space left on device); " \
                                "the previous file there, if any, is unchanged"
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary file left


def test_full_disk_during_training_ends_in_one_line(tmp_path, capsys, monkeypatch):
    real_save, saves = checkpoint_mod.save_checkpoint, iter(range(10**9))

    def save(path, payload):  # epoch 1 saves best.pt and last.pt; the disk is full from then on
        if next(saves) >= 2:
            _fill_disk(monkeypatch, after_bytes=100)
        real_save(path, payload)

    monkeypatch.setattr("aectl.training.trainer.save_checkpoint", save)
    rc, run = train(tmp_path, "run", "trainer.epochs=3")
    assert rc == 2
    assert "could not write the checkpoint (No space left on device)" in one_line(capsys.readouterr().err)
    assert load_checkpoint(run)["epoch"] == 1
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt"}


def test_checkpoint_path_that_is_a_folder_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints" / "last.pt").mkdir(parents=True)
    rc, run = train(tmp_path, "run", "trainer.epochs=1")
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"aectl train: error: hydra.run.dir={run}: ") and "last.pt is a folder" in line
    with pytest.raises(CheckpointError, match="could not write the checkpoint"):
        save_checkpoint(run / "checkpoints" / "last.pt", {"step": 0})
    assert (run / "checkpoints" / "last.pt").is_dir()


def test_run_folder_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    rc, run = train(tmp_path, "a_file/run", "trainer.epochs=1")
    assert rc == 2
    assert one_line(capsys.readouterr().err) == (f"aectl train: error: hydra.run.dir={run}: cannot write to this "
                                                 "folder (Not a directory); choose a folder you can write to")


def test_default_run_folder_that_cannot_be_created(tmp_path, capsys):
    (tmp_path / "outputs").write_text("a file where Hydra wants its outputs/ folder")
    rc = main(["train", *TINY, "trainer.epochs=1"])
    assert rc == 2
    line = one_line(capsys.readouterr().err)
    assert "Not a directory" in line and "hydra.run.dir" in line


def test_two_runs_in_one_folder_the_second_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("the first run's record\n")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom aectl.runs.runfolder import RunLock\n"
                               f"with RunLock({str(run)!r}):\n    print('locked', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _ = train(tmp_path, "run", "trainer.epochs=1")
        assert rc == 2
        assert one_line(capsys.readouterr().err) == (
            f"aectl train: error: hydra.run.dir={run}: another aectl run (pid {holder.pid}) is training in this "
            "folder; wait for it to finish, stop it, or choose another folder")
        assert (run / ".hydra" / "config.yaml").read_text() == "the first run's record\n"
        assert not (run / "checkpoints").exists() and not (run / "train.log").exists()
        assert runfolder.is_locked(run)
    finally:
        holder.kill()
        holder.wait()
    # The holder died without unlocking (SIGKILL): its .lock file is stale, and taken over.
    assert (run / ".lock").read_text().strip() == str(holder.pid) and not runfolder.is_locked(run)
    assert main(["train", *TINY, "trainer.epochs=1", f"hydra.run.dir={run}", "trainer.resume=auto"]) == 0
    assert load_checkpoint(run)["epoch"] == 1 and not (run / ".lock").exists()


def test_a_new_run_never_overwrites_a_finished_one(tmp_path, capsys):
    rc, run = train(tmp_path, "run", "trainer.epochs=1")
    assert rc == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    rc, _ = train(tmp_path, "run", "trainer.epochs=1")
    assert rc == 2
    assert "this folder already holds a run (checkpoints/last.pt); continue it with trainer.resume=auto" in \
        one_line(capsys.readouterr().err)
    # The same command with trainer.resume=auto: finished, so it says so and does nothing.
    rc, _ = train(tmp_path, "run", "trainer.epochs=1", "trainer.resume=auto")
    assert rc == 0
    assert f"{run}: this run already finished all 1 epochs, nothing to train" in capsys.readouterr().out
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_auto_continues_this_folder_or_the_newest_run(tmp_path, capsys):
    # An explicit empty folder: a fresh run starts there.
    rc, run = train(tmp_path, "outputs/first", "trainer.epochs=1", "trainer.resume=auto")
    assert rc == 0 and load_checkpoint(run)["epoch"] == 1
    rc, newer = train(tmp_path, "outputs/second", "trainer.epochs=1", "trainer.seed=1")
    assert rc == 0
    os.utime(newer / "checkpoints" / "last.pt", (time.time() + 5, time.time() + 5))
    # No folder given: the newest last.pt under outputs/ (here, in the test's working folder).
    capsys.readouterr()
    assert main(["train", *TINY, "trainer.resume=auto", "trainer.epochs=2"]) == 0
    continued = [p for p in Path("outputs").glob("*/*/checkpoints/last.pt")]
    assert len(continued) == 1
    ckpt = load_checkpoint(continued[0])
    assert ckpt["epoch"] == 2 and ckpt["config"]["trainer"]["seed"] == 1


def test_resume_auto_with_nothing_to_resume(tmp_path, capsys):
    assert main(["train", *TINY, "trainer.resume=auto"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "aectl train: error: trainer.resume=auto: no run under outputs/ has a checkpoints/last.pt; give a run "
        "folder or .pt file, or hydra.run.dir=<folder> to start a run there")


# ---------------------------------------------------------------- untrusted checkpoints


class Payload:
    """Unpickling this creates a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("form", ["torch.save", "raw pickle"])
def test_malicious_checkpoint_is_refused_without_running(tmp_path, capsys, form):
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    payload = {"format_version": 1, "aectl_version": "0", "model": Payload(marker), "state_dict": {}, "step": 0,
               "epoch": 0, "config": {}}
    if form == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="refused, the file holds more than plain data"):
        load_checkpoint(path)
    assert not marker.exists()
    assert main(["train", f"trainer.resume={path}", f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"aectl train: error: trainer.resume={path}: {path}: refused")
    assert not marker.exists()
    # The payload is live: unrestricted unpickling runs it (a torch.save file is a zip holding data.pkl).
    if form == "torch.save":
        with zipfile.ZipFile(path) as archive:
            pickle.loads(archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl"))))
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_every_torch_load_in_aectl_is_weights_only():
    sources = (HERE.parent / "aectl").rglob("*.py")
    calls = [(p.name, m.group(0)) for p in sources for m in re.finditer(r"torch\.load\([^)]*\)", p.read_text())]
    assert calls and all("weights_only=True" in call for _, call in calls), calls


def test_errors_raised_for_users_are_aectl_errors():
    assert issubclass(guards.NonFiniteError, AectlError)
    assert issubclass(signals.Interrupted, BaseException) and not issubclass(signals.Interrupted, Exception)


class _Unlisted:
    """A harmless class torch's weights_only loader does not allow."""


@pytest.mark.parametrize("content, named", [(_Unlisted(), "test_reliability._Unlisted"),
                                            (np.zeros(3), "numpy"), (Payload(Path("marker")), "getattr")],
                         ids=["class", "numpy array", "code"])
def test_checkpoint_refusals_carry_no_torch_advice_and_no_colour_codes(tmp_path, capsys, content, named):
    path = tmp_path / "other.pt"
    torch.save({"format_version": 1, "x": content}, path)
    for command in (["eval", f"ckpt={path}"], ["train", f"trainer.resume={path}", f"hydra.run.dir={tmp_path / 'r'}"],
                    ["train", "dataset=tensor_file", f"dataset.path={path}", f"hydra.run.dir={tmp_path / 'r'}"]):
        assert main(command) == 2
        line = one_line(capsys.readouterr().err)
        assert "refused" in line and f"it refers to {named}" in line, line
        assert "weights_only" not in line and "likely succeed" not in line and "\x1b" not in line, line
    assert not Path("marker").exists()


def test_a_plain_pickle_is_one_line_without_torch_warnings(tmp_path, capsys):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert main(["eval", f"ckpt={path}"]) == 2
    assert one_line(capsys.readouterr().err) == f"aectl eval: error: {path}: not a readable checkpoint (truncated " \
                                                "or another format)"
