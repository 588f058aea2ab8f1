"""The report as text: the terminal table (fitted to its width), report.md and report.csv."""

import csv
import shutil
import textwrap
from pathlib import Path

from aectl.report.ranking import Report, param_value
from aectl.runs.tables import COLUMN_GAP, align_rows, column_width, format_metric, format_value

# The terminal table's metric columns, most telling first: as many as fit the terminal's width
# (report.md and report.csv hold all of them). nll_iw/neg_elbo replace log_px_iw/elbo; old
# run folders still carry the old names. val/l0 and val/fvu: a sparse autoencoder's frontier.
TERMINAL_METRICS = ("val/loss", "val/l0", "val/fvu", "val/recon", "val/kl", "val/psnr", "eval/nll_iw",
                    "eval/log_px_iw", "eval/neg_elbo", "eval/elbo", "val/active_units", "val/rho_hat_mean",
                    "test/loss", "eval/probe_acc", "train_time_s")
TERMINAL_WIDTH = (80, 120)  # the terminal table is as wide as the terminal, within these bounds
MAX_NAME = 32  # longer job names are cut in the middle in the terminal (report.md has them whole)


def table_rows(report: Report, metrics: list[str], mark: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table; best values are wrapped in `mark` (e.g. '**')."""
    header = ["job", "status", *report.params, *metrics, "note"]
    rows = []
    for i, job in enumerate(report.jobs):
        cells = [job.name, job.status, *(format_value(param_value(job, p)) for p in report.params)]
        for m in metrics:
            text = format_metric(m, job.metrics.get(m))
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
    return [metric, *(format_metric(metric, job.metrics.get(metric)) + ("*" if i in report.best.get(metric, ()) else "")
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
    lines += textwrap.wrap(which_weights(report), width)  # nothing for runs that do not say
    if any(c[0].startswith("eval/") for c in columns):
        lines += textwrap.wrap(_which_eval(report), width)
    notes = [(job.name, job.note) for job in report.jobs if job.note]
    if notes:
        lines.append("notes:")
        lines += [textwrap.fill(f"{name}: {note}", width, initial_indent="  ", subsequent_indent="    ",
                                break_long_words=True) for name, note in notes]
    return "\n".join(lines) + "\n"


def which_weights(report: Report) -> str:
    """Whose weights the train/val/test columns are (metrics.json's `weights`): the last ones,
    or best.pt's where early stopping ended the run; best.pt's own are best/* in report.csv."""
    kinds = {job.weights for job in report.jobs if job.weights}
    if not kinds:  # metrics.json of older versions does not say
        return ""
    if kinds == {"last"}:
        which = "the last weights of each run"
    elif kinds == {"best"}:
        which = "best.pt of each run (early stopping ended them)"
    else:
        which = "the last weights, or best.pt where early stopping ended the run (report.csv's weights column)"
    best = any(k.startswith("best/") for k in report.columns)
    return f"train/val/test columns: {which}" + ("; best.pt's where it differs: best/* in report.csv" if best else "")


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
             (f" {which_weights(report)}." if any(j.weights for j in report.jobs) else "") +
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
        writer.writerow(["job", "status", *report.params, *report.columns, "best", "note", "eval", "weights"])
        for i, job in enumerate(report.jobs):
            best = ";".join(m for m in report.columns if i in report.best[m])
            writer.writerow([job.name, job.status, *(_csv_value(param_value(job, p)) for p in report.params),
                             *(job.metrics.get(m, "") for m in report.columns), best, job.note, job.eval,
                             job.weights])
