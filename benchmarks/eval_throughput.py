"""Throughput of the importance-weighted log-likelihood estimate on the CPU, as `aectl eval` runs it.

    python benchmarks/eval_throughput.py [--threads 1 2] [--ks 100 1000] [--chunks 16384]

Two MLP VAEs with Bernoulli likelihood (the cost of the estimate does not depend on the weights,
so they are untrained): 784-512-256-20 on random 28×28 inputs, and the shipped digits preset
(model=vae: 64-256-128-8) on scikit-learn's digits. For each thread count, k and decoder chunk,
the estimate runs over `--examples` inputs in batches of `--batch-size` (eval's default) and the
script prints examples/s and decoder rows (examples × k) per second, with the machine it ran on.
"""

import argparse
import os
import platform
import time

import torch

from aectl import metrics
from aectl.evaluation import IW_CHUNK
from aectl.models import build_model

MODELS = {  # name → (build kwargs, input shape)
    "mlp 784-512-256-20, random 28×28": dict(input_shape=[1, 28, 28], latent_dim=20, hidden_dims=[512, 256]),
    "digits preset 64-256-128-8": dict(input_shape=[1, 8, 8], latent_dim=8, hidden_dims=[256, 128]),
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--ks", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--chunks", type=int, nargs="+", default=[IW_CHUNK], help="decoder rows per pass")
    ap.add_argument("--batch-size", type=int, default=256, help="examples per batch (eval's batch_size)")
    ap.add_argument("--seconds", type=float, default=3.0, help="rough time budget per measurement")
    return ap.parse_args(argv)


def inputs(shape: list[int], n: int) -> torch.Tensor:
    if shape == [1, 8, 8]:
        from sklearn.datasets import load_digits

        x = torch.tensor(load_digits().data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
        return x[:n] if n <= len(x) else x.repeat(n // len(x) + 1, 1, 1, 1)[:n]
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))


def examples_per_s(model, x: torch.Tensor, k: int, chunk: int, batch_size: int) -> float:
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        metrics.iw_log_likelihood(model, x[i:i + batch_size], k, chunk=chunk, generator=generator)
    return len(x) / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.release()}; torch {torch.__version__}")
    print(f"batch {args.batch_size} examples; IW estimate as in aectl eval (default chunk {IW_CHUNK} rows)")
    print(f"{'model':<36} {'threads':>7} {'k':>5} {'chunk':>6} {'examples/s':>11} {'rows/s':>10}")
    for name, kwargs in MODELS.items():
        torch.manual_seed(0)
        model = build_model("vae", likelihood="bernoulli", **kwargs).eval()
        for threads in args.threads:
            torch.set_num_threads(threads)
            for k in args.ks:
                for chunk in args.chunks:
                    # A short probe sizes the run to about --seconds (at least one batch).
                    probe = inputs(kwargs["input_shape"], 16)
                    examples_per_s(model, probe, k, chunk, args.batch_size)  # warm-up
                    rate = examples_per_s(model, probe, k, chunk, args.batch_size)
                    n = max(16, int(rate * args.seconds))
                    rate = examples_per_s(model, inputs(kwargs["input_shape"], n), k, chunk, args.batch_size)
                    print(f"{name:<36} {threads:>7} {k:>5} {chunk:>6} {rate:>11.1f} {rate * k:>10.3g}", flush=True)


if __name__ == "__main__":
    main()
