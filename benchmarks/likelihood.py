"""Test log-likelihood on dynamically binarized MNIST: the VampPrior and the two-stochastic-layer
model against the one-layer VAE of the same epochs, next to the published figures.

    python benchmarks/likelihood.py --root <folder holding MNIST/raw/*.gz> [--out runs/] [--threads 1]

Parts (each can be left out with --skip):

- same_epochs: experiment=mnist_vae, mnist_vamp and mnist_hvae, `--epochs` each (the presets' 100),
  scored by the test NLL from importance sampling (Burda et al. 2016, eq. 8: k = `--iw-k` samples
  per image, all 10 000 test images, the test split binarized by a fixed-seed draw) on the weights
  each run ends with (best.pt when early stopping ended it, else the last). The VampPrior run keeps a
  checkpoint every `--keep-every` epochs; each is scored the same way, and nll_vs_epochs.png draws
  that curve with the other two models' results and the published figures marked. The mark: each
  new model ≥ 1.5 nats below the VAE.
- timing: the time per epoch of each preset (mnist_vae, mnist_vamp, mnist_hvae, and mnist_vae_long,
  mnist_iwae_long of 3280 epochs each) over `--long-epochs` epochs, one run at a time, and what the
  whole run takes at that pace.

With `--out`, a run whose metrics.json is there already is scored again without training it, so a
benchmark interrupted after its training resumes where it stopped.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from aectl import cli
from aectl import datasets as data_mod
from aectl.objectives.metrics import iw_log_likelihood
from aectl.runs.checkpoint import load_checkpoint, rebuild_model

# Published test NLLs (nats) on dynamically binarized MNIST, by the model they belong to.
PUBLISHED = {
    "vae": [("Burda et al. 2016, 1 layer, k=5000", 86.76), ("Tomczak & Welling 2018, standard prior", 88.56)],
    "vamp": [("Tomczak & Welling 2018, VampPrior, 1 layer", 85.57)],
    "hvae": [("Burda et al. 2016, 2 layers", 85.33), ("Tomczak & Welling 2018, 2 layers + VampPrior", 83.19)],
}
MODELS = (("vae", "mnist_vae", "VAE 784-400-40"), ("vamp", "mnist_vamp", "VAE 784-400-40 + VampPrior (500)"),
          ("hvae", "mnist_hvae", "2 stochastic layers 32-16, KL warm-up"))
MARK_NATS = 1.5
PARTS = ("same_epochs", "timing")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="dataset.root: the folder that holds MNIST/raw/")
    ap.add_argument("--out", default=None, help="folder for the run folders (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--epochs", type=int, default=100, help="epochs of each same_epochs run")
    ap.add_argument("--keep-every", type=int, default=20, help="epochs between the VampPrior run's kept checkpoints")
    ap.add_argument("--iw-k", type=int, default=1000, help="importance samples per test image")
    ap.add_argument("--iw-examples", type=int, default=0, help="test images scored (0 = all 10000)")
    ap.add_argument("--long-epochs", type=int, default=1, help="epochs each preset is timed over")
    ap.add_argument("--limit", type=int, default=0, help="dataset.limit (smoke runs only)")
    ap.add_argument("--warmup-steps", type=int, default=None, help="lr warm-up steps (smoke runs need fewer)")
    ap.add_argument("--skip", nargs="*", default=[], choices=list(PARTS), help="parts to leave out")
    return ap.parse_args(argv)


def train(args, name: str, experiment: str, epochs: int, *overrides: str) -> Path:
    """One `aectl train` run, skipped when its metrics.json exists; its folder. Its metrics.json has
    its own training time (`train_time_s`, validation included, start-up not)."""
    run_dir = Path(args.out) / name
    if (run_dir / "metrics.json").exists():
        print(f"  {name}: trained already, scoring {run_dir}", flush=True)
        return run_dir
    own_warmup = experiment.endswith("_long") or any(o.startswith("lr_schedule.warmup_steps=") for o in overrides)
    warmup = [] if args.warmup_steps is None or own_warmup else [f"lr_schedule.warmup_steps={args.warmup_steps}"]
    rc = cli.main(["train", f"experiment={experiment}", f"dataset.root={args.root}", "dataset.download=false",
                   f"dataset.limit={args.limit}", f"trainer.epochs={epochs}", f"trainer.threads={args.threads}",
                   "trainer.progress=false", f"hydra.run.dir={run_dir}", *warmup, *overrides])
    if rc:
        sys.exit(f"likelihood: training {name} failed (exit code {rc})")
    return run_dir


def test_images(args) -> torch.Tensor:
    """The test split as the runs were scored on it: binarized once by the dataset's fixed-seed draw."""
    data = data_mod.load_dataset("mnist", root=args.root, download=False, binarize="dynamic", limit=args.limit)
    x = data.as_float(data.test)
    return x[:args.iw_examples] if args.iw_examples else x


def test_nll(checkpoint: Path, x: torch.Tensor, k: int) -> tuple[float, float]:
    """(mean test NLL by IW with k samples, minutes it took) of a checkpoint; seeded, 100 images a pass."""
    model = rebuild_model(load_checkpoint(checkpoint))
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    nll = torch.cat([-iw_log_likelihood(model, x[i:i + 100], k, chunk=20_000, generator=generator)
                     for i in range(0, len(x), 100)])
    return float(nll.mean()), (time.perf_counter() - start) / 60


def result_checkpoint(run_dir: Path) -> tuple[Path, str]:
    """The weights a run's metrics.json reports (best.pt when early stopping restored it) and their name."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = metrics.get("weights") == "best"
    epoch = metrics["best_checkpoint"]["epoch"] if best else metrics["epochs"]
    return run_dir / "checkpoints" / ("best.pt" if best else "last.pt"), f"{metrics['weights']} weights, epoch {epoch}"


def same_epochs(args) -> list[str]:
    x = test_images(args)
    found, curve = {}, []
    for key, experiment, label in MODELS:
        keep = [f"trainer.keep_every={args.keep_every}"] if key == "vamp" else []
        run_dir = train(args, experiment, experiment, args.epochs, *keep)
        minutes = json.loads((run_dir / "metrics.json").read_text())["train_time_s"] / 60  # its own training time
        checkpoint, weights = result_checkpoint(run_dir)
        if key == "vamp":  # the curve; its last point is the result when the run ends with its last weights
            curve = [(int(p.stem.split("_")[1]), *test_nll(p, x, args.iw_k))
                     for p in sorted((run_dir / "checkpoints").glob("epoch_*.pt"))]
        same = [(nll, m) for epoch, nll, m in curve if key == "vamp" and weights == f"last weights, epoch {epoch}"]
        nll, iw_minutes = same[0] if same else test_nll(checkpoint, x, args.iw_k)
        found[key] = dict(nll=nll, label=label, minutes=minutes, iw_minutes=iw_minutes, weights=weights)
    draw_curve([(epoch, nll) for epoch, nll, _ in curve], found, Path(args.out) / "nll_vs_epochs.png", args)
    rows, base = [], found["vae"]["nll"]
    for key, info in found.items():
        published = "; ".join(f"{name}: {value}" for name, value in PUBLISHED[key])
        gain = base - info["nll"]
        verdict = "the baseline" if key == "vae" else (f"{gain:.2f} nats below the VAE" + (
            "" if gain >= MARK_NATS else f": DOES NOT reach the {MARK_NATS}-nat mark"))
        rows.append(f"| {info['label']} | test NLL, IW k={args.iw_k} ({len(x)} images), {info['weights']} | "
                    f"{info['nll']:.2f} nats | {published} | {verdict} | {args.epochs} ep, {info['minutes']:.1f} min "
                    f"+ IW {info['iw_minutes']:.1f} min |")
    print("  VampPrior curve (epoch, test NLL, IW minutes): "
          + ", ".join(f"({e}, {v:.2f}, {m:.1f})" for e, v, m in curve), flush=True)
    return rows


def draw_curve(curve: list[tuple[int, float]], found: dict, path: Path, args) -> None:
    """Test NLL against epochs of the VampPrior run, the other models' results at their last epoch,
    and the published figures as dashed lines, each labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    if curve:
        ax.plot(*zip(*curve), "o-", color="C1", label=f"{found['vamp']['label']} (aectl, every {args.keep_every} ep)")
    for key, marker, color in (("vae", "s", "C0"), ("hvae", "^", "C2")):
        ax.plot([args.epochs], [found[key]["nll"]], marker, color=color, markersize=9,
                label=f"{found[key]['label']} (aectl, {args.epochs} ep)")
    for i, (name, value) in enumerate(v for values in PUBLISHED.values() for v in values):
        ax.axhline(value, color=f"C{i + 3}", linestyle="--", linewidth=1, label=f"published: {name}: {value}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test NLL, nats (IW k={args.iw_k})")
    ax.set_title("Dynamically binarized MNIST: test NLL against epochs (lower is better)")
    ax.set_xlim(0, args.epochs * 1.05)
    ax.legend(fontsize=7, loc="lower left")  # the curve falls to the right: its lower left is empty
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  curve: {path}", flush=True)


def timing(args) -> list[str]:
    """Each preset's time per epoch over `--long-epochs` epochs (its run's own training time, with
    validation), one run at a time, and what its full length takes at that pace. The cosine presets'
    lr warm-up is cut to one step, which a short run needs and which costs nothing."""
    rows = []
    for experiment in ("mnist_vae", "mnist_vamp", "mnist_hvae", "mnist_vae_long", "mnist_iwae_long"):
        short = [] if experiment.endswith("_long") else ["lr_schedule.warmup_steps=1"]
        run_dir = train(args, f"{experiment}_{args.long_epochs}ep", experiment, args.long_epochs, *short)
        per_epoch = json.loads((run_dir / "metrics.json").read_text())["train_time_s"] / args.long_epochs
        total = 3280 if experiment.endswith("_long") else args.epochs
        rows.append(f"| experiment={experiment} | time per epoch | {per_epoch:.1f} s | {total} epochs at this pace: "
                    f"{per_epoch * total / 60:.0f} min | - | timed over {args.long_epochs} ep |")
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="aectl-likelihood-")
    torch.set_num_threads(args.threads)
    print(f"likelihood on MNIST from {args.root}; runs in {args.out}; torch {torch.__version__}, "
          f"{args.threads} thread(s), CPU", flush=True)
    start = time.perf_counter()
    rows = []
    for part, fn in (("same_epochs", same_epochs), ("timing", timing)):
        if part not in args.skip:
            rows += fn(args)
    print("\n| model | metric | aectl | published | verdict | budget |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntotal {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
