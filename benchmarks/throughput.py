"""Training throughput: aectl's epoch loop against a minimal hand-written PyTorch loop.

Both train the same network (VAE, Bernoulli likelihood, Adam 1e-3, batch 128) on the same
in-memory data. aectl runs as `aectl train` does: uint8 data sliced by a device permutation,
its objective, interval logging to TensorBoard at the default interval and a progress bar.
The hand loop is what a person would write: a float tensor, a Sequential, BCE + KL, step.
They alternate A B B A in one process, so machine noise hits both; the ratio is what counts.

    python benchmarks/throughput.py                    # CPU, 1 and 2 threads, MLP and conv
    python benchmarks/throughput.py --device cuda      # the same on a GPU, plus compile / bf16
"""

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
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
from ab_timing import alternate, machine_line  # benchmarks/ab_timing.py: run as python benchmarks/<name>.py

LATENT = 20


class HandVAE(nn.Module):
    """The network of the benchmark, written out by hand."""

    def __init__(self, conv: bool):
        super().__init__()
        if conv:
            self.enc = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 2 * LATENT))
            self.dec = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 64 * 7 * 7), nn.ReLU(),
                                     nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(32, 1, 3, 2, 1, 1))
        else:
            self.enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                     nn.Linear(256, 2 * LATENT))
            self.dec = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                     nn.Linear(512, 784))

    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(z), mu, logvar


def hand_epoch(model, optimizer, x_all, batch_size):
    perm = torch.randperm(len(x_all), device=x_all.device)
    for i in range(0, len(x_all), batch_size):
        x = x_all[perm[i:i + batch_size]]
        logits, mu, logvar = model(x)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum() / len(x)
        optimizer.zero_grad(set_to_none=True)
        (recon + kl).backward()
        optimizer.step()


def make_runners(conv: bool, n: int, device: torch.device, compile_: bool, bf16: bool, log_dir: str):
    """Two callables that each train one epoch: aectl's loop and the hand-written one."""
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    data = DataSplits(images, images[:1], images[:1], scale=1 / 255).to(device)
    kwargs = dict(input_shape=[1, 28, 28], latent_dim=LATENT, arch="conv" if conv else "mlp",
                  hidden_dims=[256] if conv else [512, 256], conv_channels=[32, 64], likelihood="bernoulli")
    model = build_model("vae", **kwargs).to(device)
    settings = TrainerConfig(batch_size=128, lr=1e-3, compile=compile_, precision="bf16" if bf16 else "fp32")
    beta_at = lambda step: schedules.beta_at(step, beta=1.0)  # noqa: E731
    objective = Objective("bernoulli", variational=True)
    loop = make_loop(model, objective, Corruption("none"), beta_at, settings)
    progress = Progress()
    tracker = TensorBoardTracker(log_dir)
    interval = IntervalLog(tracker, settings.log_every, settings.batch_size, device, objective)
    bar = tqdm(total=10**9, file=open(os.devnull, "w"), mininterval=0.5)  # updated every step, as in a run
    epoch = iter(range(10**9))

    hand = HandVAE(conv).to(device)
    hand_opt = torch.optim.Adam(hand.parameters(), lr=1e-3)
    x_float = (images.float() / 255).to(device)
    x_float = x_float if conv else x_float.flatten(1)

    def run_aectl():
        train_epoch(loop, data, next(epoch), progress, interval, bar)
        progress.batch = 0  # as fit does at the end of an epoch

    def run_hand():
        hand_epoch(hand, hand_opt, x_float, 128)

    return run_aectl, run_hand, tracker.close


def compare(name: str, conv: bool, n: int, rounds: int, device: torch.device, compile_=False, bf16=False) -> dict:
    with tempfile.TemporaryDirectory() as log_dir:
        run_aectl, run_hand, close = make_runners(conv, n, device, compile_, bf16, log_dir)
        row = dict(name=name, **alternate(run_aectl, run_hand, n, rounds, device))
        close()
    print(f"| {name:<34} | {row['aectl']:>10.0f} | {row['hand']:>10.0f} | {row['ratio']:.3f} "
          f"| {row['lo']:.3f}–{row['hi']:.3f} |", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7, help="alternating A/B rounds per row")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts to try")
    parser.add_argument("--n-mlp", type=int, default=6400, help="examples per timed MLP epoch")
    parser.add_argument("--n-conv", type=int, default=2560, help="examples per timed conv epoch")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(machine_line(device))
    print("samples/s are medians over the rounds; ratio = aectl / hand-written (median, range)\n")
    print(f"| {'setting':<34} | {'aectl':>10} | {'hand':>10} | ratio | range |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|-------|-------|")
    if device.type == "cpu":
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            compare(f"MLP VAE 784-512-256-20, {threads} thr", False, args.n_mlp, args.rounds, device)
            compare(f"conv VAE 28×28, {threads} thr", True, args.n_conv, args.rounds, device)
    else:
        n = 60_000
        for compile_, bf16 in ((False, False), (True, False), (False, True), (True, True)):
            tag = "+".join(t for t, on in (("compile", compile_), ("bf16", bf16)) if on) or "fp32"
            row = compare(f"MLP VAE 784-512-256-20, {tag}", False, n, args.rounds, device, compile_, bf16)
            print(f"|   seconds per 60k-example epoch: aectl {n / row['aectl']:.2f}, hand {n / row['hand']:.2f}")
        compare("conv VAE 28×28, fp32", True, n // 4, args.rounds, device)


if __name__ == "__main__":
    main()
