"""Plain-text output for the command-line tools: aligned tables, colour only on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

_CODES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set."""
    return hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ


def paint(text: str, colour: str, stream: TextIO = sys.stdout) -> str:
    return f"\033[{_CODES[colour]}m{text}\033[0m" if use_colour(stream) else text


def short(value: Any, width: int = 60) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Rows as aligned columns under a header line."""
    cells = [[str(h) for h in headers]] + [[short(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]
    lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_diff(title: str, rows: list[tuple[str, Any, Any]], left: str, right: str) -> None:
    """Print ``title`` and a table of (key, left value, right value) rows, or that there are none."""
    if not rows:
        print(f"{title}: no differences")
        return
    print(f"{title}: {len(rows)} difference{'s' if len(rows) != 1 else ''}")
    print(render(["key", left, right], rows))
