"""Quality on real MNIST with the shipped presets, next to published reference numbers.

    python benchmarks/quality.py --root <folder holding MNIST/raw/*.gz> [--threads 1]

Trains (in-process, through `aectl train`) the stacked AE at K = 2, 10, 32 (experiment=mnist_ae),
the denoising AE with gaussian σ=0.3 and masking 25% noise (experiment=mnist_dae) and the VAE on
dynamically binarized MNIST (experiment=mnist_vae), then prints one table:

- greedy: the stacked AE (K = 32) with greedy layer-wise pretraining (trainer.pretrain_epochs)
  and fine-tuning, against end-to-end training for the same total epochs: test per-pixel MSE of both;
- stacked AE: test per-pixel MSE against PCA at the same K (the optimal linear autoencoder),
  fitted here on the same train split and as published for MNIST; it passes below both;
- DAE: test PSNR of the reconstruction from the noisy input against the noisy input's own PSNR
  (same noise draw), both averaged over images; it passes above the noisy input;
- VQ-VAE (experiment=mnist_vqvae): test PSNR against the stacked AE at K = 32 trained for the same
  epochs; it passes at or above the AE's PSNR with at least half of its codebook in use on test;
- VAE: test NLL by importance sampling with k samples (Burda et al. 2016) on the test set
  binarized by a fixed-seed draw, with the test ELBO, epochs and minutes;
- conditional VAE (experiment=mnist_cvae): samples drawn per class, z ~ N(0, I) decoded to the
  decoder's mean E[x|z,y] (not a Bernoulli draw), classified by a logistic regression trained on
  MNIST's grey train pixels (its own test accuracy reported beside); it passes when ≥ 90% of
  the samples are classified as the class they were drawn for. Per-class accuracies are printed;
- CAE (experiment=mnist_cae): the test mean ‖J_f(x)‖_F of its encoder against the same network
  trained without the penalty; it passes at half that or less with a test MSE within 10%;
- IWAE k=5 (experiment=mnist_iwae): test NLL (IW, k samples) against experiment=mnist_vae trained
  for the same epochs at the IWAE preset's lr curve; it passes 1 nat or more below it.

The likelihood models (the VampPrior, two stochastic layers) and the long presets have their own
script, benchmarks/likelihood.py: it keeps checkpoints for a curve and times each preset alone.

The default epochs are at most the VAE's 50 (the CVAE's 60: at 30 its mark is met only narrowly); all parts together
take about 1.5-2 hours on one CPU thread. Raise the epochs on a GPU.
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
from aectl.runs.checkpoint import load_checkpoint, rebuild_model

# The pass marks, one per quantity; the presets' comments and the README quote these.
PCA_REFERENCE = {2: 0.0555, 10: 0.0329, 32: 0.0152, 50: 0.0100}  # PCA on MNIST test, per-pixel MSE
NOISY_PSNR_REFERENCE = {"gaussian": 13.3, "masking": 15.8}  # dB of the noisy MNIST test input itself
# Test NLL (nats) of a VAE on dynamically binarized MNIST: 784-400-40 trained to convergence
# (pythae's reproduction, 500 epochs), Burda et al. (2016)'s one-layer VAE (k = 5000), and a
# model of independent pixels.
VAE_REFERENCE = {"mlp_784_400_40": 89.8, "burda_1layer_k5000": 86.76, "independent_bernoulli": 206.0}
VAE_TARGET_NATS = VAE_REFERENCE["mlp_784_400_40"]
CVAE_TARGET_ACC = 0.90  # share of per-class samples a pixel classifier assigns to their class


PARTS = ("ae", "greedy", "dae", "vae", "cvae", "vqvae", "cae", "iwae")  # in the order they run


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
    ap.add_argument("--vae-warmup-steps", type=int, default=None,
                    help="lr warm-up steps of the mnist_vae preset run (default: the preset's; smoke runs need fewer)")
    ap.add_argument("--vqvae-epochs", type=int, default=5, help="epochs of the VQ-VAE and of its K=32 AE")
    ap.add_argument("--iw-k", type=int, default=1000, help="importance samples per test image")
    ap.add_argument("--iw-examples", type=int, default=0, help="test images for the NLL (0 = all 10000)")
    ap.add_argument("--limit", type=int, default=0, help="dataset.limit (smoke runs only)")
    ap.add_argument("--cvae-epochs", type=int, default=60)
    ap.add_argument("--cvae-latent", type=int, default=10, help="the cvae's latent size K")
    ap.add_argument("--cvae-samples", type=int, default=100, help="samples drawn per class")
    ap.add_argument("--clf-train", type=int, default=0, help="train images the pixel classifier is fitted on (0 = all)")
    ap.add_argument("--greedy-stage-epochs", type=int, default=1, help="greedy: pretraining epochs per layer")
    ap.add_argument("--greedy-finetune-epochs", type=int, default=2, help="greedy: end-to-end epochs after it")
    ap.add_argument("--cae-epochs", type=int, default=50)
    ap.add_argument("--iwae-epochs", type=int, default=50, help="epochs of both the IWAE and its VAE baseline")
    ap.add_argument("--skip", nargs="*", default=[], choices=list(PARTS), help="parts to leave out")
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
    """The trained model (the checkpoint its metrics.json scored), its metrics.json and its checkpoint."""
    metrics_json = json.loads((run_dir / "metrics.json").read_text())
    name = "best.pt" if metrics_json.get("stopped_early") else "last.pt"  # an early-stopped run's result
    ckpt = load_checkpoint(run_dir / "checkpoints" / name)
    return rebuild_model(ckpt).to(device), metrics_json, ckpt


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


def greedy(args, device) -> list[str]:
    """Greedy layer-wise pretraining + fine-tuning against end-to-end training at the same total
    epochs (stacked AE, experiment=mnist_ae, K = 32): stages × stage epochs + fine-tuning epochs."""
    stages = len(cli_config_hidden_dims()) + 1  # each hidden layer and the code layer
    per_stage, finetune = args.greedy_stage_epochs, args.greedy_finetune_epochs
    total = stages * per_stage + finetune
    pre_dir, pre_min = train(args, "greedy_k32", "mnist_ae", finetune, "model.latent_dim=32",
                             f"trainer.pretrain_epochs={per_stage}")
    e2e_dir, e2e_min = train(args, "end_to_end_k32", "mnist_ae", total, "model.latent_dim=32")
    pre, e2e = (json.loads((d / "metrics.json").read_text())["test"]["mse"] for d in (pre_dir, e2e_dir))
    verdict = "greedy better" if pre < e2e else "end-to-end better"
    return [f"| stacked AE K=32 greedy | test MSE/pixel | {pre:.4f} | end-to-end {total} ep: {e2e:.4f} "
            f"({e2e_min:.1f} min) | {verdict} | {stages}×{per_stage} stage ep + {finetune} ep, {pre_min:.1f} min |"]


def cli_config_hidden_dims() -> list[int]:
    """model.hidden_dims of experiment=mnist_ae, read from the preset itself."""
    from omegaconf import OmegaConf

    preset = Path(cli.__file__).resolve().parents[2] / "configs" / "experiment" / "mnist_ae.yaml"
    return list(OmegaConf.load(preset).model.hidden_dims)


def denoising(args, device) -> list[str]:
    from aectl.datasets.noise import Corruption
    from aectl.objectives import metrics

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
    from aectl.objectives.metrics import iw_log_likelihood

    gen = torch.Generator(x.device).manual_seed(0)
    return torch.cat([-iw_log_likelihood(model, x[i:i + 100], k, chunk=20_000, generator=gen)
                      for i in range(0, len(x), 100)])


# The VAE preset against the same networks at a fixed lr and the same epochs: what the
# preset's cosine schedule and early stopping buy at this budget.
FIXED_LR = ["lr_schedule=constant", "trainer.lr=0.001", "trainer.early_stopping_patience=0"]
VAE_RUNS = (("vae_fixed_lr", "fixed lr 1e-3", FIXED_LR),
            ("vae", "preset: warm-up + cosine lr 3e-3, early stopping", []))


def vae(args, device) -> list[str]:
    data = mnist(args, binarize="dynamic")  # test set: the same fixed-seed draw the runs were scored on
    x_test = data.as_float(data.test).to(device)
    if args.iw_examples:
        x_test = x_test[:args.iw_examples]
    rows = []
    for name, label, overrides in VAE_RUNS:
        if name == "vae" and args.vae_warmup_steps is not None:
            overrides = [f"lr_schedule.warmup_steps={args.vae_warmup_steps}"]
        run_dir, minutes = train(args, name, "mnist_vae", args.vae_epochs, *overrides)
        model, metrics_json, _ = load_run(run_dir, device)
        start = time.perf_counter()
        nll = float(iw_nll(model, x_test, args.iw_k).mean())
        iw_minutes = (time.perf_counter() - start) / 60
        neg_elbo = metrics_json["test"]["neg_elbo"]
        stopped = metrics_json.get("stopped_early")
        epochs = f"stopped at {stopped['epoch']}/{args.vae_epochs} ep" if stopped else f"{args.vae_epochs} ep"
        verdict = (f"≤ {VAE_TARGET_NATS} (the converged level)" if nll <= VAE_TARGET_NATS else
                   f"> {VAE_TARGET_NATS}: the converged level is not reached at this budget")
        rows.append(f"| VAE 784-400-40, dyn. binarized, {label} | test NLL, IW k={args.iw_k} ({len(x_test)} "
                    f"images) | {nll:.2f} nats | −ELBO {neg_elbo:.2f}; published {VAE_REFERENCE['mlp_784_400_40']} "
                    f"(784-400-40), {VAE_REFERENCE['burda_1layer_k5000']} (Burda k=5000), "
                    f"{VAE_REFERENCE['independent_bernoulli']:.0f} (pixel-independent) | {verdict} | "
                    f"{epochs}, {minutes:.1f} min + IW {iw_minutes:.1f} min |")
    return rows


def pixel_classifier(args, data: data_mod.DataSplits):
    """A multinomial logistic regression on grey MNIST pixels (the train split, or its first
    `--clf-train` images), and its accuracy on the test set."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    n = args.clf_train or len(data.train)
    x_train = data.as_float(data.train[:n]).flatten(1).numpy()
    y_train = data.train_labels[:n].numpy()
    with threadpool_limits(args.threads):
        clf = LogisticRegression(max_iter=200).fit(x_train, y_train)
        test_acc = clf.score(data.as_float(data.test).flatten(1).numpy(), data.test_labels.numpy())
    return clf, float(test_acc)


def cvae(args, device) -> list[str]:
    from threadpoolctl import threadpool_limits

    from aectl.evaluation import pictures

    run_dir, minutes = train(args, "cvae", "mnist_cvae", args.cvae_epochs, f"model.latent_dim={args.cvae_latent}")
    model, metrics_json, _ = load_run(run_dir, device)
    clf, clf_acc = pixel_classifier(args, mnist(args))
    gen = torch.Generator(device).manual_seed(0)
    # E[x|z,y] = sigmoid(logits): the decoder's mean, class-major (num_classes · n, 1, 28, 28)
    samples = pictures.class_samples(model, args.cvae_samples, gen).flatten(1).cpu().numpy()
    drawn_for = torch.arange(model.num_classes).repeat_interleave(args.cvae_samples).numpy()
    with threadpool_limits(args.threads):
        hit = clf.predict(samples) == drawn_for
    per_class = [float(hit[drawn_for == c].mean()) for c in range(model.num_classes)]
    acc = float(hit.mean())
    verdict = f"≥ {CVAE_TARGET_ACC:.0%}" if acc >= CVAE_TARGET_ACC else f"< {CVAE_TARGET_ACC:.0%}: MISSES the mark"
    print("  cvae per-class accuracy of its samples: "
          + ", ".join(f"{c}: {a:.2f}" for c, a in enumerate(per_class)), flush=True)
    return [f"| cVAE 784-400-{args.cvae_latent}, dyn. binarized | samples classified as their class "
            f"({args.cvae_samples}/class, decoder mean) | {acc:.1%} | pixel logistic regression: test acc. "
            f"{clf_acc:.1%}; per class "
            f"{min(per_class):.0%}–{max(per_class):.0%}; test −ELBO(x|y) {metrics_json['test']['neg_elbo']:.2f} | "
            f"{verdict} | {args.cvae_epochs} ep, {minutes:.1f} min |"]


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


CAE_JACOBIAN_RATIO, CAE_MSE_TOLERANCE = 0.5, 0.10  # the CAE's marks against the same AE without the penalty


def test_jacobian_norm(model, x: torch.Tensor) -> float:
    """Mean ‖J_f(x)‖_F of the encoder over the test images (aectl eval's jacobian_norm)."""
    from aectl.evaluation.validation import jacobian_norm

    return float(torch.cat([jacobian_norm(model, x[i:i + 500]) for i in range(0, len(x), 500)]).mean())


def contractive(args, device) -> list[str]:
    """experiment=mnist_cae against the same network and epochs with λ = 0 (no penalty)."""
    x_test = mnist(args).test.to(device).float() / 255
    found = {}
    for name, overrides in (("ae_plain", ["penalty.weight=0"]), ("cae", [])):
        run_dir, minutes = train(args, name, "mnist_cae", args.cae_epochs, *overrides)
        model, metrics_json, ckpt = load_run(run_dir, device)
        found[name] = (metrics_json["test"]["mse"], test_jacobian_norm(model, x_test), minutes,
                       ckpt["config"]["penalty"]["weight"])
    (mse_ae, jac_ae, _, _), (mse, jac, minutes, weight) = found["ae_plain"], found["cae"]
    ok = jac <= CAE_JACOBIAN_RATIO * jac_ae and mse <= (1 + CAE_MSE_TOLERANCE) * mse_ae
    return [f"| CAE 784-256 sigmoid, λ={weight:g} | test mean ‖J_f‖_F; test MSE/pixel | {jac:.3f}; {mse:.5f} | same AE "
            f"without the penalty: {jac_ae:.3f}; {mse_ae:.5f} | {'passes' if ok else 'DOES NOT pass'} (‖J‖ ratio "
            f"{jac / jac_ae:.2f} ≤ {CAE_JACOBIAN_RATIO}, MSE ratio {mse / mse_ae:.2f} ≤ {1 + CAE_MSE_TOLERANCE:.2f}) | "
            f"{args.cae_epochs} ep, {minutes:.1f} min |"]


def importance_weighted(args, device) -> list[str]:
    """experiment=mnist_iwae (k = 5) against experiment=mnist_vae at the same epochs and lr: test NLL by IW."""
    data = mnist(args, binarize="dynamic")
    x_test = data.as_float(data.test).to(device)
    if args.iw_examples:
        x_test = x_test[:args.iw_examples]
    found = {}
    # The VAE trains with the IWAE preset's lr curve (1e-3, cosine, no warm-up): only the objective differs.
    for name, overrides in (("vae", ["trainer.lr=0.001", "lr_schedule.warmup_steps=0"]), ("iwae", [])):
        run_dir, minutes = train(args, f"{name}_same_epochs", f"mnist_{name}", args.iwae_epochs, *overrides)
        model, metrics_json, _ = load_run(run_dir, device)
        found[name] = (float(iw_nll(model, x_test, args.iw_k).mean()), metrics_json["test"], minutes)
    (nll_vae, _, _), (nll, test, minutes) = found["vae"], found["iwae"]
    gain = nll_vae - nll
    verdict = f"beats the VAE by {gain:.2f} nats" + ("" if gain >= 1 else ": DOES NOT reach the 1-nat mark")
    return [f"| IWAE k=5 784-400-40, dyn. binarized | test NLL, IW k={args.iw_k} ({len(x_test)} images) | "
            f"{nll:.2f} nats | VAE of the same networks and epochs {nll_vae:.2f}; train bound −L_5 test "
            f"{test['loss']:.2f}, ESS {test['ess']:.2f} of 5 | {verdict} | {args.iwae_epochs} ep, {minutes:.1f} min |"]


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
    parts = {"ae": stacked_ae, "greedy": greedy, "dae": denoising, "vae": vae, "cvae": cvae, "vqvae": vqvae,
             "cae": contractive, "iwae": importance_weighted}
    for part, fn in parts.items():
        if part not in args.skip:
            rows += fn(args, device)
    print("\n| model | metric | aectl | reference | verdict | budget |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntotal {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
