"""Secrets never reach a run's files or its output: a secret given in a key the schema has (an API key, a
password in a URL) is redacted in every file of the run, and one added as an unknown key is refused
without echoing it. On the kit's fixture experiment and the classifier example, each run a ``python -m``
process. (A secret in the environment is left out of ``run.json``: tests/e2e/test_run_directory.py; a
tracking server's password: test_loggers.py.)"""

from __future__ import annotations

import pytest

from conftest import QUICK, run_fixture

pytestmark = pytest.mark.slow


def all_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_secret_given_in_any_form_is_in_no_file_of_the_run(tmp_path):
    run = run_fixture(
        tmp_path / "run",
        "train.max_steps=3",
        "service.api_key=sk-SECRET-123",
        "service.url=postgres://user:pw-SECRET-456@db/x",
    )
    data = all_bytes(run.dir)
    assert b"SECRET-123" not in data and b"pw-SECRET-456" not in data
    overrides = (run.dir / ".hydra" / "overrides.yaml").read_text()
    assert (
        "service.api_key=<redacted>" in overrides and "postgres://user:<redacted>@db/x" in overrides
    )


def test_a_secret_added_as_an_unknown_key_is_refused_and_never_echoed(run_train):
    """Keys are never added on the command line (the schema has them); the refusal hides the value."""
    run = run_train("r", *QUICK, "train.max_steps=2", "+logger.api_key=s3cr3t-value", check=False)
    assert run.proc.returncode == 2 and not run.dir.exists()
    assert "+logger.api_key=<redacted>: unknown key" in run.proc.stderr
    assert "s3cr3t-value" not in run.proc.stderr + run.proc.stdout
