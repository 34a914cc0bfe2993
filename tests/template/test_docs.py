"""The documentation stays true: the site builds with --strict, the README stays a landing page, and the loop
shown in docs/run.md is the example's loop, character for character."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_readme_is_a_landing_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert "python -m experiment.train" in "\n".join(lines) and "python -m pytest" in "\n".join(
        lines
    )


def test_the_loop_in_the_docs_is_the_examples_loop():
    loop = (REPO / "src" / "experiment" / "loop.py").read_text()
    body = loop[loop.index("def train(run: Run)") : loop.index("def audit_target")].rstrip()
    assert body in (REPO / "docs" / "run.md").read_text()


@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)
def test_the_docs_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    out = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "run" / "index.html").exists()
