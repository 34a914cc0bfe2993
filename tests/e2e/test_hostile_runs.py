"""Broken and hostile run directories on the kit's side (resume, record, checkpoints) and secrets:
one-line errors, nothing written through a planted link, nothing half-written left, no secret in any file."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import FIXTURE, run_fixture, run_module

pytestmark = pytest.mark.slow
KILL = {"REPRO_FAULT_KILL_AT_STEP": "7"}


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


def test_a_path_with_non_ascii_characters_resumes(tmp_path):
    run_dir = tmp_path / "rün-über_é"
    reference = run_fixture(tmp_path / "ref")
    # Hydra's grammar takes such a path quoted; the kit must keep it quoted when it points Hydra at the run
    quoted = "'" + str(run_dir) + "'"
    killed = run_module(
        [sys.executable, "-m", FIXTURE, f"hydra.run.dir={quoted}"], cwd=tmp_path, env=KILL
    )
    assert killed.returncode == -9, killed.stderr
    proc = run_module([sys.executable, "-m", FIXTURE, f"train.resume={quoted}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert (run_dir / "weights.pt").read_bytes() == reference.weights and manifest[
        "resume_exact"
    ] is True


def test_record_files_are_never_written_through_a_planted_link(tmp_path):
    run_dir = tmp_path / "run"
    run_fixture(run_dir, env=KILL, check=False)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    kept = (run_dir / "fingerprints.jsonl").read_text()
    (run_dir / "fingerprints.jsonl").unlink()
    os.symlink(outside, run_dir / "fingerprints.jsonl")
    out = run_fixture(run_dir, "train.resume=auto", check=False)
    assert out.proc.returncode == 2 and "Traceback" not in out.proc.stderr
    assert outside.read_text() == "keep me"
    assert "symbolic link" in out.proc.stderr
    assert kept  # the run had recorded steps before the link was planted


def test_stale_partial_files_are_removed_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_fixture(run_dir, env=KILL, check=False)
    stale = [
        run_dir / ".run.json.abc123.tmp",
        run_dir / "checkpoints" / ".step-000000010.ckpt.xyz.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    run_fixture(run_dir, "train.resume=auto")
    assert not any(p.exists() for p in stale)


def test_a_huge_junk_checkpoint_is_refused_without_reading_it(tmp_path):
    """A 2 GB sparse file named like the newest checkpoint: refused after its first bytes, the older one used."""
    run_dir = tmp_path / "run"
    run_fixture(run_dir, env=KILL, check=False)
    junk = run_dir / "checkpoints" / "step-000000006.ckpt"
    with open(junk, "wb") as f:
        f.truncate(2 << 30)
    out = run_fixture(run_dir, "train.resume=auto")
    assert "skipping checkpoint step-000000006.ckpt" in out.proc.stdout + out.proc.stderr
    assert [r["from_step"] for r in json.loads((run_dir / "run.json").read_text())["resumes"]] == [
        5
    ]
