"""TopK SAE training throughput: aectl's epoch loop against a hand-written PyTorch loop of the same recipe.

Both train a TopK sparse autoencoder (Gao et al. 2024) on the same in-memory activations, with
the same shapes, the same initial weights and Adam: pre = (x − b_dec) W_enc + b_enc, the k
largest through a ReLU, x̂ = z W_dec + b_dec; loss ‖x − x̂‖² + α·‖e − ê‖² (AuxK on the latents
dead for dead_steps steps); the decoder rows' gradient component along them removed before the
step and the rows renormed after it. aectl runs its real trainer path (`train_epoch`: the
batches of a DataSplits, the objective, the model's upkeep hooks, interval logging to
TensorBoard, a progress bar). The two alternate A B B A in one process, so machine noise hits
both; the ratio (aectl / hand) is what counts.

    python benchmarks/sae_throughput.py                  # CPU, 1 and 2 threads
    python benchmarks/sae_throughput.py --device cuda
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
from aectl.objectives import sae as sae_terms
from aectl.objectives.objective import Objective
from aectl.runs.tracking import TensorBoardTracker
from aectl.training.trainer import Progress, make_loop, train_epoch
from aectl.training.training_log import IntervalLog
from ab_timing import alternate, machine_line  # benchmarks/ab_timing.py: run as python benchmarks/<name>.py

AUX_COEFFICIENT = 1 / 32  # α of Gao et al. 2024, §A.2, aectl's default


class HandTopK:
    """The recipe written out by hand, on plain tensors."""

    def __init__(self, init: dict, k: int, k_aux: int, dead_steps: int, lr: float):
        self.params = {name: init[name].detach().clone().requires_grad_() for name in ("W_enc", "b_enc", "W_dec",
                                                                                      "b_dec")}
        self.k, self.k_aux, self.dead_steps = k, k_aux, dead_steps
        self.steps_since_active = torch.zeros(len(init["b_enc"]), dtype=torch.long, device=init["b_enc"].device)
        self.optimizer = torch.optim.Adam(self.params.values(), lr=lr)

    def step(self, x: torch.Tensor) -> None:
        p = self.params
        pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
        values, indices = pre.topk(self.k, dim=1)
        z = torch.zeros_like(pre).scatter(1, indices, values.relu())
        x_hat = z @ p["W_dec"] + p["b_dec"]
        with torch.no_grad():
            self.steps_since_active = torch.where((z > 0).any(0), 0, self.steps_since_active + 1)
            dead = self.steps_since_active >= self.dead_steps
        aux_values, aux_indices = pre.masked_fill(~dead, float("-inf")).topk(self.k_aux, dim=1)
        e_hat = torch.zeros_like(pre).scatter(1, aux_indices, aux_values.relu()) @ p["W_dec"]
        residual = (x - x_hat).detach()
        loss = (x - x_hat).square().sum(1).mean() + \
            AUX_COEFFICIENT * dead.any() * (residual - e_hat).square().sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            w, g = p["W_dec"], p["W_dec"].grad
            g.sub_((g * w).sum(1, keepdim=True) * w)
            self.optimizer.step()
            w.div_(w.norm(dim=1, keepdim=True))

    def epoch(self, x_all: torch.Tensor, batch_size: int) -> None:
        perm = torch.randperm(len(x_all), device=x_all.device)
        for i in range(0, len(x_all), batch_size):
            self.step(x_all[perm[i:i + batch_size]])


def make_runners(n: int, d_in: int, latents: int, k: int, batch_size: int, dead_steps: int, device: torch.device,
                 log_dir: str):
    """Two callables that each train one epoch: aectl's loop and the hand-written one."""
    x = torch.randn(n, d_in, device=device)
    data = DataSplits(x, x[:1], x[:1], scale=1.0)
    model = build_model("sae", input_shape=[d_in], num_latents=latents, activation="topk", k=k,
                        dead_steps=dead_steps).to(device)
    settings = TrainerConfig(batch_size=batch_size, lr=1e-3)
    objective = Objective("gaussian", variational=False, sae=True, **sae_terms.coefficients({"activation": "topk"}))
    assert objective.aux_coefficient == AUX_COEFFICIENT
    loop = make_loop(model, objective, Corruption("none"), lambda step: 1.0, settings)
    assert isinstance(loop.optimizer, torch.optim.Adam)
    progress = Progress()
    tracker = TensorBoardTracker(log_dir)
    interval = IntervalLog(tracker, settings.log_every, settings.batch_size, device, objective)
    bar = tqdm(total=10**9, file=open(os.devnull, "w"), mininterval=0.5)  # updated every step, as in a run
    epoch = iter(range(10**9))
    hand = HandTopK(model.state_dict(), k, model.k_aux, dead_steps, settings.lr)

    def run_aectl():
        train_epoch(loop, data, next(epoch), progress, interval, bar)
        progress.batch = 0  # as fit does at the end of an epoch

    return run_aectl, lambda: hand.epoch(x, batch_size), tracker.close


def compare(name: str, steps: int, rounds: int, device: torch.device, **shape) -> dict:
    with tempfile.TemporaryDirectory() as log_dir:
        run_aectl, run_hand, close = make_runners(steps * shape["batch_size"], device=device, log_dir=log_dir, **shape)
        row = dict(name=name, **alternate(run_aectl, run_hand, steps, rounds, device))
        close()
    print(f"| {name:<46} | {row['aectl']:>8.1f} | {row['hand']:>8.1f} | {row['ratio']:.3f} "
          f"| {row['lo']:.3f}–{row['hi']:.3f} |", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7, help="alternating A/B rounds per row")
    parser.add_argument("--threads", default="1,2", help="CPU thread counts to try")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per timed epoch")
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--latents", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dead-steps", type=int, default=20, help="small, so AuxK's dead latents take part")
    args = parser.parse_args()
    device = torch.device(args.device)
    shape = dict(d_in=args.d_in, latents=args.latents, k=args.k, batch_size=args.batch_size,
                 dead_steps=args.dead_steps)
    print(machine_line(device))
    print("steps/s are medians over the rounds; ratio = aectl / hand-written (median, range)\n")
    print(f"| {'setting':<46} | {'aectl':>8} | {'hand':>8} | ratio | range |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 10}|-------|-------|")
    name = f"TopK SAE {args.d_in}→{args.latents}, k={args.k}, batch {args.batch_size}"
    if device.type == "cpu":
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            compare(f"{name}, {threads} thr", args.steps, args.rounds, device, **shape)
    else:
        compare(name, args.steps * 10, args.rounds, device, **shape)


if __name__ == "__main__":
    main()
