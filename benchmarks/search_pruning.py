"""What the median pruner saves: the same seeded digits search with and without it, side by side.

    python benchmarks/search_pruning.py [--trials 12] [--epochs 30] [--seed 0]

Runs `aectl train -m hparams_search=digits_vae` twice in fresh sweep folders, with
`hydra.sweeper.pruner.name=none` and `=median`, same sampler seed, one thread each, one after
the other. Printed per pruner: trials, how many were pruned, the epochs trained over all trials,
the wall time of the whole command (the machine may be shared: compare the two runs of one call),
and the best trial's objective (val/neg_elbo, of its own weights). A pruner may stop the trial
that would have become the best: the best values say whether it did.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def search(pruner: str, a: argparse.Namespace, folder: Path) -> dict:
    sweep = folder / pruner
    command = [sys.executable, "-m", "aectl", "train", "-m", "hparams_search=digits_vae",
               f"hydra.sweeper.n_trials={a.trials}", f"hydra.sweeper.sampler.seed={a.seed}",
               f"hydra.sweeper.pruner.name={pruner}", f"trainer.epochs={a.epochs}", "trainer.progress=false",
               f"hydra.sweep.dir={sweep}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    complete = [r for r in runs if "pruned" not in r]
    return {"trials": len(runs), "pruned": len(runs) - len(complete), "epochs": sum(r["epochs"] for r in runs),
            "wall_s": wall, "best": min(r["val"]["neg_elbo"] for r in complete)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(f"digits_vae search, {a.trials} trials, {a.epochs} epochs, seed {a.seed}; "
          f"{platform.machine()} CPU, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        results = {pruner: search(pruner, a, Path(tmp)) for pruner in ("none", "median")}
    print(f"{'pruner':<8} {'trials':>6} {'pruned':>6} {'epochs':>6} {'wall s':>7} {'best val/neg_elbo':>18}")
    for pruner, r in results.items():
        print(f"{pruner:<8} {r['trials']:>6} {r['pruned']:>6} {r['epochs']:>6} {r['wall_s']:>7.1f} {r['best']:>18.2f}")
    print(f"median / none: wall time {results['median']['wall_s'] / results['none']['wall_s']:.2f}×, "
          f"epochs {results['median']['epochs'] / results['none']['epochs']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
