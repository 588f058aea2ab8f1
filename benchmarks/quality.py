"""Quality on real MNIST with the shipped presets, next to published reference numbers.

    python benchmarks/quality.py --root <folder holding MNIST/raw/*.gz> [--threads 1]

Trains (in-process, through `aectl train`) the stacked AE at K = 2, 10, 32 (experiment=mnist_ae),
the denoising AE with gaussian σ=0.3 and masking 25% noise (experiment=mnist_dae) and the VAE on
dynamically binarized MNIST (experiment=mnist_vae), then prints one table:

- stacked AE: test per-pixel MSE against PCA at the same K (the optimal linear autoencoder),
  fitted here on the same train split and as published for MNIST; it passes below both;
- DAE: test PSNR of the reconstruction from the noisy input against the noisy input's own PSNR
  (same noise draw), both averaged over images; it passes above the noisy input;
- VQ-VAE (experiment=mnist_vqvae): test PSNR against the stacked AE at K = 32 trained for the same
  epochs; it passes at or above the AE's PSNR with at least half of its codebook in use on test;
- VAE: test NLL by importance sampling with k samples (Burda et al. 2016) on the test set
  binarized by a fixed-seed draw, with the test ELBO, epochs and minutes.

Epoch counts default to a budget of about 20-25 minutes on one CPU thread; raise them on a GPU.
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from aectl import cli
from aectl import datasets as data_mod
from aectl.checkpoint import load_checkpoint, rebuild_model

# The pass marks, one per quantity; the presets' comments and the README quote these.
PCA_REFERENCE = {2: 0.0555, 10: 0.0329, 32: 0.0152, 50: 0.0100}  # PCA on MNIST test, per-pixel MSE
NOISY_PSNR_REFERENCE = {"gaussian": 13.3, "masking": 15.8}  # dB of the noisy MNIST test input itself
# Test NLL (nats) of a VAE on dynamically binarized MNIST: 784-400-40 trained to convergence
# (pythae's reproduction, 500 epochs), Burda et al. (2016)'s one-layer VAE (k = 5000), and a
# model of independent pixels.
VAE_REFERENCE = {"mlp_784_400_40": 89.8, "burda_1layer_k5000": 86.76, "independent_bernoulli": 206.0}
VAE_TARGET_NATS = VAE_REFERENCE["mlp_784_400_40"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="dataset.root: the folder that holds MNIST/raw/")
    ap.add_argument("--out", default=None, help="folder for the run folders (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--device", default="cpu", help="trainer.device (cpu, cuda, auto)")
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 10, 32], help="code sizes K of the stacked AE")
    ap.add_argument("--ae-epochs", type=int, default=5)
    ap.add_argument("--dae-epochs", type=int, default=15)
    ap.add_argument("--vae-epochs", type=int, default=50)
    ap.add_argument("--vqvae-epochs", type=int, default=5, help="epochs of the VQ-VAE and of its K=32 AE")
    ap.add_argument("--iw-k", type=int, default=1000, help="importance samples per test image")
    ap.add_argument("--iw-examples", type=int, default=0, help="test images for the NLL (0 = all 10000)")
    ap.add_argument("--limit", type=int, default=0, help="dataset.limit (smoke runs only)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ae", "dae", "vae", "vqvae"], help="parts to leave out")
    return ap.parse_args(argv)


def train(args, name: str, experiment: str, epochs: int, *overrides: str) -> tuple[Path, float]:
    """One `aectl train experiment=<experiment>` run; returns its folder and its wall minutes."""
    run_dir = Path(args.out) / name
    start = time.perf_counter()
    rc = cli.main(["train", f"experiment={experiment}", f"dataset.root={args.root}", "dataset.download=false",
                   f"dataset.limit={args.limit}", f"trainer.epochs={epochs}", f"trainer.threads={args.threads}",
                   f"trainer.device={args.device}", "trainer.progress=false", f"hydra.run.dir={run_dir}",
                   *overrides])
    if rc:
        sys.exit(f"quality: training {name} failed (exit code {rc})")
    minutes = (time.perf_counter() - start) / 60
    print(f"  trained {name}: {epochs} epochs in {minutes:.1f} min", flush=True)
    return run_dir, minutes


def load_run(run_dir: Path, device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """The trained model (last checkpoint), its metrics.json and its checkpoint."""
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return rebuild_model(ckpt).to(device), json.loads((run_dir / "metrics.json").read_text()), ckpt


def mnist(args, binarize: str = "none") -> data_mod.DataSplits:
    """The splits the runs use (same seed, same val carve-out, same fixed test binarization)."""
    return data_mod.load_dataset("mnist", root=args.root, download=False, binarize=binarize, limit=args.limit)


def pca_mse(train: torch.Tensor, test: torch.Tensor, ks: list[int]) -> dict[int, float]:
    """Test per-pixel MSE of PCA fitted on `train` (the optimal linear AE), for each K."""
    x_train, x_test = train.flatten(1).double(), test.flatten(1).double()
    mean = x_train.mean(0)
    _, _, v = torch.linalg.svd(x_train - mean, full_matrices=False)  # rows of v: principal axes
    centred = x_test - mean
    return {k: float((centred @ v[:k].T @ v[:k] - centred).square().mean()) for k in ks}


def stacked_ae(args, device) -> list[str]:
    data = mnist(args)
    baseline = pca_mse(data.as_float(data.train), data.as_float(data.test), args.ks)
    rows = []
    for k in args.ks:
        run_dir, minutes = train(args, f"ae_k{k}", "mnist_ae", args.ae_epochs, f"model.latent_dim={k}")
        mse = json.loads((run_dir / "metrics.json").read_text())["test"]["mse"]
        ref = PCA_REFERENCE.get(k, math.nan)
        verdict = "beats PCA" if mse < min(baseline[k], PCA_REFERENCE.get(k, math.inf)) else "DOES NOT beat PCA"
        rows.append(f"| stacked AE K={k:<2} | test MSE/pixel | {mse:.4f} | PCA here {baseline[k]:.4f}, "
                    f"published {ref:.4f} | {verdict} | {args.ae_epochs} ep, {minutes:.1f} min |")
    return rows


def denoising(args, device) -> list[str]:
    from aectl import metrics
    from aectl.noise import Corruption

    x_test = mnist(args).test.to(device).float() / 255
    rows = []
    for kind, overrides in (("gaussian", ["noise=gaussian", "noise.sigma=0.3", "noise.clip=true"]),
                            ("masking", ["noise=masking", "noise.p=0.25"])):
        run_dir, minutes = train(args, f"dae_{kind}", "mnist_dae", args.dae_epochs, *overrides)
        model, _, ckpt = load_run(run_dir, device)
        corruption = Corruption(**{k: v for k, v in ckpt["config"]["noise"].items() if v is not None})
        result = metrics.denoising_psnr(model, x_test, corruption, generator=torch.Generator(device).manual_seed(0))
        denoised, noisy = float(result.denoised.mean()), float(result.noisy.mean())
        gain = denoised - noisy
        verdict = f"beats the noisy input by {gain:.1f} dB" if gain > 0 else f"{gain:.1f} dB: DOES NOT denoise"
        label = "gaussian σ=0.3" if kind == "gaussian" else "masking 25%"
        rows.append(f"| DAE {label} | test PSNR denoised | {denoised:.2f} dB | noisy input here {noisy:.2f} dB, "
                    f"published {NOISY_PSNR_REFERENCE[kind]:.1f} dB | {verdict} | {args.dae_epochs} ep, "
                    f"{minutes:.1f} min |")
    return rows


def iw_nll(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """−log p(x) per example by importance sampling with k samples (Burda et al. 2016, eq. 8)."""
    from aectl.metrics import iw_log_likelihood

    gen = torch.Generator(x.device).manual_seed(0)
    return torch.cat([-iw_log_likelihood(model, x[i:i + 100], k, chunk=20_000, generator=gen)
                      for i in range(0, len(x), 100)])


def vae(args, device) -> list[str]:
    run_dir, minutes = train(args, "vae", "mnist_vae", args.vae_epochs)
    model, metrics_json, _ = load_run(run_dir, device)
    data = mnist(args, binarize="dynamic")  # test set: the same fixed-seed draw the run was scored on
    x_test = data.as_float(data.test).to(device)
    if args.iw_examples:
        x_test = x_test[:args.iw_examples]
    start = time.perf_counter()
    nll = float(iw_nll(model, x_test, args.iw_k).mean())
    iw_minutes = (time.perf_counter() - start) / 60
    neg_elbo = metrics_json["test"]["neg_elbo"]
    verdict = (f"≤ {VAE_TARGET_NATS} (the converged level)" if nll <= VAE_TARGET_NATS else
               f"> {VAE_TARGET_NATS}: the converged level is not reached at this budget")
    return [f"| VAE 784-400-40, dyn. binarized | test NLL, IW k={args.iw_k} ({len(x_test)} images) | "
            f"{nll:.2f} nats | −ELBO {neg_elbo:.2f}; published {VAE_REFERENCE['mlp_784_400_40']} (784-400-40), "
            f"{VAE_REFERENCE['burda_1layer_k5000']} (Burda k=5000), {VAE_REFERENCE['independent_bernoulli']:.0f} "
            f"(pixel-independent) | {verdict} | {args.vae_epochs} ep, {minutes:.1f} min + IW {iw_minutes:.1f} min |"]


VQ_MIN_USAGE = 0.5  # share of the codebook the VQ-VAE must use on the test split


def vqvae(args, device) -> list[str]:
    """The VQ-VAE's test PSNR against the stacked AE's at K = 32, both trained for --vqvae-epochs."""
    epochs = args.vqvae_epochs
    ae_dir, ae_minutes = train(args, "vqvae_ref_ae_k32", "mnist_ae", epochs, "model.latent_dim=32")
    vq_dir, vq_minutes = train(args, "vqvae", "mnist_vqvae", epochs)
    ae = json.loads((ae_dir / "metrics.json").read_text())["test"]
    vq = json.loads((vq_dir / "metrics.json").read_text())["test"]
    ok = vq["psnr"] >= ae["psnr"] and vq["codebook_usage"] >= VQ_MIN_USAGE
    verdict = "passes" if ok else "DOES NOT pass"
    return [f"| VQ-VAE | test PSNR (dB), codebook usage, perplexity | {vq['psnr']:.2f}, {vq['codebook_usage']:.0%}, "
            f"{vq['perplexity']:.1f} | stacked AE K=32 {ae['psnr']:.2f} dB; usage ≥ {VQ_MIN_USAGE:.0%} | {verdict} | "
            f"{epochs} ep each, {vq_minutes:.1f} + {ae_minutes:.1f} min |"]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="aectl-quality-")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    print(f"quality on MNIST from {args.root}; runs in {args.out}; torch {torch.__version__}, "
          f"{args.threads} thread(s), device {device}", flush=True)
    start = time.perf_counter()
    rows = []
    for part, fn in (("ae", stacked_ae), ("dae", denoising), ("vae", vae), ("vqvae", vqvae)):
        if part not in args.skip:
            rows += fn(args, device)
    print("\n| model | metric | aectl | reference | verdict | budget |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntotal {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
