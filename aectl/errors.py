"""Exceptions for bad user input: each carries a one-line message the CLI prints as is.

`assert` stays for internal invariants; anything a user can cause raises one of these.
"""


class AectlError(Exception):
    """Base class: the message names what was wrong and what is allowed."""


class ConfigError(AectlError):
    """A config value is out of range or not one of the allowed choices."""

    def __init__(self, key: str, value, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key = key
        self.value = value


class DataError(AectlError):
    """A dataset could not be read or has the wrong shape, range or content."""


class CheckpointError(AectlError):
    """A checkpoint file is missing, unreadable, unsafe or of another format."""
