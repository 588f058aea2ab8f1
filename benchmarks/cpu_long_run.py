"""What makes an epoch of the likelihood presets' network (VAE 784-400-40, Bernoulli likelihood,
batch 100, the network of experiment=mnist_vae and its _long, vamp variants) cheaper on a CPU:
aectl's training epoch as it runs by default (eager, one thread) against the same epoch with
trainer.compile=true, and with two threads, in one process, alternating the order, so machine
noise hits all; the ratios are what count.

Each starts from the same weights and seed; the losses of the first `--check-steps` steps are
compared with the default's, so a faster setting that changes the numbers beyond float rounding
shows (compile does: its kernels draw the reparameterisation's noise with their own generator).

    python benchmarks/cpu_long_run.py [--rounds 5] [--n 10000]
"""

import argparse
import os
import statistics
import tempfile

import torch
from tqdm.auto import tqdm

from aectl.config import TrainerConfig
from aectl.datasets import DataSplits
from aectl.datasets.noise import Corruption
from aectl.models import build_model
from aectl.objectives import schedules
from aectl.objectives.objective import Objective
from aectl.runs.tracking import TensorBoardTracker
from aectl.training.trainer import Progress, make_loop, train_epoch
from aectl.training.training_log import IntervalLog
from ab_timing import machine_line, timed  # benchmarks/ab_timing.py: run as python benchmarks/<name>.py

NETWORK = dict(input_shape=[1, 28, 28], latent_dim=40, hidden_dims=[400], likelihood="bernoulli")


def runner(compile_: bool, data: DataSplits, log_dir: str):
    """A callable that trains one epoch of the preset's network; the same initial weights each time."""
    torch.manual_seed(0)
    model = build_model("vae", **NETWORK)
    settings = TrainerConfig(batch_size=100, lr=1e-3, compile=compile_)
    objective = Objective("bernoulli", variational=True)
    loop = make_loop(model, objective, Corruption("none"), lambda step: schedules.beta_at(step, beta=1.0), settings)
    progress, tracker = Progress(), TensorBoardTracker(log_dir)
    interval = IntervalLog(tracker, settings.log_every, settings.batch_size, torch.device("cpu"), objective)
    bar = tqdm(total=10**9, file=open(os.devnull, "w"), mininterval=0.5)
    epochs = iter(range(10**9))

    def run():
        train_epoch(loop, data, next(epochs), progress, interval, bar)
        progress.batch = 0

    return run, tracker.close


def step_losses(compile_: bool, data: DataSplits, steps: int, threads: int) -> torch.Tensor:
    """The loss of each of the first `steps` optimizer steps from seed 0."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("vae", **NETWORK)
    settings = TrainerConfig(batch_size=100, lr=1e-3, compile=compile_)
    loop = make_loop(model, Objective("bernoulli", variational=True), Corruption("none"),
                     lambda step: schedules.beta_at(step, beta=1.0), settings)
    torch.manual_seed(1)
    losses = []
    for x in list(data.batches(data.train, 100, shuffle=True))[:steps]:
        x = data.as_float(x)
        _, loss, _ = loop.objective.step(loop.step_model, x, x, 1.0)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--n", type=int, default=10_000, help="examples per timed epoch")
    parser.add_argument("--check-steps", type=int, default=50, help="steps whose losses are compared")
    args = parser.parse_args()
    print(machine_line(torch.device("cpu")))
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand((args.n, 1, 28, 28), generator=generator) < 0.13).to(torch.uint8)  # MNIST's share of ink
    data = DataSplits(images, images[:1], images[:1], scale=1.0)
    settings = {"eager, 1 thread": (False, 1), "compile, 1 thread": (True, 1), "eager, 2 threads": (False, 2)}
    with tempfile.TemporaryDirectory() as log_dir:
        runs = {name: runner(compile_, data, log_dir) for name, (compile_, _) in settings.items()}
        speeds = {name: [] for name in settings}
        for round_ in range(args.rounds + 1):  # round 0: warm-up and compilation, not counted
            for name in list(settings)[::1 if round_ % 2 == 0 else -1]:
                torch.set_num_threads(settings[name][1])
                seconds = timed(runs[name][0], torch.device("cpu"))
                if round_:
                    speeds[name].append(args.n / seconds)
        for run, close in runs.values():
            close()
    base = speeds["eager, 1 thread"]
    reference = step_losses(False, data, args.check_steps, 1)
    print(f"| setting | examples/s (median of {args.rounds}) | ratio to eager, 1 thread (median, range) | "
          f"largest relative loss difference, first {args.check_steps} steps |\n|---|---:|---|---:|")
    for name, (compile_, threads) in settings.items():
        ratios = sorted(s / b for s, b in zip(speeds[name], base))
        losses = step_losses(compile_, data, args.check_steps, threads)
        difference = ((losses - reference).abs() / reference.abs()).max().item()
        print(f"| {name} | {statistics.median(speeds[name]):.0f} | {statistics.median(ratios):.3f} "
              f"({ratios[0]:.3f}–{ratios[-1]:.3f}) | {difference:.1e} |")


if __name__ == "__main__":
    main()
