"""Self-describing checkpoints: saved atomically, loaded as data only.

A checkpoint is a dict of plain Python values and tensors, loadable with
`torch.load(weights_only=True)`: loading one never imports or calls anything named in the file.
"""

import io
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from aectl import __version__
from aectl.config.errors import CheckpointError, plain_text, refused_global
from aectl.models import build_model
from aectl.runs.runfolder import resolve_checkpoint

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "aectl_version", "model", "state_dict", "step", "epoch", "config")
_UMASK = os.umask(0o022)  # read the process umask (the only way is to set it) ...
os.umask(_UMASK)  # ... and put it back at once


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` to `path` atomically: a temporary file in the same folder, flushed and
    fsynced, then renamed over the target (and the folder fsynced, so the rename survives a
    power cut). A crash at any moment leaves the old file or the new one, never half of one; a
    write that fails (full disk, no permission, the path is a folder) raises CheckpointError
    and leaves the old file as it was."""
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, "aectl_version": __version__, **payload}
    buffer = io.BytesIO()  # serialise first: torch.save would turn a failed write into an opaque RuntimeError
    torch.save(payload, buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _write_synced(fd, buffer.getbuffer())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
    except OSError as err:
        raise CheckpointError(f"{path}: could not write the checkpoint ({err.strerror or err}); "
                              "the previous file there, if any, is unchanged") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _write_synced(fd: int, data) -> None:
    """Write `data` to the new file `fd`, flush and fsync it, and close it."""
    with os.fdopen(fd, "wb") as f:
        if hasattr(os, "fchmod"):
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; give a plain file's mode
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename itself is atomic there too
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint as data (weights_only=True) on the CPU and check its format."""
    path = resolve_checkpoint(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not the user's business
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        name = refused_global(err)
        if name is None:  # not a pickle of plain data at all
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated or another format)") from None
        raise CheckpointError(f"{path}: refused, the file holds more than plain data (it refers to {name}, which "
                              "loading would import or call); nothing in it was run") from None
    except Exception as err:  # noqa: BLE001  arbitrary bytes can fail anywhere in the unpickler
        # (e.g. a text file starting with 'h' reads as a memo lookup → KeyError)
        detail = plain_text(str(err)).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or another format: "
                              f"{type(err).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not an aectl checkpoint (missing keys)")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt['format_version']} "
                              f"(written by aectl {ckpt['aectl_version']}); this aectl reads version {FORMAT_VERSION}")
    return ckpt


def rebuild_model(ckpt: dict) -> nn.Module:
    """The model of a checkpoint, from its (kind, kwargs) and state_dict alone, in eval mode."""
    model = build_model(ckpt["model"]["kind"], **ckpt["model"]["kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
