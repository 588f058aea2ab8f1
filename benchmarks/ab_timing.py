"""What the side-by-side benchmarks share: aectl's loop and a hand-written one, timed in one
process in alternating order (A B, then B A), so machine noise hits both and the ratio counts."""

import os
import platform
import statistics
import sys
import time

import torch


def timed(fn, device: torch.device) -> float:
    """Seconds `fn()` takes, the device's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def alternate(run_aectl, run_hand, work: int, rounds: int, device: torch.device) -> dict:
    """`rounds` timings of each (after one warm-up run of each), alternating which goes first:
    medians of work/second and the median and range of the per-round ratio aectl / hand."""
    run_aectl(), run_hand()  # warm-up (and compilation)
    a_speed, h_speed = [], []
    for round_ in range(rounds):  # A B, then B A: neither always runs first
        for run in ((run_aectl, run_hand) if round_ % 2 == 0 else (run_hand, run_aectl)):
            (a_speed if run is run_aectl else h_speed).append(work / timed(run, device))
    ratios = sorted(a / h for a, h in zip(a_speed, h_speed))
    return dict(aectl=statistics.median(a_speed), hand=statistics.median(h_speed), ratio=statistics.median(ratios),
                lo=ratios[0], hi=ratios[-1])


def machine_line(device: torch.device) -> str:
    return (f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, python {sys.version.split()[0]}, device {device}"
            + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
