"""Does a TopK sparse autoencoder find the true directions of data in superposition, and at what CPU cost?

    python benchmarks/sae_recovery.py [--directions 512] [--dim 128] [--active-prob 0.01] [--latents 1024]
                                      [--k 8] [--samples 100000] [--epochs 10] [--batch-size 1024]
                                      [--threads 1] [--lr 0.001]

Trains `model=sae` (topk, the standard recipe: unit-norm decoder, encoder = decoderᵀ, b_dec at the
mean, AuxK) on `dataset=sparse_synthetic` through `aectl train`, then `aectl eval` on the test
split, in one process. Printed: the share of the true directions some decoder row matches at
cosine ≥ 0.9 (`recovered`), the mean max cosine (MMCS), FVU and L0 on test, dead latents, and the
CPU time (user + system: the machine may be shared) and wall time of training.
"""

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from aectl.cli import main


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--directions", type=int, default=512)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--active-prob", type=float, default=0.01)
    ap.add_argument("--latents", type=int, default=1024)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args(argv)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main_(argv=None) -> int:
    a = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        overrides = ["model=sae", f"model.num_latents={a.latents}", "model.expansion_factor=0", f"model.k={a.k}",
                     "dataset=sparse_synthetic", f"dataset.num_samples={a.samples}",
                     f"dataset.n_directions={a.directions}", f"dataset.dim={a.dim}",
                     f"dataset.active_prob={a.active_prob}", f"trainer.epochs={a.epochs}",
                     f"trainer.batch_size={a.batch_size}", f"trainer.lr={a.lr}", f"trainer.threads={a.threads}",
                     "trainer.device=cpu", "trainer.progress=false", "trainer.save_every=1000"]
        cpu, wall = cpu_seconds(), time.perf_counter()
        if main(["train", *overrides, f"hydra.run.dir={run}"]) != 0:
            return 1
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        if main(["eval", f"ckpt={run}", "progress=false", f"threads={a.threads}"]) != 0:
            return 1
        metrics = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())["metrics"]
    print(f"\n{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
          f"{a.threads} thread(s)")
    print(f"sparse_synthetic: {a.directions} directions in {a.dim} dims, p={a.active_prob}, {a.samples} examples; "
          f"topk SAE {a.latents} latents, k={a.k}, {a.epochs} epochs of batch {a.batch_size}, lr {a.lr}")
    print(f"recovered (cosine ≥ 0.9): {metrics['recovered']:.1%}   MMCS {metrics['mmcs']:.4f}   "
          f"test FVU {metrics['fvu']:.4f}   L0 {metrics['l0']:.2f}   dead latents {metrics['dead_latents']}")
    print(f"training: {cpu:.1f} s CPU (user + system), {wall:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
