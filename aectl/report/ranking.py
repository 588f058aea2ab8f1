"""Which keys a set of jobs swept, which metrics they show, and which job is best at each."""

import math
from dataclasses import dataclass
from pathlib import Path

from aectl.config.errors import AectlError
from aectl.report.jobs import Job, read_jobs

# Metrics shown in the terminal and report.md, per split (report.csv holds every metric).
SHOWN = ("loss", "recon", "kl", "mse", "psnr", "active_units", "rho_hat_mean")
SHOWN += ("codebook_usage", "perplexity")  # VQ-VAE
SHOWN += ("l0", "fvu")  # sparse autoencoder: the two axes of its sparsity–fidelity frontier
# Name fragments that say which way a metric improves; metrics matching neither (kl, beta,
# rho_hat_mean) are trade-offs, not scores, and get no "best" mark.
HIGHER_IS_BETTER = ("psnr", "active_units", "elbo", "log_px", "acc", "auc", "ssim", "likelihood")
HIGHER_IS_BETTER += ("usage",)  # VQ-VAE codebook usage; its perplexity and terms are trade-offs, unranked
NO_DIRECTION = ("psnr_noisy",)  # the corrupted input's own PSNR: the same for every model
LOWER_IS_BETTER = ("loss", "recon", "mse", "nll", "error", "mae", "bpd", "time")
LOWER_IS_BETTER += ("fvu",)  # an SAE's L0 is a trade-off (the sparsity a run asked for), unranked


@dataclass
class Report:
    jobs: list[Job]
    params: list[str]  # swept override keys (values differ between jobs)
    shown: list[str]  # metric columns of the terminal table and report.md
    columns: list[str]  # every metric column (report.csv)
    best: dict[str, set[int]]  # metric → indices of the jobs holding its best value


def _direction(metric: str) -> int:
    """-1: lower is better, +1: higher is better, 0: no direction."""
    name = metric.rsplit("/", 1)[-1]
    if name.startswith("neg_"):  # neg_elbo: the negative of a higher-is-better score
        return -_direction(name[len("neg_"):])
    if any(f in name for f in NO_DIRECTION):
        return 0
    if any(f in name for f in HIGHER_IS_BETTER):
        return 1
    if any(f in name for f in LOWER_IS_BETTER):
        return -1
    return 0


def param_value(job: Job, key: str):
    """A swept key's value in a job: its override, else the group option or value its config
    holds (the default it ran with), so a job of another sweep is not shown blank."""
    if key in job.overrides:
        return job.overrides[key]
    if key in job.choices:
        return job.choices[key]
    value = job.config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if isinstance(value, dict) else value


def swept_params(jobs: list[Job]) -> list[str]:
    """Override keys whose values differ between jobs (all overrides when there is one job)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    if len(jobs) < 2:
        return keys
    return [k for k in keys if len({repr(param_value(job, k)) for job in jobs}) > 1]


def _metric_order(name: str) -> tuple:
    split, _, metric = name.rpartition("/")
    splits = ("train", "val", "test")
    top = split.split("/")[0]
    rank = splits.index(top) if top in splits else (4 if top == "eval" else 3)
    return (rank, split, SHOWN.index(metric) if metric in SHOWN else len(SHOWN), metric)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def objective_of(job: Job) -> str:
    """What a job's numbers are of: a conditional model's (cvae) −ELBO, NLL, reconstructions…
    are of p(x|y), given the label, the others' of p(x); the two are not ranked together."""
    kind = (job.config.get("model") or {}).get("kind") if isinstance(job.config, dict) else None
    return "p(x|y)" if kind == "cvae" else "p(x)"


def best_jobs(jobs: list[Job], metric: str) -> set[int]:
    """Indices of the ok jobs holding the best value of `metric` among the jobs with the same
    objective (`objective_of`; needs two such jobs to compare)."""
    direction = _direction(metric)
    if not direction:
        return set()
    best_of = set()
    for objective in {objective_of(j) for j in jobs}:
        scored = [(i, j.metrics[metric]) for i, j in enumerate(jobs)
                  if j.status == "ok" and finite(j.metrics.get(metric)) and objective_of(j) == objective]
        if len(scored) >= 2:
            best = (max if direction > 0 else min)(v for _, v in scored)
            best_of |= {i for i, v in scored if v == best}
    return best_of


def build_report(paths: list[Path]) -> Report:
    jobs = []
    for root in paths:
        jobs += read_jobs(root)
    if not jobs:
        raise AectlError(f"aectl report: no run folders (with .hydra/ or metrics.json) under "
                         f"{', '.join(map(str, paths))}")
    columns = sorted({m for j in jobs for m in j.metrics}, key=_metric_order)
    params = swept_params(jobs)
    # With β swept, the loss (recon + β·KL) is a different objective per job: not a score to rank.
    ranked = [m for m in columns if not (_sweeps_beta(params) and m.rsplit("/", 1)[-1] == "loss")]
    shown = [m for m in columns if m.startswith("eval/")
             or (m.split("/")[0] in ("val", "test") and m.split("/")[-1] in SHOWN)] + \
            [m for m in ("train_time_s",) if m in columns]
    best = {m: (best_within_objectives(jobs, m) if m.rsplit("/", 1)[-1] in OBJECTIVE_TERMS else best_jobs(jobs, m))
            if m in ranked else set() for m in columns}
    return Report(jobs, params, shown, columns, best)


# Metrics whose value is a term of the training objective: −ELBO for a VAE, −L_k for an IWAE
# (a bound that tightens with k), recon + λ·penalty for an AE, recon + the commitment (and,
# without EMA, codebook) terms for a VQ-VAE; only jobs with the same objective compare on them.
OBJECTIVE_TERMS = ("loss", "penalty")


def objective_key(job: Job) -> tuple:
    """What fixes a job's objective: the model family (with the IWAE's k, and a VQ-VAE's
    commitment weight and codebook update), likelihood and σ, the penalty with its weights, and β."""
    model, config = job.config.get("model") or {}, job.config
    kind = model.get("kind", "vae")
    if kind in ("iwae", "hvae"):  # −L_k (an hvae's k = 1: its ELBO)
        family = (kind, model.get("k", 1))
    elif kind == "vqvae":
        family = ("vqvae", model.get("commitment", 0.25), bool(model.get("ema", False)))
    else:
        family = (kind,) if kind in ("vae", "cvae") else ("ae",)
    penalty = tuple(sorted((k, repr(v)) for k, v in (config.get("penalty") or {}).items()))
    return family, model.get("likelihood"), model.get("sigma"), penalty, config.get("beta", 1.0)


def best_within_objectives(jobs: list[Job], metric: str) -> set[int]:
    """best_jobs of `metric` among the jobs of each objective (objective_key) separately."""
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(repr(objective_key(job)), []).append(i)
    return {members[i] for members in groups.values() for i in best_jobs([jobs[j] for j in members], metric)}


def _sweeps_beta(params: list[str]) -> bool:
    return any(p.rsplit(".", 1)[-1] == "beta" for p in params)
