"""Plain-text tables for the terminal, shared by `aectl eval` and `aectl report`.

No torch here: `aectl report` imports this and must stay light.
"""

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


def format_metric(value) -> str:
    """A metric as eval prints it: 4 significant digits; from 1e5 up (summed nats of large
    images) a fifth, so that close runs still print differently."""
    if isinstance(value, float) and not abs(value) < 1e5:
        return format_value(value, 5)
    return format_value(value)
