"""``repro new``: start a project from this template (being written; see issue 8)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``repro new`` on the ``repro`` command's subparsers."""
    p = sub.add_parser("new", help="create a new project from this template")
    p.add_argument("dest")
    p.add_argument("--name", required=True)
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("repro new is not written yet")))
