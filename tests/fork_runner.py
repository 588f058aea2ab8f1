"""A process that imports torch and aectl once, then forks a child per request, so that tests
can kill many training runs without paying the import time for each (tests/test_reliability.py).

Protocol, one JSON object per line on stdin, one answer per line on stdout:
  {"args": [...], "log": path}  → the child's pid; the child runs `aectl <args>` (output to log)
  {"save_loop": path}           → the child's pid; the child rewrites the checkpoint at path forever
  {"wait": pid}                 → the child's exit code (negative: killed by that signal)
"""

import contextlib
import io
import json
import os
import sys
import traceback

import torch
import torch.utils.tensorboard  # noqa: F401  (imported here, so every child starts with them loaded)
import torchvision.utils  # noqa: F401

from aectl.cli import main
from aectl.runs.checkpoint import save_checkpoint
import aectl.training.trainer  # noqa: F401

torch.set_num_threads(1)
with contextlib.redirect_stdout(io.StringIO()):  # warm Hydra up too: compose once, print nothing
    main(["train", "--cfg", "job"])


def save_loop(path: str) -> None:
    """Alternately write two large checkpoints that differ in every byte of their tensor."""
    payloads = [{"model": {}, "state_dict": {"w": torch.full((4_000_000,), float(i))}, "step": i, "epoch": i,
                 "config": {}} for i in (1, 2)]
    while True:
        for payload in payloads:
            save_checkpoint(path, payload)


def child(request: dict) -> int:
    fd = os.open(request.get("log", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if "save_loop" in request:
        save_loop(request["save_loop"])
    return main(request["args"])


for line in sys.stdin:
    request = json.loads(line)
    if "wait" in request:
        _, status = os.waitpid(request["wait"], 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child(request)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
