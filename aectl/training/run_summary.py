"""What a finished run says about itself: the final log lines (whose weights, the val and test
loss, a one-line summary of whether the model works) and the flat config TensorBoard's HPARAMS
tab lists."""

from pathlib import Path

from aectl.runs.tables import format_metric


def done_lines(metrics: dict, metrics_path: Path) -> list[str]:
    """The final log lines: the val and test loss of the weights metrics.json's split metrics are
    of, labelled, then best.pt's (metrics.json's `best`) when it holds another epoch's weights."""
    best = metrics.get("best_checkpoint")
    by = f", by {best['metric']}" if best else ""
    label = f"best.pt (epoch {best['epoch']}{by})" if metrics.get("weights") == "best" and best \
        else f"last weights (epoch {metrics['epochs']})"
    lines = [f"done: {label}: {_split_losses(metrics)}; metrics in {metrics_path}"]
    if "best" in metrics:
        lines.append(f"best.pt (epoch {metrics['best']['epoch']}{by}): {_split_losses(metrics['best'])}")
    return lines


def _split_losses(splits: dict) -> str:
    return ", ".join(f"{s} loss {format_metric('loss', splits[s]['loss'])}" for s in ("val", "test") if s in splits)


def summary(metrics: dict, latent_dims: list[int]) -> str:
    """What says at a glance whether the model works: its val PSNR against the mean image's
    (a model that ignores its input scores the latter), the VAE's active units (of each layer's
    `latent_dims`) and KL."""
    val, parts = metrics["val"], []
    if "psnr" in val:
        parts.append(f"val PSNR {format_metric('psnr', val['psnr'])} dB (the mean training image scores "
                     f"{format_metric('psnr', metrics.get('val_psnr_mean_image', float('nan')))} dB)")
    if "active_units" in val:
        units = f"{val['active_units']} of {latent_dims[0]}"
        if "active_units_z2" in val:  # a two-layer model: z1's, then z2's
            units = f"z1: {units}, z2: {val['active_units_z2']} of {latent_dims[1]}"
        parts.append(f"{units} latent units active, KL {format_metric('kl', val['kl'])} nats")
    if "fvu" in val:
        parts.append(f"val FVU {format_metric('fvu', val['fvu'])} (explained variance "
                     f"{format_metric('explained_variance', val['explained_variance'])}), L0 "
                     f"{format_metric('l0', val['l0'])}, {val['dead_latents']} dead latents")
    if "codebook_usage" in val:
        parts.append(f"{format_metric('codebook_usage', val['codebook_usage'])} of the codebook in use, "
                     f"perplexity {format_metric('perplexity', val['perplexity'])}")
    return "; ".join(parts) or f"val loss {format_metric('loss', val['loss'])}"


def hparams(config_dict: dict, lead: list[str] = ()) -> dict:
    """Flat {'model.latent_dim': 8, ...} of the config's scalar and list values, the keys of the
    overrides `lead` first (a sweep's HPARAMS tab then leads with what it swept)."""
    flat = {}
    for group, values in config_dict.items():
        if isinstance(values, dict):
            flat.update({f"{group}.{k}": v for k, v in values.items() if v is not None})
        elif values is not None:
            flat[group] = values
    return {k: flat[k] for k in dict.fromkeys([*lead_keys(flat, lead), *flat])}


def lead_keys(flat: dict, lead: list[str]) -> list[str]:
    """The keys of `flat` that the overrides `lead` set: a key given, or every field of a group given."""
    given = [o.split("=", 1)[0].lstrip("+") for o in lead if "=" in o]
    return [k for k in given if k in flat] + [k for k in flat if k.split(".")[0] in given and k not in given]
