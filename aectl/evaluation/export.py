"""`aectl export`: a trained sparse autoencoder in another library's layout.

format=saelens writes the folder SAELens opens with `SAE.load_from_disk(folder)` (the layout of
its `save_model`, checked against sae-lens 6.54.12): `cfg.json` and `sae_weights.safetensors`
holding W_enc (d_in, d_sae), b_enc (d_sae), W_dec (d_sae, d_in), b_dec (d_in) and, for a
jumprelu architecture, threshold (d_sae). The exported SAE takes the activations in their
original units: the input transform the run trained under is folded into the weights.
"""

import json
import math
import os
import struct
import tempfile
from pathlib import Path

import torch

from aectl import __version__
from aectl.config.errors import AectlError
from aectl.datasets.scaling import _CONSTANT  # a range/std below it was divided by 1, so it is here
from aectl.runs.checkpoint import load_checkpoint, rebuild_model
from aectl.runs.runfolder import resolve_checkpoint, run_dir_of

FORMATS = ("saelens",)
SAELENS_VERSION = "6.54.12"  # the sae-lens release whose loader this layout was checked against
WEIGHTS_FILE, CONFIG_FILE = "sae_weights.safetensors", "cfg.json"  # sae_lens/constants.py
# aectl's activation → SAELens's architecture. BatchTopK is saved as JumpReLU with its estimated
# threshold for every latent, as SAELens saves its own BatchTopK SAEs for inference.
ARCHITECTURES = {"topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "relu_l1": "standard"}


def input_transform(data: dict, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, gain), float64 (d_in,), with x_model = (x − shift)·gain the input the model was
    trained on for an activation x in its original units, from the checkpoint's data scaler:
    dataset=activations' normalisation x·s, or a tensor_file's (x − low)/spread."""
    shift, gain = torch.zeros(d_in, dtype=torch.float64), torch.ones(d_in, dtype=torch.float64)
    scaler = data.get("scaler") or {"mode": "none"}
    if scaler["mode"] == "mean_squared_norm":
        return shift, gain * float(scaler["scale"])
    if scaler["mode"] in ("minmax", "standard"):
        low, spread = ((scaler["min"], torch.tensor(scaler["max"], dtype=torch.float64) - torch.tensor(scaler["min"]))
                       if scaler["mode"] == "minmax" else (scaler["mean"], scaler["std"]))
        spread = torch.as_tensor(spread, dtype=torch.float64)
        spread = torch.where(spread > _CONSTANT, spread, torch.ones_like(spread))
        shift = shift + torch.as_tensor(low, dtype=torch.float64)  # one statistic broadcasts over the image
        gain = gain / spread
    return shift, gain


def saelens_weights(model, shift: torch.Tensor, gain: torch.Tensor) -> dict[str, torch.Tensor]:
    """The SAE's parameters for raw inputs x, from the model's on x_model = (x − shift)·gain:
      pre = (x_model − b_dec) W_enc + b_enc = (x − b_dec') W_enc' + b_enc,
        W_enc' = diag(gain) W_enc,  b_dec' = shift + b_dec / gain;
      x̂ = x̂_model / gain + shift = z W_dec' + b_dec',  W_dec' = W_dec diag(1/gain).
    The pre-activations, hence the latents and thresholds, are unchanged; for a scale s alone
    (shift 0, gain s) this is SAELens's fold_activation_norm_scaling_factor (W_enc·s, W_dec/s, b_dec/s)."""
    w_enc, w_dec = model.W_enc.detach().double(), model.W_dec.detach().double()
    weights = {"W_enc": gain[:, None] * w_enc, "b_enc": model.b_enc.detach().double(),
               "W_dec": w_dec / gain[None, :], "b_dec": shift + model.b_dec.detach().double() / gain}
    if model.activation == "jumprelu":
        weights["threshold"] = model.threshold.detach().double()
    elif model.activation == "batchtopk":  # not estimated yet (< 0): every positive latent, as θ = 0 keeps them
        weights["threshold"] = model.threshold.detach().double().clamp_min(0).expand(model.num_latents)
    return {name: w.float().contiguous() for name, w in weights.items()}


def saelens_config(model, hook_name: str | None = None, model_name: str | None = None) -> dict:
    """cfg.json: the fields of SAELens's SAEConfig (sae_lens/saes/sae.py) and its architecture's."""
    arch = ARCHITECTURES[model.activation]
    metadata = {"sae_lens_version": SAELENS_VERSION, "exported_by": f"aectl {__version__}"}
    metadata |= {k: v for k, v in (("hook_name", hook_name), ("model_name", model_name)) if v is not None}
    cfg = {"architecture": arch, "d_in": model.d_in, "d_sae": model.num_latents, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True,  # pre = (x − b_dec) W_enc + b_enc, as aectl's
           "normalize_activations": "none",  # the run's scaling is folded into the weights (saelens_weights)
           "reshape_activations": "none", "metadata": metadata}
    if arch == "topk":  # the k largest pre-activations as they are: the decoder norms play no part
        cfg |= {"k": model.k, "rescale_acts_by_decoder_norm": False}
    return cfg


def safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors format: an 8-byte little-endian header length, a JSON header naming each
    tensor's dtype, shape and [begin, end) byte offsets in the data, padded with spaces to a
    multiple of 8, then the tensors' little-endian bytes back to back."""
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, tensor in sorted(tensors.items()):
        blob = tensor.detach().cpu().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def default_out(checkpoint: Path, fmt: str) -> Path:
    """<run>/export/<checkpoint's name>_<format>, e.g. <run>/export/last_saelens."""
    return run_dir_of(checkpoint) / "export" / f"{checkpoint.stem}_{fmt}"


def export(ckpt: str | Path, fmt: str, out: str | Path | None = None, hook_name: str | None = None,
           model_name: str | None = None) -> Path:
    """Write the checkpoint's SAE in format `fmt` into `out`; returns the folder. Everything is
    checked before the first file is written."""
    if fmt not in FORMATS:
        raise AectlError(f"format={fmt}: no such export format; allowed: {', '.join(FORMATS)}")
    checkpoint = resolve_checkpoint(ckpt)
    state = load_checkpoint(checkpoint)
    kind = state["model"]["kind"]
    if kind != "sae":
        raise AectlError(f"ckpt={ckpt}: model {kind!r} is not a sparse autoencoder; "
                         f"format={fmt} exports model=sae checkpoints only")
    model = rebuild_model(state)
    shift, gain = input_transform(state.get("data") or {}, model.d_in)
    weights = saelens_weights(model, shift, gain)
    if not all(math.isfinite(v) for w in weights.values() for v in (w.min().item(), w.max().item())):
        raise AectlError(f"ckpt={ckpt}: the weights hold NaN or inf values; nothing exported")
    folder = Path(out) if out is not None else default_out(checkpoint, fmt)
    files = {WEIGHTS_FILE: safetensors_bytes(weights),
             CONFIG_FILE: (json.dumps(saelens_config(model, hook_name, model_name), indent=2) + "\n").encode()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            _write_atomically(folder / name, content)
    except OSError as err:
        raise AectlError(f"out={folder}: cannot write there ({err.strerror or err}); choose a folder you can "
                         "write to with out=<folder>") from None
    return folder


def _write_atomically(path: Path, content: bytes) -> None:
    """A temporary file in the same folder renamed over `path`: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; the folder is meant to be shared
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
