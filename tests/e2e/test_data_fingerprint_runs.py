"""Data fingerprints in real runs (``python -m repro_fixture.corpus corpus=PATH``, which declares a folder
and a table): recorded in ``run.json``, the same in two processes, named by ``repro diff`` when one byte
differs, checked again on resume (a resume on changed data exits 2 naming the dataset), and a damaged
``data`` section is bad input, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_main, run_tool

pytestmark = pytest.mark.slow
ENTRY = "repro_fixture.corpus"
KILL = "REPRO_FAULT_KILL_AT_STEP"
#: The fixture's 36 steps are not needed to show what the data does to a run.
SHORT = "train.max_steps=12"


def corpus(folder: Path) -> Path:
    """A small dataset on disk: two files in a folder."""
    (folder / "shards").mkdir(parents=True)
    (folder / "shards" / "0.txt").write_bytes(b"the quick brown fox\n" * 50)
    (folder / "vocab.txt").write_bytes(b"the\nquick\nbrown\nfox\n")
    return folder


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[7] ^= 1
    path.write_bytes(bytes(data))


def run(run_dir: Path, data: Path, *overrides: str, **kwargs):
    return run_main(run_dir, f"corpus={data}", *overrides, module=ENTRY, **kwargs)


def one_error_line(proc) -> str:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def test_recorded_stable_across_processes_and_named_by_diff(tmp_path):
    data = corpus(tmp_path / "corpus")
    a = run(tmp_path / "a", data, SHORT)
    again = run(tmp_path / "again", data, SHORT)
    recorded = a.manifest["data"]
    assert set(recorded) == {"corpus", "table"}
    assert re.fullmatch(r"[0-9a-f]{64}", recorded["corpus"]["sha256"])
    assert recorded["corpus"]["what"] == "2 files, 1.0 kB"
    assert recorded["table"]["what"] == "array float32 (192, 6)"
    # Another process, the same data: the same fingerprints, and nothing for diff to name.
    assert again.manifest["data"] == recorded
    same = run_tool("diff", a.dir, again.dir, "--quiet", cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "data " not in same.stdout
    # One byte of one file changes: the config is the same, the data is not.
    flip_one_byte(data / "shards" / "0.txt")
    b = run(tmp_path / "b", data, SHORT)
    assert b.manifest["data"]["corpus"]["sha256"] != recorded["corpus"]["sha256"]
    assert b.manifest["data"]["table"] == recorded["table"]
    out = run_tool("diff", a.dir, b.dir, "--quiet", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    first = recorded["corpus"]["sha256"][:16]
    second = b.manifest["data"]["corpus"]["sha256"][:16]
    assert f"data 'corpus' differs: sha256 {first}... vs {second}..." in lines[2]
    assert "config: no differences" in lines
    report = json.loads(run_tool("diff", a.dir, b.dir, "--json", cwd=tmp_path).stdout)
    assert [d["name"] for d in report["data_diff"]] == ["corpus"]


def test_a_dataset_recorded_in_one_run_only_is_named(tmp_path):
    data = corpus(tmp_path / "corpus")
    a = run(tmp_path / "a", data, SHORT)
    b = tmp_path / "b"
    shutil.copytree(a.dir, b)
    manifest = json.loads((b / "run.json").read_text())
    del manifest["data"]["table"]
    (b / "run.json").write_text(json.dumps(manifest))
    out = run_tool("diff", a.dir, b, "--quiet", cwd=tmp_path)
    assert out.returncode == 1
    assert "data 'table' is recorded in A only (sha256 " in out.stdout


def test_a_resume_on_changed_data_is_refused_naming_the_dataset(tmp_path):
    data = corpus(tmp_path / "corpus")
    killed = run(tmp_path / "run", data, env={KILL: "8"}, check=False)
    assert killed.proc.returncode == -9
    recorded = killed.manifest["data"]["corpus"]["sha256"]
    flip_one_byte(data / "vocab.txt")
    refused = run(tmp_path / "run", data, "train.resume=auto", check=False)
    assert refused.proc.returncode == 2, refused.proc.stdout + refused.proc.stderr
    line = one_error_line(refused.proc)
    assert line.startswith("error: data 'corpus' changed under the resumed run"), line
    assert recorded[:16] in line and "put back the data the run started with" in line
    # The record still holds what the run started with; with the data put back, the resume goes on.
    assert killed.manifest["data"]["corpus"]["sha256"] == recorded
    flip_one_byte(data / "vocab.txt")
    resumed = run(tmp_path / "run", data, "train.resume=auto")
    assert resumed.manifest["status"] == "completed" and resumed.manifest["resume_exact"] is True


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """A dataset, a completed short run on it and a run killed at step 6 (never written into)."""
    tmp = tmp_path_factory.mktemp("data-runs")
    data = corpus(tmp / "corpus")
    done = run(tmp / "done", data, SHORT)
    killed = run(tmp / "killed", data, env={KILL: "6"}, check=False)
    assert killed.proc.returncode == -9
    return data, done.dir, killed.dir


def damaged_copy(run_dir: Path, to: Path, section) -> Path:
    shutil.copytree(run_dir, to)
    manifest = json.loads((to / "run.json").read_text())
    manifest["data"] = section
    (to / "run.json").write_text(json.dumps(manifest))
    return to


@pytest.mark.parametrize(
    "section, message",
    [
        ("not an object", "data is 'not an object'; expected an object of data fingerprints"),
    ],
)
def test_a_damaged_data_section_is_bad_input(short_runs, tmp_path, section, message):
    """One damaged shape end to end (each costs a resume and a diff); every shape the reader
    refuses is checked in tests/core/test_data_fingerprint.py."""
    data, done, killed = short_runs
    target = damaged_copy(killed, tmp_path / "killed", section)
    resumed = run(target, data, "train.resume=auto", check=False)
    assert resumed.proc.returncode == 2
    line = one_error_line(resumed.proc)
    assert line.startswith("error: ") and message in line, line
    # Refused before anything was written.
    assert json.loads((target / "run.json").read_text())["data"] == section
    other = damaged_copy(done, tmp_path / "done", section)
    out = run_tool("diff", done, other, "--quiet", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in one_error_line(out)


def test_differing_data_explains_a_divergence_as_a_config_key_does():
    from repro.tools.diff import DiffReport

    report = DiffReport("a", "b", explained_by_data=["corpus"], explained_by=["optimizer.lr"])
    assert report.explanation == (
        "the data differs ('corpus') and the configs differ in optimizer.lr; that explains the "
        "divergence (use --deep to localise anyway)"
    )
    assert DiffReport("a", "b").explanation is None
