"""`aectl eval`'s terminal tables: one run's metrics with their meaning, and a sweep side by side."""

import textwrap
from pathlib import Path

from aectl.config import VARIATIONAL_KINDS
from aectl.runs.tables import align_rows, format_metric

_ROWS = (  # metric → label, in the order shown
    ("loss", "loss: the training objective{at_beta} (per example)"),
    ("recon", "reconstruction −log p(x|{z_decoded}{y}){recon_of} ({unit})"),
    ("kl", "KL(q({z}|x{y}) ‖ p({z})) (nats){kl_how}"),
    ("neg_elbo", "−ELBO{of_y} = reconstruction + KL ({unit})"),
    ("nll_iw", "−log p(x{given_y}), IW bound k={k} ({unit})"),
    ("penalty", "penalty (weighted, per batch as in training)"),
    ("jacobian_norm", "contractive: mean ‖J_f(x)‖_F of the encoder (clean input)"),
    ("ess", "IWAE: effective sample size 1/Σ w̃² of the k training samples (mean)"),
    ("mse", "MSE per element (clean input{at_mu})"),
    ("psnr", "PSNR, MAX={psnr_max:g} (dB)"),
    ("active_units", "active units{of_z1} (of K={latent_dim})"),
    ("active_units_z2", "active units of z2, at z1 = μ (of K={latent_dim_z2})"),
    ("rho_hat_mean", "sparsity: mean ρ̂ (ρ={rho})"),
    ("frac_within_2x", "sparsity: share of units with ρ/2 ≤ ρ̂ ≤ 2ρ"),
    ("kl_sparsity", "sparsity: Σ_j KL(ρ ‖ ρ̂_j) over the split"),
    ("code_l1", "L1 of the code (per example)"),
    ("commitment", "VQ commitment β_c·‖z_e − sg[e]‖² (per example)"),
    ("codebook", "VQ codebook term ‖sg[z_e] − e‖² (per example)"),
    ("codebook_usage", "VQ codebook usage: share of the codes chosen on the split"),
    ("perplexity", "VQ code perplexity: exp H(average one-hot)"),
    ("fvu", "SAE: fraction of variance unexplained Σ‖x − x̂‖² / Σ‖x − x̄‖²"),
    ("explained_variance", "SAE: explained variance 1 − FVU"),
    ("l0", "SAE: L0, mean active latents per example"),
    ("dead_latents", "SAE: dead latents, never active on the split (count)"),
    ("dense_latents", "SAE: dense latents, active on > 10% of the split (count)"),
    ("dead_latents_train", "SAE: latents inactive for the last model.dead_steps training steps (count)"),
    ("decoder_max_cosine", "SAE: mean over latents of the largest cosine to another decoder row"),
    ("mmcs", "ground truth: mean max cosine of the true directions (MMCS)"),
    ("recovered", "ground truth: share of the true directions recovered at cosine ≥ 0.9"),
    ("probe_acc", "linear probe accuracy"),
)
SAE_RECON = "squared error ‖x − x̂‖² (per example)"  # an sae's recon is no likelihood


# A cvae is given y by the decoder, so its z need not carry the label: a probe near chance is expected.
CVAE_PROBE_NOTE = ("linear probe: near chance is expected for a cvae (the decoder is given the label y, "
                   "so z need not carry it)")


def _label_context(result: dict) -> dict:
    likelihood, variational = result["likelihood"], result["model"] in VARIATIONAL_KINDS
    y = ",y" if result["model"] == "cvae" else ""  # a conditional VAE: every term is given the label y
    noisy = result["noise"]["kind"] != "none"
    iwae = result["model"] == "iwae"
    two_layers = result["model"] == "hvae"
    draw = f"one z ~ q(z|x{y})"
    if two_layers:  # its recon is the mean over the k draws it trains with
        draw = "the k training draws (z1, z2) ~ q(z1|x) q(z2|z1)" if result.get("train_k", 1) > 1 else \
            "one (z1, z2) ~ q(z1|x) q(z2|z1)"
    of = [s for s, on in (("the noisy input", noisy), ("the k training z_i ~ q(z|x)" if iwae else draw,
                                                       variational)) if on]
    return {"k": result["k"], "latent_dim": result["latent_dim"], "rho": result["penalty"].get("rho"),
            "psnr_max": result.get("psnr_max") or 1.0, "at_mu": ", z = μ" if variational else "",
            "at_beta": " −L_k (the IWAE bound)" if iwae else f" at β={result['beta']:g}" if variational else "",
            "recon_of": f" of {', '.join(of)}" if of else "",
            "y": y, "given_y": "|y" if y else "", "of_y": " of log p(x|y)" if y else "",
            "unit": "nats" if likelihood["normalised"] else "grey-level Bernoulli CE†",
            "z": "z1,z2" if two_layers else "z", "z_decoded": "z1" if two_layers else "z",
            "of_z1": " of z1" if two_layers else "",
            "latent_dim_z2": (result.get("latent_dims") or [None, None])[-1],
            "kl_how": ", estimated at the sampled z" if two_layers or result.get("prior") == "vamp" else ""}


def _noise_label(name: str, result: dict) -> str:
    kind, params = (result["noise"]["kind"], result["noise"]) if name == "" else \
        (name, result["robustness_noise"][name])
    strength = f"σ={params['sigma']:g}" if kind == "gaussian" else f"p={params['p']:g}"
    return f"{'trained: ' if name == '' else ''}{kind} {strength}"


def _denoising_cell(values: dict, suffix: str) -> str:
    noisy, denoised = values[f"psnr_noisy{suffix}"], values[f"psnr_denoised{suffix}"]
    return f"{format_metric('psnr_noisy', noisy)} noisy → {format_metric('psnr_denoised', denoised)} denoised"


def format_table(result: dict) -> str:
    """The metrics of one run as a two-column table (denoising as noisy → denoised PSNR)."""
    values = result["metrics"]
    context = _label_context(result)
    rows = []
    for key, label in _ROWS:
        if key == "recon" and result["model"] == "sae":
            label = SAE_RECON
        if key in values:
            rows.append((label.format(**context), format_metric(key, values[key])))
        if key == "psnr":  # robustness right below the clean PSNR
            rows += [(f"PSNR under {_noise_label(name, result)} (dB)", _denoising_cell(values, f"_{name}" if name else ""))
                     for name in ("", *result["robustness_noise"]) if f"psnr_noisy{'_' + name if name else ''}" in values]
        if key == "rho_hat_mean" and "rho_hat_q50" in values:
            rows.append(("sparsity: ρ̂ quantiles 5/25/50/75/95%",
                         " / ".join(format_metric(f"rho_hat_q{q}", values[f"rho_hat_q{q}"])
                                    for q in ("05", "25", "50", "75", "95"))))
    head = (f"{result['run']}: {result['model']}, step {result['step']}, "
            f"{result['dataset']} {result['split']} split ({result['n']} examples)")
    body = [f"  {line}" for line in align_rows([list(row) for row in rows])]
    note = textwrap.wrap(result["likelihood"]["note"], 96, initial_indent="  † ", subsequent_indent="    ") \
        if "note" in result["likelihood"] else []
    note += [f"  {result['samples']}"] if "samples" in result else []
    if result["model"] == "cvae" and "probe_acc" in values:
        note.append(f"  {CVAE_PROBE_NOTE}")
    return "\n".join([head, *body, *note, f"  → {Path(result['run']) / 'eval' / result['name']}"])


_SWEEP_COLUMNS = (("psnr", "PSNR"), ("mse", "MSE"), ("recon", "recon"), ("neg_elbo", "−ELBO"),
                  ("nll_iw", "NLL (IW)"), ("active_units", "AU"), ("rho_hat_mean", "mean ρ̂"),
                  ("psnr_denoised_gaussian", "PSNR σ=.3"), ("probe_acc", "probe"),
                  ("codebook_usage", "usage"), ("perplexity", "perplexity"), ("fvu", "FVU"), ("l0", "L0"),
                  ("dead_latents", "dead"), ("recovered", "recovered"))


def format_sweep_table(results: list[dict], root: Path) -> str:
    """One row per job of a sweep, the main metrics side by side."""
    columns = [(key, title) for key, title in _SWEEP_COLUMNS if any(key in r["metrics"] for r in results)]
    rows = [["job", "model", *(title for _, title in columns)]]
    for r in results:
        job = Path(r["run"]).relative_to(root) if Path(r["run"]).is_relative_to(root) else Path(r["run"])
        rows.append([str(job) if str(job) != "." else Path(r["run"]).name, r["model"],
                     *(format_metric(key, r["metrics"][key]) if key in r["metrics"] else "—" for key, _ in columns)])
    lines = align_rows(rows, right=range(2, len(rows[0])))  # job and model left, the numbers right
    return "\n".join([f"{root}: {len(results)} runs", *lines])
