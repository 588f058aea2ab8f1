"""Progress bars that suit where the output goes.

On a terminal: tqdm's bar. In a log file or under a batch system (SLURM), tqdm's carriage-return
frames would be glued onto the log lines, so a plain line is written now and then instead:
each time another tenth of the total is done, and after a silence of LINE_EVERY_S seconds or,
later on, a quarter of the time so far: a sign of life that keeps a long run's log short
(a 10-hour run writes under 30 lines, not 1200).
"""

import sys
import time

LINE_EVERY_S = 30.0  # the longest silence between two plain lines early on...
LINE_SILENCE_SHARE = 0.25  # ...and later this share of the time elapsed
LINE_EVERY_SHARE = 0.1  # one plain line per tenth of the total


def progress_bar(iterable=None, *, file=None, **kwargs):
    """tqdm(iterable, **kwargs) when `file` (default: stderr) is a terminal, else a `LineProgress`
    taking the same arguments and answering the same calls (update, set_postfix,
    set_description, close, iteration)."""
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, file=stream, **kwargs)
    return LineProgress(iterable, file=stream, **kwargs)


def note(text: str, *, disable: bool = False, file=None) -> None:
    """One line where the progress bars go (default: stderr), for a long step no bar can count
    (a single library call): what runs, before it starts."""
    if not disable:
        stream = sys.stderr if file is None else file
        stream.write(f"{text}\n")
        stream.flush()


class LineProgress:
    """tqdm's interface, writing whole lines: "epoch 2/30: 120/600 step (20%), 41.3 step/s, 0:03 elapsed, loss=0.5"."""

    def __init__(self, iterable=None, desc: str | None = None, total: int | None = None, initial: int = 0,
                 unit: str = "it", disable: bool = False, file=None, **_tqdm_options):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.unit, self.disable = iterable, desc or "", total, unit, disable
        self.file = sys.stderr if file is None else file
        self.n = self._initial = self._written = initial
        self._start = self._last = time.monotonic()
        self._postfix = ""
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._due():
            self._write()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        """The last line (when something happened since the previous one); later calls do nothing."""
        if not self._closed and self.n != self._written:
            self._write()
        self._closed = True

    def _due(self) -> bool:
        if self.disable or self._closed:
            return False
        now = time.monotonic()
        if now - self._last >= max(LINE_EVERY_S, LINE_SILENCE_SHARE * (now - self._start)):
            return True
        if not self.total:
            return False
        step = max(1, round(self.total * LINE_EVERY_SHARE))
        return self.n // step > self._written // step or self.n >= self.total > self._written

    def _write(self) -> None:
        if self.disable:
            return
        now = time.monotonic()
        elapsed = now - self._start
        done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)" if self.total \
            else f"{self.n} {self.unit}"
        rate = f"{(self.n - self._initial) / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
        parts = [done, rate, f"{int(elapsed) // 60}:{int(elapsed) % 60:02d} elapsed", self._postfix]
        line = ", ".join(p for p in parts if p)
        self.file.write(f"{self.desc}: {line}\n" if self.desc else f"{line}\n")
        self.file.flush()
        self._written, self._last = self.n, now
