"""Speed of `aectl eval`'s costly parts on the CPU, each side by side with a plain version in one process.

    python benchmarks/eval_throughput.py [--parts iw probe] [--threads 1] [--ks 100 1000] [--chunks 4096]
                                         [--mnist-root DIR] [--examples N] [--rounds 3]

iw: the importance-weighted log-likelihood estimate (`metrics.iw_log_likelihood`) against a plain
batched estimator written out below (the same noise draws, so the same numbers), on two MLP VAEs
with Bernoulli likelihood (untrained: the cost does not depend on the weights): 784-512-256-20 on
28×28 inputs (MNIST's test images with --mnist-root, else random ones) and the shipped digits
preset (64-256-128-8) on scikit-learn's digits. The two run alternately, --rounds times, in
batches of --batch-size (eval's default); printed: examples/s of each from CPU time (user + system:
the machine may be shared), their ratio (median and range over the rounds, > 1 = aectl faster),
the minor page faults per example of each (they depend on what ran before in the process, as
the allocator keeps memory it has grown to: compare within a row), and the largest difference of
the estimates.

probe: the linear probe's fit (`metrics.linear_probe`: BLAS on one thread) against the same
scikit-learn pipeline on BLAS's default threads, on 10 000 × 784 features (a VQ-VAE's code size).
"""

import argparse
import math
import os
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from aectl.evaluation.evaluate import IW_CHUNK
from aectl.models import build_model
from aectl.objectives import metrics

MODELS = {  # name → (build kwargs, input shape)
    "mlp 784-512-256-20, 28×28": dict(input_shape=[1, 28, 28], latent_dim=20, hidden_dims=[512, 256]),
    "digits preset 64-256-128-8": dict(input_shape=[1, 8, 8], latent_dim=8, hidden_dims=[256, 128]),
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=["iw", "probe"], default=["iw", "probe"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads (eval's default: 1)")
    ap.add_argument("--ks", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--chunks", type=int, nargs="+", default=[IW_CHUNK], help="decoder rows per pass")
    ap.add_argument("--batch-size", type=int, default=256, help="examples per batch (eval's batch_size)")
    ap.add_argument("--seconds", type=float, default=3.0, help="rough CPU time per estimator and round")
    ap.add_argument("--examples", type=int, default=0, help="examples per round (0: sized by --seconds)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two versions")
    ap.add_argument("--mnist-root", help="a folder holding MNIST/raw/t10k-*: real test images for the 28×28 model")
    return ap.parse_args(argv)


@torch.no_grad()
def plain_iw(model, x: torch.Tensor, k: int, *, chunk: int, generator: torch.Generator) -> torch.Tensor:
    """log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x) as one would write it: ⌊chunk/N⌋ samples of all
    N examples per decoder pass (drawn as aectl draws them), BCE against x expanded, logsumexp."""
    mu, logvar = model.encode(x)
    n, x_flat = len(x), x.flatten(1)
    per_pass = max(1, chunk // n)
    total = torch.full((n,), -math.inf)
    for start in range(0, k, per_pass):
        s = min(per_pass, k - start)
        eps = torch.randn((s, *mu.shape), generator=generator)
        z = mu + (0.5 * logvar).exp() * eps
        logits = model.decode(z.view(s * n, -1)).view(s, n, -1)
        log_px = -F.binary_cross_entropy_with_logits(logits, x_flat.expand(s, n, -1), reduction="none").sum(-1)
        log_w = log_px - 0.5 * (z.square() - eps.square() - logvar).sum(-1)
        total = torch.logaddexp(total, log_w.logsumexp(0))
    return total - math.log(k)


def inputs(shape: list[int], n: int, mnist_root: str | None) -> torch.Tensor:
    if shape == [1, 8, 8]:
        from sklearn.datasets import load_digits

        x = torch.tensor(load_digits().data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    elif mnist_root:
        from aectl.datasets import load_dataset

        data = load_dataset(name="mnist", root=mnist_root, download=False)
        x = data.as_float(data.test)
    else:
        return torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))
    return x[:n] if n <= len(x) else x.repeat(n // len(x) + 1, 1, 1, 1)[:n]


def cost(fn) -> tuple[float, int, object]:
    """(CPU seconds, minor page faults, result) of fn()."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    result = fn()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time() - start, after.ru_minflt - before.ru_minflt, result


def estimate(estimator, model, x: torch.Tensor, k: int, chunk: int, batch_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.cat([estimator(model, x[i:i + batch_size], k, chunk=chunk, generator=generator)
                      for i in range(0, len(x), batch_size)])


def side_by_side(model, x, k: int, chunk: int, args) -> str:
    versions = {"plain": plain_iw, "aectl": metrics.iw_log_likelihood}
    runs = {name: [] for name in versions}
    for _ in range(args.rounds):
        for name, fn in versions.items():
            runs[name].append(cost(lambda: estimate(fn, model, x, k, chunk, args.batch_size)))
    ratios = [p[0] / a[0] for p, a in zip(runs["plain"], runs["aectl"])]
    rate = {name: len(x) / statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    faults = {name: statistics.median(r[1] for r in rs) / len(x) for name, rs in runs.items()}
    diff = (runs["plain"][0][2] - runs["aectl"][0][2]).abs().max().item()
    return (f"{len(x):>6} {rate['plain']:>9.1f} {rate['aectl']:>9.1f} {statistics.median(ratios):>6.2f} "
            f"{min(ratios):>5.2f}–{max(ratios):<5.2f} {faults['plain']:>8.0f} {faults['aectl']:>8.0f} {diff:>8.1e}")


def iw_part(args) -> None:
    print(f"IW estimate, batches of {args.batch_size} examples; examples/s from CPU time; "
          f"ratio = plain CPU time / aectl's; faults = minor page faults per example")
    print(f"{'model':<28} {'threads':>7} {'k':>5} {'chunk':>6} {'n':>6} {'plain/s':>9} {'aectl/s':>9} "
          f"{'ratio':>6} {'range':>11} {'flt/ex p':>8} {'flt/ex a':>8} {'max diff':>8}")
    for name, kwargs in MODELS.items():
        torch.manual_seed(0)
        model = build_model("vae", likelihood="bernoulli", **kwargs).eval()
        for threads in args.threads:
            torch.set_num_threads(threads)
            for k in args.ks:
                for chunk in args.chunks:
                    # A short probe sizes the run to about --seconds, unless --examples is given.
                    probe = inputs(kwargs["input_shape"], 16, args.mnist_root)
                    estimate(metrics.iw_log_likelihood, model, probe, k, chunk, args.batch_size)  # warm-up
                    seconds = cost(lambda: estimate(metrics.iw_log_likelihood, model, probe, k, chunk,
                                                    args.batch_size))[0]
                    n = args.examples or max(16, int(16 / seconds * args.seconds))
                    x = inputs(kwargs["input_shape"], n, args.mnist_root)
                    print(f"{name:<28} {threads:>7} {k:>5} {chunk:>6} {side_by_side(model, x, k, chunk, args)}",
                          flush=True)


def probe_part(args) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(0)
    z = torch.randn(12_000, 784, generator=g)
    y = (z[:, :40] @ torch.randn(40, 10, generator=g) + torch.randn(12_000, 10, generator=g)).argmax(1)
    z_train, y_train, z_eval, y_eval = z[:10_000].numpy(), y[:10_000].numpy(), z[10_000:].numpy(), y[10_000:].numpy()

    def default_threads():
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        return float(probe.fit(z_train, y_train).score(z_eval, y_eval))

    runs = {"default": [], "aectl": []}
    for _ in range(args.rounds):
        runs["default"].append(cost(default_threads))
        runs["aectl"].append(cost(lambda: metrics.linear_probe(z_train, y_train, z_eval, y_eval)))
    ratios = [d[0] / a[0] for d, a in zip(runs["default"], runs["aectl"])]
    print(f"linear probe, 10000 × 784 features: CPU s (median) default BLAS threads "
          f"{statistics.median(r[0] for r in runs['default']):.2f}, aectl (one thread) "
          f"{statistics.median(r[0] for r in runs['aectl']):.2f}; ratio {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}–{max(ratios):.2f}); accuracy {runs['default'][0][2]:.4f} vs {runs['aectl'][0][2]:.4f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.release()}; torch {torch.__version__}")
    if "iw" in args.parts:
        iw_part(args)
    if "probe" in args.parts:
        probe_part(args)


if __name__ == "__main__":
    main()
