"""SIGINT/SIGTERM → a clean stop (no torch import here: the CLI catches `Interrupted`).

The first signal only sets a flag; the training loop reads it after every step, writes
`last.pt` (mid-epoch included: aectl.training.guards) and raises `Interrupted`, which the CLI turns into
a resume command and exit code 128 + signal (130 for SIGINT, 143 for SIGTERM). A second signal
raises `Interrupted` at once: the checkpoint writes are atomic, so leaving mid-write is safe.
"""

import os
import signal
import threading
from pathlib import Path


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM, SIGUSR2 (submitit's preemption signal), … or the bare number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(BaseException):
    """Training stopped on a signal. A BaseException, like KeyboardInterrupt: no `except
    Exception` on the way up (Hydra's job runner has one) may swallow it."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: Path | None = None):
        super().__init__(signum, step, checkpoint)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.run_dir: Path | None = None  # set by the CLI, which knows the run folder

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        name = signal_name(self.signum)
        if self.checkpoint is None:
            return f"stopped at once by a second {name}; the last checkpoint written, if any, is intact"
        lines = [f"stopped by {name} after step {self.step}; saved {self.checkpoint}"]
        if self.run_dir is not None:
            lines.append("resume with: aectl train " + " ".join(
                override(key, self.run_dir) for key in ("trainer.resume", "hydra.run.dir")))
        return "\n".join(lines)


def override(key: str, path) -> str:
    """`key=path` as one shell word that Hydra parses back to `path`: a sweep job's folder
    (model.latent_dim=4) or a path with spaces needs Hydra's quotes, and those the shell's."""
    import re
    import shlex

    text = str(path)
    if re.fullmatch(r"[\w./~-]+", text):
        return f"{key}={text}"
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'  # Hydra's quoted string
    return shlex.quote(f"{key}={quoted}")


class StopSignals:
    """SIGINT/SIGTERM → a stop request the loop reads after each step. Calling the object returns
    the signal number that asked to stop, or 0. Handlers are installed only in the main thread
    (Python allows no other) and the previous ones are restored on exit."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.signals, self.signum, self.previous = signals, 0, {}

    def __call__(self) -> int:
        return self.signum

    def _handle(self, signum, frame) -> None:
        if self.signum:  # the second one: leave now, the atomic last.pt write makes this safe
            raise Interrupted(signum)
        self.signum = signum
        name = signal_name(signum)
        notice = f"\n{name} received: finishing the current step, then saving checkpoints/last.pt " \
                 f"(send it again to stop at once)\n"
        try:  # os.write, not logging or print: a handler may run while the main thread holds their locks
            os.write(2, notice.encode())
        except OSError:  # stderr is a pipe whose reader Ctrl-C ended too (`aectl train 2>&1 | tee log`):
            pass  # raising here would abort the step and lose the checkpoint the stop is for

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()
