"""`aectl report`: compare the runs of one or more sweeps in one table and a few plots.

Reads only what runs leave on disk (.hydra/overrides.yaml, .hydra/config.yaml, metrics.json,
eval/<name>/metrics.json, error.txt, interrupted.txt, a sweep's multirun.yaml), so it works on single
runs (outputs/) and on finished, failed, interrupted and still-running sweeps alike. It imports
Hydra only to expand the job list of a multirun.yaml, matplotlib only to draw, and never torch.
"""

import argparse
import csv
import glob
import itertools
import json
import math
import os
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from aectl.errors import AectlError
from aectl.runfolder import CHECKPOINTS, INTERRUPTED, eval_results, has_checkpoint
from aectl.tables import COLUMN_GAP, align_rows, column_width, format_value

# Metrics shown in the terminal and report.md, per split (report.csv holds every metric).
SHOWN = ("loss", "recon", "kl", "mse", "psnr", "active_units", "rho_hat_mean")
# Name fragments that say which way a metric improves; metrics matching neither (kl, beta,
# rho_hat_mean) are trade-offs, not scores, and get no "best" mark.
HIGHER_IS_BETTER = ("psnr", "active_units", "elbo", "log_px", "acc", "auc", "ssim", "likelihood")
NO_DIRECTION = ("psnr_noisy",)  # the corrupted input's own PSNR: the same for every model
LOWER_IS_BETTER = ("loss", "recon", "mse", "nll", "error", "mae", "bpd", "time")
# The terminal table's metric columns, most telling first: as many as fit the terminal's width
# (report.md and report.csv hold all of them). nll_iw/neg_elbo replace log_px_iw/elbo; old
# run folders still carry the old names.
TERMINAL_METRICS = ("val/loss", "val/recon", "val/kl", "val/psnr", "eval/nll_iw", "eval/log_px_iw",
                    "eval/neg_elbo", "eval/elbo", "val/active_units", "val/rho_hat_mean", "test/loss",
                    "eval/probe_acc", "train_time_s")
TERMINAL_WIDTH = (80, 120)  # the terminal table is as wide as the terminal, within these bounds
MAX_NAME = 32  # longer job names are cut in the middle in the terminal (report.md has them whole)
# A job without metrics.json whose files changed this recently is taken to be still running.
RUNNING_WINDOW_S = 15 * 60
SKIP_DIRS = (CHECKPOINTS, "eval")
USAGE = "aectl report <sweep folder or glob> [more folders or globs] [--out DIR]"


@dataclass
class Job:
    """One run folder of a sweep, as read from disk."""

    path: Path
    status: str  # ok | failed | interrupted | running | incomplete | not started
    note: str = ""  # why a job is not ok
    overrides: dict = field(default_factory=dict)  # key → value, from .hydra/overrides.yaml
    config: dict = field(default_factory=dict)  # the resolved config, from .hydra/config.yaml
    metrics: dict = field(default_factory=dict)  # flat "val/loss" → value
    num: int = 0  # Hydra's job number: the sweep's own order
    name: str = ""  # folder relative to the report folder
    choices: dict = field(default_factory=dict)  # config group → option (model: vae), from .hydra/hydra.yaml
    eval: str = ""  # the eval whose metrics are the eval/* columns (its folder under <run>/eval/)


@dataclass
class Report:
    jobs: list[Job]
    params: list[str]  # swept override keys (values differ between jobs)
    shown: list[str]  # metric columns of the terminal table and report.md
    columns: list[str]  # every metric column (report.csv)
    best: dict[str, set[int]]  # metric → indices of the jobs holding its best value


# ---------------------------------------------------------------- reading run folders


def _is_job(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / "metrics.json").is_file()


def _subfolders(path: Path) -> list[Path]:
    return [c for c in sorted(path.iterdir())
            if c.is_dir() and not c.name.startswith(".") and c.name not in SKIP_DIRS]


def find_jobs(root: Path) -> list[Path]:
    """Run folders at or below `root` (multirun/<date>/<time>/<job>/, outputs/<date>/<time>/),
    not looking inside runs."""
    if _is_job(root):
        return [root]
    return [job for child in _subfolders(root) for job in find_jobs(child)]


def find_sweeps(root: Path) -> list[Path]:
    """Sweep folders (holding Hydra's multirun.yaml) at or below `root`."""
    if _is_job(root):
        return []
    here = [root] if (root / "multirun.yaml").is_file() else []
    return here + [sweep for child in _subfolders(root) for sweep in find_sweeps(child)]


def _yaml(path: Path):
    import yaml

    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, OSError):
        return None


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def parse_overrides(lines: list[str]) -> dict:
    """['model.latent_dim=8', '+x=a'] → {'model.latent_dim': 8, 'x': 'a'} with YAML-typed values."""
    import yaml

    parsed = {}
    for line in lines or []:
        if "=" not in line or line.startswith("~"):
            continue
        key, value = line.split("=", 1)
        try:
            parsed[key.lstrip("+")] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed[key.lstrip("+")] = value
    return parsed


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested numeric leaves → {'val/loss': 1.0, ...}; lists and strings are left out."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def _newest_mtime(path: Path) -> float:
    files = [p for p in (*path.iterdir(), *(path / CHECKPOINTS).glob("*")) if p.is_file()]
    return max((p.stat().st_mtime for p in files), default=path.stat().st_mtime)


def _first_line(path: Path, default: str) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[0] if lines else default


def job_status(path: Path) -> tuple[str, str]:
    """ok (metrics.json written) | failed (error.txt recorded) | interrupted (stopped by a signal
    or Ctrl-C: the CLI left interrupted.txt) | running (files changed lately) | incomplete
    (stopped without a word: killed, out of memory)."""
    if (path / "metrics.json").is_file():
        return "ok", ""
    if (path / "error.txt").is_file():
        return "failed", _first_line(path / "error.txt", "failed")
    resumable = has_checkpoint(path)
    if (path / INTERRUPTED).is_file():
        return "interrupted", _first_line(path / INTERRUPTED, "interrupted") if resumable else \
            "interrupted before its first checkpoint"
    if time.time() - _newest_mtime(path) < RUNNING_WINDOW_S:
        return "running", "no metrics.json yet"
    return "incomplete", "stopped without metrics.json" + (" (checkpoints/last.pt can resume it)" if resumable else "")


def _job_num(hydra_cfg: dict) -> int:
    """Hydra's job number (its order in the sweep); a single run has none ('???')."""
    num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
    return num if isinstance(num, int) else int(num) if isinstance(num, str) and num.isdigit() else 0


def read_job(path: Path) -> Job:
    status, note = job_status(path)
    hydra_cfg = _yaml(path / ".hydra" / "hydra.yaml") or {}
    job = Job(path=path, status=status, note=note,
              overrides=parse_overrides(_yaml(path / ".hydra" / "overrides.yaml") or []),
              config=_yaml(path / ".hydra" / "config.yaml") or {}, num=_job_num(hydra_cfg),
              choices=_choices(hydra_cfg))
    metrics = _json(path / "metrics.json")
    if metrics is None and status == "ok":
        job.status, job.note = "failed", "metrics.json is unreadable"
    job.metrics = flatten(metrics or {})
    job.eval, evaluation = _eval_result(path)
    if evaluation:  # its metrics only: the rest of the file records the settings of the eval
        job.metrics.update(flatten(evaluation.get("metrics") or {}, "eval/"))
    return job


def _eval_result(path: Path) -> tuple[str, dict | None]:
    """The eval a job's eval/* columns show: its newest eval/<name>/metrics.json (aectl eval keeps
    one per checkpoint, split and k), else the eval/metrics.json of older versions."""
    for file in reversed(eval_results(path)):
        if (result := _json(file)) is not None:
            return file.parent.name, result
    result = _json(path / "eval" / "metrics.json")
    return ("eval" if result is not None else ""), result


def _choices(hydra_cfg: dict) -> dict:
    """The option chosen for each config group (model: vae), from Hydra's record of the run."""
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return {k: v for k, v in choices.items() if not k.startswith("hydra/")}


# ---------------------------------------------------------------- jobs a sweep listed


def listed_jobs(sweep: Path) -> list[list[str]]:
    """The overrides of every job the sweep in multirun.yaml lists, in Hydra's job order (its
    basic sweeper: the product of the swept values). Empty when the listing cannot be expanded
    (another sweeper, a glob() sweep): then only the jobs on disk are known."""
    hydra_cfg = (_yaml(sweep / "multirun.yaml") or {}).get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []
    lines = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    lines += list((hydra_cfg.get("overrides") or {}).get("task") or [])
    try:  # Hydra's own parser: the sweep syntax (a,b / range() / choice() / quoting) exactly
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(lines)
        values = {}
        for o in parsed:
            key = o.get_key_element()
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() \
                else [f"{key}={o.get_value_element_as_str()}"]
    except Exception:  # noqa: BLE001  any sweep Hydra itself could not expand without its config loader
        return []
    return [list(combo) for combo in itertools.product(*values.values())]


def _matches(job: Job, listed: dict) -> bool:
    return all(k in job.overrides and job.overrides[k] == v for k, v in listed.items())


def _job_folder_name(sweep: Path, overrides: list[str], num: int) -> str:
    """The folder Hydra would have given the job (hydra.sweep.subdir), to name a job it never started."""
    hydra_cfg = (_yaml(sweep / "multirun.yaml") or {}).get("hydra") or {}
    if "hydra.job.num" in str((hydra_cfg.get("sweep") or {}).get("subdir", "")):
        return str(num)
    dirname = ((hydra_cfg.get("job") or {}).get("config") or {}).get("override_dirname") or {}
    exclude = set(dirname.get("exclude_keys") or [])
    kept = sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+") not in exclude)
    return dirname.get("item_sep", ",").join(kept)


def never_started(sweep: Path, found: list[Job]) -> list[Job]:
    """The jobs multirun.yaml lists that have no folder: the sweep stopped (Ctrl-C, a failed
    launcher) before it reached them."""
    mine = [j for j in found if sweep in j.path.parents]
    config = {k: v for k, v in (_yaml(sweep / "multirun.yaml") or {}).items() if k != "hydra"}
    missing = []
    for num, overrides in enumerate(listed_jobs(sweep)):
        parsed = parse_overrides(overrides)
        if not any(_matches(j, parsed) for j in mine):
            missing.append(Job(path=sweep / _job_folder_name(sweep, overrides, num), status="not started",
                               note="the sweep stopped before this job started", overrides=parsed,
                               config=config, num=num))
    return missing


def read_jobs(root: Path) -> list[Job]:
    """Every job at or below `root`, those a sweep listed but never started included, in each
    sweep's own order."""
    jobs = [read_job(p) for p in find_jobs(root)]
    for sweep in find_sweeps(root):
        jobs += never_started(sweep, jobs)
    group = lambda j: str(next((s for s in j.path.parents if (s / "multirun.yaml").is_file()),  # noqa: E731
                               j.path.parent))
    return sorted(jobs, key=lambda j: (group(j), j.num, str(j.path)))


# ---------------------------------------------------------------- the table


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


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def best_jobs(jobs: list[Job], metric: str) -> set[int]:
    """Indices of the ok jobs holding the best value of `metric` (needs two jobs to compare)."""
    direction = _direction(metric)
    scored = [(i, j.metrics[metric]) for i, j in enumerate(jobs)
              if j.status == "ok" and _finite(j.metrics.get(metric))]
    if not direction or len(scored) < 2:
        return set()
    best = (max if direction > 0 else min)(v for _, v in scored)
    return {i for i, v in scored if v == best}


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
    return Report(jobs, params, shown, columns, {m: best_jobs(jobs, m) if m in ranked else set() for m in columns})


def _sweeps_beta(params: list[str]) -> bool:
    return any(p.rsplit(".", 1)[-1] == "beta" for p in params)


def table_rows(report: Report, metrics: list[str], mark: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table; best values are wrapped in `mark` (e.g. '**')."""
    header = ["job", "status", *report.params, *metrics, "note"]
    rows = []
    for i, job in enumerate(report.jobs):
        cells = [job.name, job.status, *(format_value(param_value(job, p)) for p in report.params)]
        for m in metrics:
            text = format_value(job.metrics.get(m))
            cells.append(f"{mark}{text}{mark}" if i in report.best.get(m, ()) else text)
        rows.append([*cells, job.note])
    return header, rows


def terminal_width() -> int:
    """The terminal's width (COLUMNS when output is not a terminal), kept within TERMINAL_WIDTH."""
    low, high = TERMINAL_WIDTH
    return min(max(shutil.get_terminal_size((100, 24)).columns, low), high)


def _shorten(text: str, width: int) -> str:
    """`text` cut in the middle to `width` characters: both ends of a job's path stay readable."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _text_column(report: Report, metric: str) -> list[str]:
    """Header and cells of one metric column; a trailing * marks the best value."""
    return [metric, *(format_value(job.metrics.get(metric)) + ("*" if i in report.best.get(metric, ()) else "")
                      for i, job in enumerate(report.jobs))]


def terminal_columns(report: Report, width: int) -> tuple[list[list[str]], int]:
    """The job and status columns, the swept keys, then metric columns in TERMINAL_METRICS
    order (then the other shown metrics), each as long as the table stays within `width`; and
    how many columns were left out. The first metric is kept even if a key must go for it."""
    columns = [["job", *(_shorten(j.name, MAX_NAME) for j in report.jobs)], ["status", *(j.status for j in report.jobs)]]
    ranked = [m for m in TERMINAL_METRICS if m in report.columns] + \
             [m for m in report.shown if m not in TERMINAL_METRICS]
    candidates = [[p, *(format_value(param_value(j, p)) for j in report.jobs)] for p in report.params]
    candidates += [_text_column(report, m) for m in ranked]
    gap = len(COLUMN_GAP)
    used = sum(map(column_width, columns)) + gap
    reserve = column_width(candidates[len(report.params)]) + gap if ranked else 0
    for i, column in enumerate(candidates):
        needed = column_width(column) + gap + (reserve if i < len(report.params) else 0)
        if used + needed <= width:
            columns.append(column)
            used += column_width(column) + gap
    return columns, len(report.params) + len(report.columns) - (len(columns) - 2)


def format_text(report: Report, width: int | None = None) -> str:
    """The terminal table, at most `width` columns wide (default: the terminal's), then the
    notes of the jobs that are not ok; report.md and report.csv hold every column."""
    width = width or terminal_width()
    columns, hidden = terminal_columns(report, width)
    lines = align_rows([list(row) for row in zip(*columns)])
    lines.append("* best of the finished jobs" + (f"; {hidden} more columns in report.md and report.csv"
                                                 if hidden > 0 else ""))
    if any(c[0].startswith("eval/") for c in columns):
        lines += textwrap.wrap(_which_eval(report), width)
    notes = [(job.name, job.note) for job in report.jobs if job.note]
    if notes:
        lines.append("notes:")
        lines += [textwrap.fill(f"{name}: {note}", width, initial_indent="  ", subsequent_indent="    ",
                                break_long_words=True) for name, note in notes]
    return "\n".join(lines) + "\n"


def _which_eval(report: Report) -> str:
    names = sorted({job.eval for job in report.jobs if job.eval})
    if len(names) == 1:
        return f"eval/* columns: each job's eval/{names[0]}/"
    return f"eval/* columns: each job's newest eval ({', '.join(names)}; per job in report.csv)"


def format_markdown(report: Report, images: list[Path]) -> str:
    header, rows = table_rows(report, report.shown, "**")
    escape = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["# Sweep report", "",
             f"{len(report.jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in _status_counts(report).items()) + ".",
             "Best value of each metric in **bold**; every metric is in report.csv." +
             (f" {_which_eval(report)}." if any(j.eval for j in report.jobs) else ""), "",
             "| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    best = [(m, report.jobs[min(ix)].name) for m, ix in report.best.items() if ix and m in report.shown]
    if best:
        lines += ["", "## Best job per metric", ""] + [f"- `{m}`: {name}" for m, name in best]
    if images:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def _status_counts(report: Report) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in report.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    return counts


def _csv_value(value) -> str:
    return "" if value is None else value


def write_csv(report: Report, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", *report.params, *report.columns, "best", "note", "eval"])
        for i, job in enumerate(report.jobs):
            best = ";".join(m for m in report.columns if i in report.best[m])
            writer.writerow([job.name, job.status, *(_csv_value(param_value(job, p)) for p in report.params),
                             *(job.metrics.get(m, "") for m in report.columns), best, job.note, job.eval])


# ---------------------------------------------------------------- plots


def numeric_params(report: Report) -> list[str]:
    """Swept keys with a number in every finished job and at least two distinct values."""
    ok = [j for j in report.jobs if j.status == "ok"]
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return [p for p in report.params
            if ok and all(numeric(param_value(j, p)) for j in ok) and len({param_value(j, p) for j in ok}) > 1]


def log_scale(values: list[float]) -> bool:
    """A log x-axis when positive values span two decades or more (K = 2..512, lr = 1e-4..1e-2)."""
    return min(values) > 0 and max(values) / min(values) >= 100


def _label(job: Job, keys: list[str]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(param_value(job, k))}" for k in keys) or job.name


def line_groups(report: Report, param: str) -> dict[str, list[Job]]:
    """The finished jobs by the values of the other swept keys: one plotted line (and legend
    entry, e.g. "beta=0.5") each; a key a job did not override shows the value it ran with."""
    others = [p for p in report.params if p != param]
    groups: dict[str, list[Job]] = {}
    for job in (j for j in report.jobs if j.status == "ok"):
        groups.setdefault(_label(job, others) if others else "", []).append(job)
    return groups


def plot_param(report: Report, param: str, out: Path) -> Path:
    """One panel per metric against `param`; one line per combination of the other swept keys."""
    import matplotlib.pyplot as plt

    ok = [j for j in report.jobs if j.status == "ok"]
    metrics = [m for m in report.shown if any(_finite(j.metrics.get(m)) for j in ok)]
    others = [p for p in report.params if p != param]
    groups = line_groups(report, param)
    log_x = log_scale([param_value(j, param) for j in ok])
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for label, jobs in groups.items():
            points = sorted((param_value(j, param), j.metrics[metric]) for j in jobs if _finite(j.metrics.get(metric)))
            if points:
                ax.plot(*zip(*points), marker="o", label=label or None)
        ax.set(title=metric, xlabel=param, xscale="log" if log_x else "linear")
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    path = out / f"metrics_vs_{param.replace('/', '_')}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rate_distortion(report: Report, out: Path) -> Path | None:
    """VAE jobs in the rate–distortion plane: val KL (rate) against val reconstruction
    (distortion), both in nats per example, one labelled point per job."""
    import matplotlib.pyplot as plt

    vaes = [j for j in report.jobs if j.status == "ok" and (j.config.get("model") or {}).get("kind") == "vae"
            and _finite(j.metrics.get("val/kl")) and _finite(j.metrics.get("val/recon"))]
    if not vaes:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter([j.metrics["val/kl"] for j in vaes], [j.metrics["val/recon"] for j in vaes])
    for job in vaes:
        ax.annotate(_label(job, report.params), (job.metrics["val/kl"], job.metrics["val/recon"]),
                    textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set(xlabel="rate: val KL(q(z|x) ‖ p(z)) [nats]", ylabel="distortion: val reconstruction [nats]",
           title="rate–distortion")
    ax.margins(x=0.3, y=0.1)  # room for the labels of the outermost points
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "rate_distortion.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_all(report: Report, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    images = [plot_param(report, p, out) for p in numeric_params(report)]
    rd = plot_rate_distortion(report, out)
    return images + ([rd] if rd else [])


# ---------------------------------------------------------------- command line


def expand(patterns: list[str]) -> list[Path]:
    """Folders and globs → existing folders, in the order given."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern))) if glob.has_magic(pattern) else [pattern]
        folders = [Path(m) for m in matches if Path(m).is_dir()]
        if not folders:
            raise AectlError(f"aectl report: {pattern}: no such folder")
        paths += [p for p in folders if p not in paths]
    return paths


def report(patterns: list[str], out: str | None = None) -> Report:
    """Build the report of the sweeps matching `patterns`; write report.md, report.csv and the
    plots into `out` (default: the sweep folder, or the folder holding all the given ones)."""
    paths = expand(patterns)
    out_dir = Path(out) if out else Path(os.path.commonpath([p.resolve() for p in paths]))
    result = build_report(paths)
    for job in result.jobs:
        job.name = os.path.relpath(job.path.resolve(), out_dir.resolve()) if job.path.resolve() != out_dir.resolve() \
            else job.path.name
    try:
        images = write_files(result, out_dir)
    except OSError as err:
        where = f"--out={out}" if out else str(out_dir)
        raise AectlError(f"aectl report: {where}: cannot write the report there ({err.strerror or err}); "
                         f"choose a folder you can write to{'' if out else ' with --out DIR'}") from None
    print(format_text(result), end="")
    print(f"wrote {out_dir / 'report.md'}, report.csv and {len(images)} plot(s) in {out_dir}")
    return result


def write_files(report: Report, out_dir: Path) -> list[Path]:
    """report.csv, the plots and report.md into `out_dir` (created if missing); the plots' paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(report, out_dir / "report.csv")
    images = plot_all(report, out_dir)
    (out_dir / "report.md").write_text(format_markdown(report, images))
    return images


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aectl report", usage=USAGE,
                                     description="Compare the runs of one or more sweeps: a table "
                                                 "(terminal, report.md, report.csv) and PNG plots.")
    parser.add_argument("folders", nargs="+", help="multirun folders, run folders or globs")
    parser.add_argument("--out", help="where to write the report (default: the sweep folder)")
    args = parser.parse_args(argv)
    try:
        report(args.folders, args.out)
    except AectlError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0
