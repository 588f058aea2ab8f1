"""Plain-text tables for the terminal, shared by `aectl eval` and `aectl report`.

No torch here: `aectl report` imports this and must stay light.
"""

import math
import unicodedata
from typing import Container, Iterable

COLUMN_GAP = "  "  # between two columns of every table


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: combining marks (the hat of ρ̂) take none."""
    return sum(not unicodedata.combining(c) for c in text)


def column_width(cells: Iterable[str]) -> int:
    return max(display_width(cell) for cell in cells)


def pad(text: str, width: int, right: bool = False) -> str:
    """`text` filled with spaces to `width` columns, on the left when right-aligned."""
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def align_rows(rows: list[list[str]], right: Container[int] = ()) -> list[str]:
    """Rows of cells → lines, every column as wide as its widest cell; the columns whose index is
    in `right` are right-aligned (numbers), the others left-aligned. No trailing spaces."""
    widths = [column_width(column) for column in zip(*rows)]
    return [COLUMN_GAP.join(pad(cell, w, i in right) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def format_value(value, digits: int = 4) -> str:
    """A table cell: a float to `digits` significant digits, None as blank, anything else as str."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


# Each metric's unit, by its name without a split prefix ("val/psnr" → "psnr"): it sets the
# decimals a metric prints with, the same in eval, report and training's final log lines.
DECIBELS = ("psnr", "val_psnr_mean_image")  # and every psnr_* (noisy, denoised, under each noise)
NATS = ("loss", "recon", "kl", "neg_elbo", "nll_iw", "elbo", "log_px_iw")
SHARES = ("codebook_usage", "batch_usage", "frac_within_2x", "probe_acc", "recovered")  # fractions in [0, 1]


def metric_unit(name: str) -> str:
    """'dB', 'nats', 'share' or '' (no fixed unit: significant digits) of the metric `name`."""
    metric = name.rsplit("/", 1)[-1]
    if metric in DECIBELS or metric.startswith("psnr_"):
        return "dB"
    if metric in NATS:
        return "nats"
    return "share" if metric in SHARES else ""


def format_metric(name: str, value) -> str:
    """Metric `name`'s value as every table and the final log lines print it: dB and nats to 2
    decimals (19.995 dB → 20.00, not 20), shares as a percentage to 1 decimal (1.0 → 100.0%),
    others to 4 significant digits; from 1e5 up, any of these to 5 significant digits (close
    runs still print differently, a diverged one stays readable)."""
    if not isinstance(value, float) or isinstance(value, bool) or not math.isfinite(value):
        return format_value(value)
    unit = metric_unit(name)
    if abs(value) >= 1e5 and unit != "share":  # summed nats of large images, a diverged run
        return format_value(value, 5)
    if unit in ("dB", "nats"):
        return f"{value:.2f}"
    if unit == "share":
        return f"{value:.1%}"
    return format_value(value)
