"""The run folder as something a run owns: one run at a time, a finished run never silently
overwritten, and the newest checkpoint found again for `trainer.resume=auto`. Also the one
place that knows where a run keeps its checkpoints, so train, eval and report resolve "a run
folder or a checkpoint file" alike.

No torch here: the CLI uses this before Hydra writes anything into an explicit run folder,
and `aectl report` must stay light.
"""

import contextlib
import os
import shutil
from pathlib import Path

from aectl.config.errors import AectlError, CheckpointError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = ".lock"
KEY = "hydra.run.dir"
INTERRUPTED = "interrupted.txt"  # one line left by a run stopped by a signal or Ctrl-C (aectl report reads it)
ERROR = "error.txt"  # one line left by a run that an error ended (aectl report reads it)
CHECKPOINTS = "checkpoints"  # the sub-folder of a run that holds its .pt files
LAST = "last.pt"  # the checkpoint written every save_every epochs: what resume and eval read by default


def checkpoint_in(run_dir: str | Path, name: str = LAST) -> Path:
    """Where a run keeps checkpoint `name`: <run_dir>/checkpoints/<name>."""
    return Path(run_dir) / CHECKPOINTS / name


def has_checkpoint(run_dir: str | Path, name: str = LAST) -> bool:
    return checkpoint_in(run_dir, name).is_file()


def run_dir_of(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to (<run>/checkpoints/x.pt → <run>); else the file's folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint.parent


def resolve_checkpoint(path: str | Path, name: str = LAST) -> Path:
    """One checkpoint: a .pt file as is; a run folder → its checkpoints/<name>."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = checkpoint_in(path, name)
        if not candidate.is_file():
            raise CheckpointError(f"{path}: no {CHECKPOINTS}/{name} in this folder (is it a run folder?)")
        return candidate
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    return path


def find_checkpoints(target: str | Path) -> list[Path]:
    """Every checkpoint a target names: a .pt file; a run folder → its checkpoints/last.pt; a
    multirun folder → every job's."""
    path = Path(target).expanduser()
    if path.is_file():
        return [path]
    if has_checkpoint(path):
        return [checkpoint_in(path)]
    if path.is_dir():
        found = sorted(path.rglob(f"{CHECKPOINTS}/{LAST}"))
        if not found:
            raise CheckpointError(f"{path}: no {CHECKPOINTS}/{LAST} in this folder or below it "
                                  "(expected a checkpoint file, a run folder or a multirun folder)")
        return found
    raise CheckpointError(f"{path}: no such checkpoint file, run folder or multirun folder")


def _try_lock(fd: int) -> bool:
    """An exclusive advisory lock that the OS drops when the process ends, however it ends:
    a run killed with SIGKILL leaves no stale lock behind."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


class RunLock:
    """Holds `<run_dir>/.lock` (with this process's pid in it) while a run trains there.

    Re-entrant within a process: the CLI takes it before Hydra writes into an explicit run
    folder, and `train` takes it again for folders Hydra named itself."""

    _held: dict[Path, "RunLock"] = {}

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir.resolve() / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        if self.path in RunLock._held:
            return self
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.fd = self._acquire()
        except OSError as err:
            raise AectlError(f"{KEY}={self.run_dir}: cannot write to this folder ({err.strerror or err}); "
                             "choose a folder you can write to") from None
        RunLock._held[self.path] = self
        return self

    def _acquire(self) -> int:
        for _ in range(10):  # the file may be replaced between open and lock: lock the one at the path
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise AectlError(f"{KEY}={self.run_dir}: another aectl run (pid {holder}) is training in this "
                                 "folder; wait for it to finish, stop it, or choose another folder")
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)
        raise AectlError(f"{KEY}={self.run_dir}: could not lock {LOCK_NAME} (it keeps changing)")

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        RunLock._held.pop(self.path, None)
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # Windows cannot remove an open file; the next run locks it again
        os.close(self.fd)
        self.fd = None


def is_locked(run_dir: Path) -> bool:
    """Whether a live run holds `run_dir`'s lock."""
    path = Path(run_dir) / LOCK_NAME
    if Path(run_dir).resolve() / LOCK_NAME in RunLock._held:
        return True
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        return not _try_lock(fd)  # closing the fd below releases a lock we took
    finally:
        os.close(fd)


def check_checkpoint_paths(run_dir: Path, resuming: bool) -> None:
    """Before training: the checkpoint paths can be written, and a fresh run does not overwrite
    the checkpoints of another one in the same folder."""
    for name in (LAST, "best.pt"):
        path = checkpoint_in(run_dir, name)
        if path.is_dir():
            raise AectlError(f"{KEY}={run_dir}: {path} is a folder, not a checkpoint file; "
                             "move it away or choose another folder")
    if not resuming and has_checkpoint(run_dir):
        raise AectlError(f"{KEY}={run_dir}: this folder already holds a run (checkpoints/last.pt); continue it with "
                         "trainer.resume=auto, or choose another folder for a new run")


@contextlib.contextmanager
def claim(run_dir: str | Path, resuming: bool):
    """Lock `run_dir` and check its checkpoint paths, for as long as the with block runs.
    Under torchrun only rank 0 writes, so only rank 0 takes the lock."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with RunLock(run_dir):
        check_checkpoint_paths(Path(run_dir), resuming)
        yield


def resume_source(value: str, run_dir: Path, explicit: bool, outputs: Path = Path("outputs")) -> str | None:
    """`trainer.resume` → the run folder or file to continue from, or None to start fresh.

    `auto` means: this run's own folder if it holds checkpoints/last.pt (the same command, run
    again after a crash or a preemption, continues); else, with an explicit hydra.run.dir, a
    fresh run there; else the newest checkpoints/last.pt under outputs/ that no live run holds."""
    if value != "auto":
        return value
    if has_checkpoint(run_dir):
        return str(run_dir)
    if explicit:
        return None
    found = [p for p in outputs.glob(f"**/{CHECKPOINTS}/{LAST}") if p.is_file() and not is_locked(run_dir_of(p))]
    if not found:
        raise AectlError(f"trainer.resume=auto: no run under {outputs}/ has a checkpoints/last.pt; give a run "
                         "folder or .pt file, or hydra.run.dir=<folder> to start a run there")
    return str(run_dir_of(max(found, key=lambda p: p.stat().st_mtime)))


def eval_name(checkpoint: Path, split: str, k: int | None, limit: int = 0) -> str:
    """The folder under <run>/eval/ that one evaluation writes: one per checkpoint, split, k and
    limit, so `aectl eval` of best.pt, of another split or with more samples keeps the others."""
    parts = [checkpoint.stem, split, *([f"k{k}"] if k else []), *([f"first{limit}"] if limit else [])]
    return "_".join(parts)


def eval_results(run_dir: Path) -> list[Path]:
    """The eval metrics.json files of a run, newest last."""
    return sorted((run_dir / "eval").glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)


def mark_interrupted(run_dir: str | Path, line: str) -> None:
    """Leave `line` in <run_dir>/interrupted.txt: without it a stopped run (no metrics.json,
    files unchanged since) would look like one still running."""
    try:
        (Path(run_dir) / INTERRUPTED).write_text(line.strip() + "\n")
    except OSError:
        pass  # an unwritable folder must not hide how the run ended


def error_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


def mark_failed(run_dir: str | Path, err: BaseException) -> None:
    """Leave the error that ended a run in <run_dir>/error.txt, one line: without it a failed run
    would look like one killed without a word."""
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 writes the run folder
        return
    try:
        (Path(run_dir) / ERROR).write_text(error_line(err) + "\n")
    except OSError:
        pass  # an unwritable folder must not hide the original error


def clear_interrupted(run_dir: str | Path) -> None:
    """A run (re)starting in the folder: the stop or error it recorded is over."""
    for name in (INTERRUPTED, ERROR):
        try:
            (Path(run_dir) / name).unlink(missing_ok=True)
        except OSError:
            pass


# A refused command leaves nothing behind: the run folder a single run is about to create is
# noted before it exists, and removed again if the command is refused before training starts.
_NEW_RUN_DIR: dict = {}  # "path": the run folder, "top": its highest folder that did not exist yet
_ONLY_STARTED = {".hydra", "train.log", LOCK_NAME, ERROR}  # what a run folder holds before training starts


def forget_new_run_dir() -> None:
    _NEW_RUN_DIR.clear()


def note_new_run_dir(run_dir: str | Path) -> None:
    """Note, before anything is written there, whether `run_dir` is new (the first note of a
    command counts: the CLI's lock of an explicit folder creates it before Hydra looks)."""
    if "path" in _NEW_RUN_DIR:
        return
    path = Path(run_dir).absolute()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    _NEW_RUN_DIR.update(path=path, top=missing[-1] if missing else None)


def remove_refused_run_dir() -> None:
    """Remove the run folder this command created, with the parents it created (outputs/<date>/),
    if it holds no more than a run that has not started training (.hydra/, train.log)."""
    path, top = _NEW_RUN_DIR.get("path"), _NEW_RUN_DIR.get("top")
    forget_new_run_dir()
    if path is None or top is None or os.environ.get("RANK", "0") != "0" or not path.is_dir():
        return
    try:
        if not set(os.listdir(path)) <= _ONLY_STARTED or \
                ((path / ".hydra").is_dir() and any(p.is_dir() for p in (path / ".hydra").iterdir())):
            return
        shutil.rmtree(path)
        for parent in [path.parent, *path.parent.parents][:len(path.relative_to(top).parts)]:
            parent.rmdir()  # only if empty: another run may have appeared there meanwhile
    except OSError:
        pass  # leaving an empty folder behind must not hide the error that refused the command


class NoteRunDir:
    """Hydra callback (configs/train.yaml, hydra.callbacks): notes whether a single run's folder
    exists before Hydra creates it. Hydra calls every hook; only these two matter."""

    def on_run_start(self, config, **_) -> None:
        try:
            note_new_run_dir(str(config.hydra.run.dir))  # ${now:...} resolves once: Hydra caches it
        except Exception:  # noqa: BLE001  an unresolvable folder pattern: nothing to clean up later
            forget_new_run_dir()

    def on_job_start(self, config, **_) -> None:
        noted = _NEW_RUN_DIR.get("path")
        if noted is not None and noted != Path(str(config.hydra.runtime.output_dir)).absolute():
            forget_new_run_dir()  # not the folder the job runs in: not ours to remove

    def on_run_end(self, *_, **__) -> None:
        pass

    def on_multirun_start(self, *_, **__) -> None:
        pass

    def on_multirun_end(self, *_, **__) -> None:
        pass

    def on_job_end(self, *_, **__) -> None:
        pass

    def on_compose_config(self, *_, **__) -> None:
        pass
