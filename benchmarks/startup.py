"""Start-up cost: wall time of `aectl --help`, `aectl train --help` and a one-epoch
`aectl train` on digits, each next to `python -c "import torch"` as the yardstick.

    python benchmarks/startup.py [--repeats 5]

Commands alternate in every round, so machine noise hits them alike; medians are printed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "aectl --help": [sys.executable, "-m", "aectl", "--help"],
    "aectl train --help": [sys.executable, "-m", "aectl", "train", "--help"],
    "aectl train (1 epoch, digits)": [sys.executable, "-m", "aectl", "train", "trainer.epochs=1",
                                      "trainer.progress=false", "hydra/job_logging=disabled"],
}


def wall_time(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as cwd:
        for name, cmd in COMMANDS.items():  # warm the file cache once
            wall_time(cmd, cwd)
        for _ in range(args.repeats):
            for name, cmd in COMMANDS.items():
                times[name].append(wall_time(cmd, cwd))
    yardstick = statistics.median(times['python -c "import torch"'])
    print(f"{os.cpu_count()} CPUs, median of {args.repeats} runs\n")
    print(f"| {'command':<32} | seconds | × import torch |")
    print(f"|{'-' * 34}|---------|----------------|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name:<32} | {median:7.3f} | {median / yardstick:14.2f} |")


if __name__ == "__main__":
    main()
