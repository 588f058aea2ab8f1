"""stdout and stderr that outlive their reader.

Ctrl-C on `aectl train 2>&1 | tee log` ends tee too, so aectl's next log line or progress line
meets a closed pipe. Python ignores SIGPIPE, so that write raises BrokenPipeError: inside the
training loop it would abort the step that was to write last.pt, and logging would print a
traceback for every later line. Here the first such write points the descriptor at os.devnull:
later writes (logging, progress, the exit's flush) succeed unseen and the run stops as any
SIGINT does. The run's own train.log keeps the record (aectl.cli.hydra_run).
"""

import contextlib
import os
import sys


class OutlivingStream:
    """A text stream's stand-in: its writes and flushes, except that a reader gone away makes
    them quiet from then on instead of raising. Everything else is the stream's."""

    def __init__(self, stream):
        self.stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        """From now on, nothing: the descriptor goes to os.devnull, so the bytes the stream still
        buffers are flushed there (at exit too) rather than failing again."""
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # a stream without a descriptor of its own: dropping its writes is enough

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def outliving_streams():
    """sys.stdout and sys.stderr as `OutlivingStream`s while the command runs; loggers set up
    meanwhile (Hydra's `ext://sys.stdout`) keep writing through them."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (None if s is None else OutlivingStream(s) for s in saved)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
