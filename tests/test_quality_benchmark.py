"""benchmarks/quality.py end to end on a tiny stand-in for MNIST: every part trains its presets,
scores them and prints its row. The figures are meaningless at this size; what is checked is that
the script behind the quality table of docs/benchmarks.md still runs on the current code, and that its rows
name the settings they measured."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import yaml

from tests.test_readers import write_idx

ROOT = Path(__file__).resolve().parent.parent


def tiny_mnist(root: Path, n_train: int = 240, n_test: int = 60) -> None:
    """MNIST's four files with n_train and n_test images: a bright square per class on noise."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, y in enumerate(labels):
            row, col = divmod(int(y), 5)
            images[i, 4 + 10 * row:12 + 10 * row, 2 + 5 * col:7 + 5 * col] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images.astype(np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))


def load_quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_part_of_the_quality_benchmark_runs_and_prints_its_row(tmp_path, capsys):
    tiny_mnist(tmp_path / "data")
    quality = load_quality()
    one_epoch = [f"--{part}-epochs=1" for part in ("ae", "dae", "vae", "vqvae", "cvae", "cae", "iwae")]
    quality.main(["--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--ks", "2", "--iw-k", "3",
                  "--cvae-samples", "2", "--vae-warmup-steps", "1", "--greedy-finetune-epochs", "1", *one_epoch])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    expected = {"ae": r"stacked AE.*K=2", "greedy": r"greedy", "dae": r"DAE ", "vae": r"VAE 784-400-40",
                "cvae": r"cVAE 784-400", "vqvae": r"VQ-VAE", "cae": r"CAE 784-256", "iwae": r"IWAE k=5"}
    for part, pattern in expected.items():
        assert any(re.search(pattern, line) for line in table[1:]), (part, table)
    cae = next(line for line in table if "CAE 784-256" in line)
    preset = yaml.safe_load((ROOT / "configs" / "experiment" / "mnist_cae.yaml").read_text())
    assert f"λ={preset['penalty']['weight']:g} " in cae  # the row names the λ the run trained with


def test_the_likelihood_benchmark_runs_resumes_and_prints_its_rows(tmp_path, capsys):
    """benchmarks/likelihood.py on the tiny MNIST: its rows, the curve's picture, the kept
    checkpoints it scores; a second call scores the runs of the first without training them."""
    tiny_mnist(tmp_path / "data")
    spec = importlib.util.spec_from_file_location("likelihood", ROOT / "benchmarks" / "likelihood.py")
    likelihood = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(likelihood)
    args = ["--root", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--epochs", "2", "--keep-every", "1",
            "--iw-k", "3", "--warmup-steps", "1"]
    likelihood.main(args)
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    for pattern in (r"VAE 784-400-40 \| .*the baseline", r"VampPrior \(500\) \| .*nats below the VAE",
                    r"2 stochastic layers .*nats below the VAE", r"experiment=mnist_vae_long \| time per epoch",
                    r"experiment=mnist_iwae_long \| time per epoch", r"experiment=mnist_hvae \| time per epoch"):
        assert any(re.search(pattern, line) for line in table), (pattern, table)
    assert (tmp_path / "runs" / "nll_vs_epochs.png").stat().st_size > 10_000
    kept = sorted(p.name for p in (tmp_path / "runs" / "mnist_vamp" / "checkpoints").glob("epoch_*.pt"))
    assert kept == ["epoch_0001.pt", "epoch_0002.pt"]
    likelihood.main([*args, "--skip", "timing"])
    assert capsys.readouterr().out.count("trained already") == 3
