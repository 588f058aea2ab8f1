"""dataset=activations: (N, D) rows read in place from .npy/.safetensors (and .npz/.pt, a folder of
shards), split by a seeded draw, the train split streamed chunk by chunk in a seeded order, the
optional normalisation, the refusals, and a 2 GB file trained on with a fraction of its size in memory."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aectl.cli import main
from aectl.config.errors import DataError
from aectl.datasets import load_dataset
from aectl.datasets.disk_rows import DiskRows

ROOT = Path(__file__).resolve().parent.parent


def rows(n=500, d=6, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def write_safetensors(path: Path, name: str, tensor: torch.Tensor) -> None:
    """The safetensors layout by hand (8-byte header length, JSON header, raw little-endian bytes)."""
    dtype = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16"}[tensor.dtype]
    blob = tensor.contiguous().view(torch.int16 if tensor.element_size() == 2 else torch.int32).numpy().tobytes()
    header = json.dumps({name: {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [0, len(blob)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + blob)


def every_row(data) -> torch.Tensor:
    train = torch.cat(list(data.batches(data.train, 64)))
    return torch.cat([train, data.val, data.test])


def sorted_rows(x: torch.Tensor) -> list:
    return sorted(map(tuple, x.tolist()))


@pytest.mark.parametrize("fmt", ["npy16", "npy32", "safetensors_bf16", "npz", "pt", "shards"])
def test_every_format_gives_each_row_once_split_three_ways(tmp_path, fmt):
    x = rows()
    if fmt == "npy16":
        x = x.astype(np.float16)
        np.save(tmp_path / "a.npy", x)
        path = tmp_path / "a.npy"
    elif fmt == "npy32":
        np.save(tmp_path / "a.npy", x)
        path = tmp_path / "a.npy"
    elif fmt == "safetensors_bf16":
        bf = torch.from_numpy(x).bfloat16()
        write_safetensors(tmp_path / "a.safetensors", "activations", bf)
        x, path = bf.float().numpy(), tmp_path / "a.safetensors"
    elif fmt == "npz":
        np.savez(tmp_path / "a.npz", x=x)
        path = tmp_path / "a.npz"
    elif fmt == "pt":
        torch.save({"x": torch.from_numpy(x)}, tmp_path / "a.pt")
        path = tmp_path / "a.pt"
    else:
        (tmp_path / "shards").mkdir()
        np.save(tmp_path / "shards" / "0.npy", x[:200])
        write_safetensors(tmp_path / "shards" / "1.safetensors", "activations", torch.from_numpy(x[200:]))
        path = tmp_path / "shards"
    data = load_dataset("activations", path=str(path), val_fraction=0.1, test_fraction=0.1, chunk_rows=100)
    assert isinstance(data.train, DiskRows) and (len(data.train), len(data.val), len(data.test)) == (400, 50, 50)
    assert data.input_shape == [6] and data.known_range is None
    assert sorted_rows(every_row(data)) == sorted_rows(torch.from_numpy(x.astype(np.float32)))


def test_the_split_is_seeded_and_limit_cuts_the_train_rows_before_any_is_read(tmp_path):
    np.save(tmp_path / "a.npy", rows())
    a = load_dataset("activations", path=str(tmp_path / "a.npy"), split_seed=3)
    b = load_dataset("activations", path=str(tmp_path / "a.npy"), split_seed=3, limit=40)
    c = load_dataset("activations", path=str(tmp_path / "a.npy"), split_seed=4)
    assert torch.equal(a.train.index[:40], b.train.index) and len(b.train) == 40
    assert torch.equal(a.val, b.val) and not torch.equal(a.train.index, c.train.index)


def test_a_shuffled_epoch_is_every_train_row_once_in_an_order_fixed_by_the_global_seed(tmp_path):
    np.save(tmp_path / "a.npy", rows(1000))
    data = load_dataset("activations", path=str(tmp_path / "a.npy"), chunk_rows=128)

    def epoch(seed):
        torch.manual_seed(seed)
        return torch.cat(list(data.batches(data.train, 32, shuffle=True)))

    plain = torch.cat(list(data.batches(data.train, 32)))
    first, again, other = epoch(1), epoch(1), epoch(2)
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, plain)
    assert sorted_rows(first) == sorted_rows(plain)
    position = {row: i for i, row in enumerate(map(tuple, plain.tolist()))}
    chunk = [position[row] for row in map(tuple, first[:128].tolist())]  # one chunk's rows, in the order read
    assert max(chunk) - min(chunk) == 127 and chunk != sorted(chunk)  # one run of rows, shuffled within
    assert len(list(data.batches(data.train, 32, shuffle=True))) == -(-len(plain) // 32)


def test_normalisation_makes_the_mean_squared_norm_d_and_a_saved_scale_is_reused(tmp_path):
    np.save(tmp_path / "a.npy", rows(2000) * 7.0)
    data = load_dataset("activations", path=str(tmp_path / "a.npy"), normalize="mean_squared_norm")
    train = torch.cat(list(data.batches(data.train, 256)))
    assert data.scaler["mode"] == "mean_squared_norm"
    assert float(train.pow(2).sum(1).mean()) == pytest.approx(6, rel=0.05)  # D = 6, estimated on a sample
    assert float(data.val.pow(2).sum(1).mean()) == pytest.approx(6, rel=0.2)
    saved = load_dataset("activations", path=str(tmp_path / "a.npy"), scaler={"mode": "mean_squared_norm", "scale": 2.0})
    assert torch.allclose(saved.val, load_dataset("activations", path=str(tmp_path / "a.npy")).val * 2.0)


def bad_inputs(tmp_path: Path) -> dict:
    np.save(tmp_path / "cube.npy", np.zeros((4, 5, 6), np.float32))
    np.save(tmp_path / "int.npy", np.zeros((4, 6), np.int64))
    nan = rows(50)
    nan[37, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "empty").mkdir()
    (tmp_path / "mixed").mkdir()
    np.save(tmp_path / "mixed" / "a.npy", rows(10, 6))
    np.save(tmp_path / "mixed" / "b.npy", rows(10, 7))
    return {"cube.npy": "reshape(-1, x.shape[-1])", "int.npy": "dtype int64", "nan.npy": "row 37 holds NaN",
            "empty": "holds no", "mixed": "different widths D [6, 7]"}


def test_bad_activations_are_one_line_naming_the_key_and_the_value(tmp_path):
    for name, says in bad_inputs(tmp_path).items():
        with pytest.raises(DataError, match=r"dataset\.path=") as err:
            data = load_dataset("activations", path=str(tmp_path / name), val_fraction=0.0, test_fraction=0.0)
            list(data.batches(data.train, 64))  # a NaN row is found where its chunk is read
        assert says in str(err.value) and "\n" not in str(err.value), name


def test_a_bad_file_ends_the_command_in_one_line_and_writes_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "int.npy", np.zeros((40, 6), np.int64))
    assert main(["train", "model=sae", "dataset=activations", "dataset.path=int.npy", "trainer.epochs=1",
                 "hydra.run.dir=run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "dataset.path=" in lines[0] and "int.npy: dtype int64" in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_sae_trains_and_evaluates_on_activations_and_resumes_with_its_scale(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "a.npy", (rows(600, 8) * 3).astype(np.float16))
    common = ["model=sae", "dataset=activations", f"dataset.path={tmp_path / 'a.npy'}", "dataset.normalize=mean_squared_norm",
              "model.k=2", "trainer.progress=false", "hydra.run.dir=run"]
    assert main(["train", *common, "trainer.epochs=1"]) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["data"]["scaler"]["mode"] == "mean_squared_norm"
    assert main(["train", *common, "trainer.epochs=2", "trainer.resume=auto"]) == 0
    assert main(["eval", "ckpt=run"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 2


BIG = """
import resource, sys
from aectl.cli import main
code = main(["train", "model=sae", "model.num_latents=64", "model.expansion_factor=0", "model.k=4",
             "dataset=activations", f"dataset.path={sys.argv[1]}", "dataset.val_fraction=0.002",
             "dataset.test_fraction=0.002", "trainer.epochs=1", "trainer.batch_size=4096", "trainer.progress=false",
             "trainer.threads=1", f"hydra.run.dir={sys.argv[2]}"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB: the peak resident memory of this process
sys.exit(code)
"""


def test_a_2gb_float16_file_trains_in_a_fraction_of_its_size(tmp_path):
    """Acceptance: a float16 .npy of 2 GiB written here (not loaded), one epoch of a TopK SAE on
    all its train rows; the training process's peak resident memory stays well under the file."""
    path, n, d = tmp_path / "big.npy", 1 << 20, 1024
    block = np.random.default_rng(0).normal(size=(1 << 14, d)).astype(np.float16)
    with open(path, "wb") as f:  # written block by block: this process never holds the file either
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": False, "shape": (n, d)})
        for _ in range(n // len(block)):
            f.write(block.tobytes())
    size = path.stat().st_size
    assert size >= 2 * 1024**3
    np.save(tmp_path / "small.npy", block[:4096])  # the same run on 4096 rows: the process's own memory

    def peak_of(data: Path, run: str) -> int:
        proc = subprocess.run([sys.executable, "-c", BIG, str(data), str(tmp_path / run)], capture_output=True,
                              text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                            "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.strip().splitlines()[-1]) * 1024

    peak, baseline = peak_of(path, "run"), peak_of(tmp_path / "small.npy", "small")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    print(f"file {size / 1024**3:.2f} GiB; peak resident memory of training on it {peak / 1024**3:.2f} GiB "
          f"({peak / size:.0%} of the file), on 4096 rows {baseline / 1024**3:.2f} GiB: the data's share "
          f"{(peak - baseline) / 1024**3:.2f} GiB ({(peak - baseline) / size:.0%}); {metrics['steps']} steps")
    assert metrics["steps"] == -(-(n - 2 * round(n * 0.002)) // 4096)  # every train row, in 4096-row batches
    assert peak < 0.75 * size and peak - baseline < 0.25 * size
    path.unlink()
