"""Plain-text output: aligned columns, and colour only on a terminal."""

from __future__ import annotations

import io

from repro.tools.table import paint, render


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert paint("IDENTICAL", "green", io.StringIO()) == "IDENTICAL"  # a pipe or a file: plain text
    assert paint("IDENTICAL", "green", Tty()) == "\033[32mIDENTICAL\033[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    assert paint("IDENTICAL", "green", Tty()) == "IDENTICAL"


def test_columns_are_aligned():
    lines = render(["key", "value"], [("a", 1), ("longer.key", None)]).splitlines()
    assert [ln.index("1") if "1" in ln else ln.index("-", 12) for ln in lines[2:]] == [14, 14]
    assert lines[0].split() == ["key", "value"]
