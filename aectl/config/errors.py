"""Exceptions for bad user input: each carries a one-line message the CLI prints as is.

`assert` stays for internal invariants; anything a user can cause raises one of these.
"""

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class AectlError(Exception):
    """Base class: the message names what was wrong and what is allowed."""


class ConfigError(AectlError):
    """A config value is out of range or not one of the allowed choices."""

    def __init__(self, key: str, value, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


def check(key: str, value, ok: bool, allowed: str) -> None:
    """Refuse `key=value` with what is allowed, unless `ok`: every config check's one line."""
    if not ok:
        raise ConfigError(key, value, allowed)


class DataError(AectlError):
    """A dataset could not be read or has the wrong shape, range or content."""


class CheckpointError(AectlError):
    """A checkpoint file is missing, unreadable, unsafe or of another format."""


def refused_global(err: BaseException) -> str | None:
    """The global (module.name) that torch.load(weights_only=True) refused to import, if the
    refusal names one. Only that is quoted to users: torch's own text advises loading with
    weights_only=False (which runs the file's code) and carries terminal colour codes."""
    found = re.search(r"GLOBAL ([\w.]+)", plain_text(str(err)))
    return found.group(1) if found else None


def plain_text(text: str) -> str:
    """`text` without terminal colour codes."""
    return _ANSI.sub("", text)
