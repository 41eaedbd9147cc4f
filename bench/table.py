"""Printing benchmark results as aligned tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO


def print_table(title: str, rows: Sequence[dict[str, Any]], *, note: str = "", out: TextIO | None = None) -> None:
    """A Markdown table under `title`, then `note` (what the figures rest on), on `out` (stdout)."""
    out = out or sys.stdout
    print(f"\n## {title}\n", file=out)
    if not rows:
        print("(no rows)", file=out)
        return
    columns = list(rows[0])
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |", file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for r in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |", file=out)
    if note:
        print(f"\n{note}", file=out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)
