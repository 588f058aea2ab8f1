"""What makes an epoch of the likelihood presets' network (VAE 784-400-40, Bernoulli likelihood,
batch 100, the network of experiment=mnist_vae and its _long, vamp variants) cheaper on a CPU:
aectl's training step as it runs by default (eager) against the same step with trainer.compile=true,
in one process, alternating which goes first, so machine noise hits both; the ratio is what counts.

Both start from the same weights and the same seed; the losses of their first `--check-steps` steps
are compared, so a faster setting that changes the numbers beyond float rounding shows.

    python benchmarks/cpu_long_run.py [--threads 1] [--rounds 5] [--n 10000]
"""

import argparse
import os
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


def step_losses(compile_: bool, data: DataSplits, steps: int) -> torch.Tensor:
    """The loss of each of the first `steps` optimizer steps from seed 0."""
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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--n", type=int, default=10_000, help="examples per timed epoch")
    parser.add_argument("--check-steps", type=int, default=50, help="steps whose losses are compared")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line(torch.device("cpu")) + f", {args.threads} thread(s)")
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand((args.n, 1, 28, 28), generator=generator) < 0.13).to(torch.uint8)  # MNIST's share of ink
    data = DataSplits(images, images[:1], images[:1], scale=1.0)
    with tempfile.TemporaryDirectory() as log_dir:
        (eager, close_eager), (compiled, close_compiled) = runner(False, data, log_dir), runner(True, data, log_dir)
        eager(), compiled()  # warm-up, and compilation
        speeds = {"eager": [], "compile": []}
        for round_ in range(args.rounds):
            for name, run in (("eager", eager), ("compile", compiled))[::1 if round_ % 2 == 0 else -1]:
                speeds[name].append(args.n / timed(run, torch.device("cpu")))
        close_eager(), close_compiled()
    ratios = sorted(c / e for c, e in zip(speeds["compile"], speeds["eager"]))
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    print(f"examples/s (median of {args.rounds}): eager {median(speeds['eager']):.0f}, "
          f"compile {median(speeds['compile']):.0f}; ratio compile/eager {median(ratios):.3f} "
          f"(range {ratios[0]:.3f}–{ratios[-1]:.3f})")
    a, b = step_losses(False, data, args.check_steps), step_losses(True, data, args.check_steps)
    print(f"losses of the first {args.check_steps} steps: largest relative difference compile vs eager "
          f"{((a - b).abs() / a.abs()).max().item():.2e}")


if __name__ == "__main__":
    main()
