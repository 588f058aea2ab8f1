"""`aectl export format=saelens`: the files SAELens loads, read back by hand (safetensors' format
and cfg.json's fields as SAELens documents them) and, where sae_lens is installed, by SAELens
itself; the exported SAE reproduces the aectl model's latents and reconstructions on raw inputs."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from aectl.cli import main
from aectl.evaluation.export import SAELENS_VERSION
from aectl.models.sae import SparseAutoencoder
from aectl.runs.checkpoint import save_checkpoint

D_IN, LATENTS, K, SCALE = 6, 16, 3, 2.5
ARCH = {"topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "relu_l1": "standard"}


def _trained_like_sae(activation: str, seed: int = 0) -> SparseAutoencoder:
    """An SAE with every parameter away from its initial value (biases, thresholds, decoder
    rows off unit norm), so a weight exported in the wrong place changes the numbers."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(input_shape=[D_IN], num_latents=LATENTS, activation=activation, k=K)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if activation == "batchtopk":
            sae.threshold.fill_(0.2)
    return sae.eval()


def _checkpoint(tmp_path: Path, sae: SparseAutoencoder, data: dict, kind: str = "sae") -> Path:
    kwargs = {"input_shape": [D_IN], "num_latents": LATENTS, "activation": sae.activation, "k": K}
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"kind": kind, "kwargs": kwargs}, "state_dict": sae.state_dict(), "step": 1,
                           "epoch": 1, "config": {}, "data": data})
    return path


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The safetensors format read with struct + json: u64 header length, JSON header, data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32"
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
    covered = sorted(tuple(i["data_offsets"]) for k, i in header.items() if k != "__metadata__")
    assert covered[0][0] == 0 and covered[-1][1] == len(data)  # no gap, nothing after the last tensor
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    return tensors, header.get("__metadata__", {})


def saelens_forward(cfg: dict, w: dict[str, np.ndarray], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAELens's inference (sae_lens/saes/{topk,jumprelu,standard}_sae.py) written out:
    pre = (x − b_dec·apply_b_dec_to_input) W_enc + b_enc; topk: the k largest through a ReLU;
    jumprelu: ReLU(pre)·1[pre > threshold]; standard: ReLU(pre); x̂ = z W_dec + b_dec."""
    t = {k: torch.from_numpy(v.copy()).double() for k, v in w.items()}
    pre = (x.double() - t["b_dec"] * cfg["apply_b_dec_to_input"]) @ t["W_enc"] + t["b_enc"]
    if cfg["architecture"] == "topk":
        values, idx = pre.topk(cfg["k"], dim=-1)
        z = torch.zeros_like(pre).scatter(-1, idx, values.relu())
    elif cfg["architecture"] == "jumprelu":
        z = pre.relu() * (pre > t["threshold"])
    else:
        z = pre.relu()
    return z, z @ t["W_dec"] + t["b_dec"]


def _export(ckpt: Path, out: Path, *extra: str) -> Path:
    assert main(["export", f"ckpt={ckpt}", "format=saelens", f"out={out}", *extra]) == 0
    return out


@pytest.mark.parametrize("activation", list(ARCH))
def test_exported_files_reproduce_the_latents_and_reconstructions_on_raw_activations(tmp_path, activation):
    sae = _trained_like_sae(activation)
    out = _export(_checkpoint(tmp_path, sae, {"scaler": {"mode": "mean_squared_norm", "scale": SCALE}}), tmp_path / "out")
    cfg = json.loads((out / "cfg.json").read_text())
    weights, _ = read_safetensors(out / "sae_weights.safetensors")
    x = 3 * torch.randn(64, D_IN, dtype=torch.float64)  # raw activations; the model saw x·SCALE
    z, x_hat = saelens_forward(cfg, weights, x)
    with torch.no_grad():
        z_model = sae.encode((x * SCALE).float()).double()
        x_hat_model = sae.decode(z_model.float()).double() / SCALE
    assert (z_model > 0).sum() > 0
    torch.testing.assert_close(z, z_model, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_hat, x_hat_model, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", list(ARCH))
def test_cfg_json_holds_the_fields_saelens_reads(tmp_path, activation):
    sae = _trained_like_sae(activation)
    out = _export(_checkpoint(tmp_path, sae, {}), tmp_path / "out", "hook_name=blocks.3.hook_resid_post",
                  "model_name=gpt2")
    cfg = json.loads((out / "cfg.json").read_text())
    weights, meta = read_safetensors(out / "sae_weights.safetensors")
    assert cfg["architecture"] == ARCH[activation]
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"]) == (D_IN, LATENTS, "float32")
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    # ≥ 6.0: SAELens reads the config as is, without its pre-6.0 renaming and defaults
    assert cfg["metadata"]["sae_lens_version"] == SAELENS_VERSION >= "6"
    assert (cfg["metadata"]["hook_name"], cfg["metadata"]["model_name"]) == ("blocks.3.hook_resid_post", "gpt2")
    assert meta == {"format": "pt"}
    shapes = {"W_enc": (D_IN, LATENTS), "b_enc": (LATENTS,), "W_dec": (LATENTS, D_IN), "b_dec": (D_IN,)}
    if ARCH[activation] == "jumprelu":
        shapes["threshold"] = (LATENTS,)
    assert {k: v.shape for k, v in weights.items()} == shapes
    if activation == "topk":
        assert (cfg["k"], cfg["rescale_acts_by_decoder_norm"]) == (K, False)
    else:
        assert "k" not in cfg
    if activation == "batchtopk":  # the estimated θ, one per latent
        assert np.all(weights["threshold"] == np.float32(0.2))
    if activation == "jumprelu":
        np.testing.assert_allclose(weights["threshold"], sae.threshold.detach().numpy(), rtol=1e-6)
    with torch.no_grad():  # without a scale the weights are the model's own
        np.testing.assert_array_equal(weights["W_enc"], sae.W_enc.numpy())
        np.testing.assert_array_equal(weights["b_dec"], sae.b_dec.numpy())


@pytest.mark.parametrize("scaler", [
    {"mode": "standard", "mean": [0.5, -1, 2, 0, 3, 1], "std": [2, 0.5, 1, 4, 0, 3]},  # a constant feature: std 0
    {"mode": "minmax", "min": [-2, 0, 1, -1, 0, 5], "max": [2, 4, 3, 1, 8, 6]},
])
def test_a_tensor_files_scaler_is_folded_into_the_weights(tmp_path, scaler):
    from aectl.datasets import apply_scaler

    sae = _trained_like_sae("topk")
    out = _export(_checkpoint(tmp_path, sae, {"scaler": scaler}), tmp_path / "out")
    weights, _ = read_safetensors(out / "sae_weights.safetensors")
    x = 3 * torch.randn(32, D_IN)
    z, x_hat = saelens_forward(json.loads((out / "cfg.json").read_text()), weights, x)
    with torch.no_grad():
        z_model = sae.encode(apply_scaler(x, scaler))
    torch.testing.assert_close(z, z_model.double(), rtol=1e-4, atol=1e-4)
    # x̂ in raw units: the model's reconstruction with the scaler undone (aectl.load's _from_model)
    low = torch.tensor(scaler.get("mean", scaler.get("min")), dtype=torch.float64)
    spread = torch.tensor(scaler["std"], dtype=torch.float64) if "std" in scaler else \
        torch.tensor(scaler["max"], dtype=torch.float64) - low
    spread = torch.where(spread > 1e-8, spread, torch.ones_like(spread))
    torch.testing.assert_close(x_hat, sae.decode(z_model).detach().double() * spread + low, rtol=1e-4, atol=1e-4)


def test_a_model_that_is_not_an_sae_is_refused_in_one_line(tmp_path, capsys):
    from aectl.models import build_model

    ae = build_model("ae", input_shape=[1, 1, D_IN], latent_dim=2)
    path = tmp_path / "ae" / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"kind": "ae", "kwargs": {"input_shape": [1, 1, D_IN], "latent_dim": 2}},
                           "state_dict": ae.state_dict(), "step": 1, "epoch": 1, "config": {}, "data": {}})
    assert main(["export", f"ckpt={path.parent.parent}", "format=saelens", f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ae' is not a sparse autoencoder" in err and "model=sae" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, words", [
    (["format=saelens"], "ckpt= missing"),
    (["ckpt=x", "format=onnx"], "format=onnx: no such export format; allowed: saelens"),
    (["ckpt=x", "format=saelens", "k=3"], "k=3: unknown argument; allowed: ckpt=, format=, out="),
    (["ckpt=nowhere", "format=saelens"], "nowhere: no such checkpoint file or run folder"),
])
def test_bad_export_arguments_end_in_one_line(capsys, args, words):
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_export_help_names_every_argument(capsys):
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: aectl export ckpt=")
    assert all(f"{key}=" in out for key in ("ckpt", "format", "out", "hook_name", "model_name"))


def test_a_trained_run_exports_to_its_folder_by_default(train_run, capsys):
    import aectl

    run = train_run("model=sae", "dataset=digits", "dataset.limit=200", "model.k=4", "model.expansion_factor=2",
                    "trainer.epochs=1")
    assert main(["export", f"ckpt={run}", "format=saelens"]) == 0
    out = run / "export" / "last_saelens"
    assert str(out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out) in capsys.readouterr().out
    cfg = json.loads((out / "cfg.json").read_text())
    weights, _ = read_safetensors(out / "sae_weights.safetensors")
    x = torch.rand(20, 64)
    z, x_hat = saelens_forward(cfg, weights, x)
    model = aectl.load(run)  # the Python API in the data's units
    torch.testing.assert_close(z, model.encode(x).double(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_hat, model.reconstruct(x).reshape(20, 64).double(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", list(ARCH))
def test_saelens_loads_the_export_and_gives_the_same_latents(tmp_path, activation):
    sae_lens = pytest.importorskip("sae_lens")
    sae = _trained_like_sae(activation)
    out = _export(_checkpoint(tmp_path, sae, {"scaler": {"mode": "mean_squared_norm", "scale": SCALE}}), tmp_path / "out")
    loaded = sae_lens.SAE.load_from_disk(str(out), device="cpu")
    assert loaded.cfg.architecture() == ARCH[activation] and loaded.cfg.d_sae == LATENTS
    x = 3 * torch.randn(64, D_IN)
    with torch.no_grad():
        z_model = sae.encode(x * SCALE)
        torch.testing.assert_close(loaded.encode(x), z_model, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(loaded(x), sae.decode(z_model) / SCALE, rtol=1e-4, atol=1e-4)
    safetensors = pytest.importorskip("safetensors.torch")  # the reference reader agrees with ours
    for name, tensor in safetensors.load_file(str(out / "sae_weights.safetensors")).items():
        np.testing.assert_array_equal(tensor.numpy(), read_safetensors(out / "sae_weights.safetensors")[0][name])
