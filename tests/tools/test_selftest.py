"""`repro selftest`: this machine against the shipped reference bits, and what a difference reads like.

Two runs of the workload in all (a few seconds each): the shipped reference, and a tampered copy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_tool
from repro.tools.selftest import (
    PINS,
    REFERENCE_FILE,
    STAGES,
    SelftestError,
    build_key,
    compare,
    describe,
    load_reference,
    record_entry,
)


def selftest(*args):
    return run_tool("selftest", *args, cwd=Path.cwd(), timeout=300)


@pytest.fixture(scope="module")
def shipped():
    """`repro selftest --json` against the reference shipped in the kit."""
    out = selftest("--json")
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def this_build(shipped) -> dict:
    """The shipped entry this machine reproduces. The test skips where the kit ships no entry for
    this build, or where none of its entries was recorded on this CPU model and none matches:
    the pins do not make every CPU model agree (docs/portable.md), so a machine of a model nobody
    recorded is a measurement to add, not a failure of the kit."""
    _, data = shipped
    measured = data["measured"]
    entries = [e for e in load_reference() if build_key(e) == build_key(measured)]
    if not entries:
        pytest.skip(
            f"no shipped reference for {build_key(measured)}: run `repro selftest --record`"
        )
    matching = [e for e in entries if e["hashes"] == measured["hashes"]]
    here = [e for e in entries if _model(e.get("cpu", "")) == _model(measured["cpu"])]
    if not matching and not here:
        pytest.skip(
            f"no shipped reference recorded on {measured['cpu']} and none matches it (recorded on: "
            f"{', '.join(sorted({e.get('cpu', '?') for e in entries}))}): run `repro selftest --record`"
        )
    return (matching or here)[0]


def _model(cpu: str) -> str:
    """A CPU's name without its stepping: one model, whatever the stepping a VM reports."""
    return re.sub(r", stepping \d+", "", cpu)


def test_this_machine_reproduces_the_shipped_reference_bits(shipped):
    """Where the kit ships an entry recorded on this CPU model, this machine must reproduce it."""
    code, data = shipped
    entry = this_build(shipped)
    assert data["status"] == "match", data["differing"]
    assert code == 0 and data["first_difference"] is None and data["differing"] == []
    assert data["reference"]["hashes"] == entry["hashes"]


def test_the_workload_ran_under_the_portable_pins(shipped):
    measured = shipped[1]["measured"]
    assert measured["pins"] == PINS  # what the workload process saw
    assert measured["threads"] == 1 and measured["deterministic"] is True
    if measured["machine"] in ("x86_64", "AMD64"):
        assert measured["cpu_capability"] in ("AVX2", "DEFAULT")  # never AVX512 under the pin
    assert set(measured["hashes"]) == set(STAGES)


def test_a_tampered_reference_is_reported_at_the_first_stage_that_differs(shipped, tmp_path):
    entry = this_build(shipped)
    doc = json.loads(REFERENCE_FILE.read_text())
    # Only this machine's entry, tampered: another CPU's entry (other bits) would be the closer one.
    doc["entries"] = [e for e in doc["entries"] if e == entry]
    for e in doc["entries"]:
        if e == entry:
            digit = e["hashes"]["step1"][10]
            e["hashes"]["step1"] = (
                e["hashes"]["step1"][:10]
                + ("0" if digit != "0" else "1")
                + e["hashes"]["step1"][11:]
            )
            tampered = e["hashes"]["step1"]
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(doc))
    out = selftest("--reference", path)
    assert out.returncode == 1, out.stdout + out.stderr
    computed = shipped[1]["measured"]["hashes"]["step1"]
    assert "first stage that differs is 'step1' (the weights after step 1)" in out.stdout
    assert (
        f"recorded sha256 {tampered}" in out.stdout and f"computed sha256 {computed}" in out.stdout
    )
    assert (
        "data   same" in out.stdout and "init   same" in out.stdout and "final  same" in out.stdout
    )


def test_first_difference_is_the_earliest_stage_in_workload_order(shipped):
    measured = shipped[1]["measured"]
    entry = record_entry(measured)
    assert compare(measured, [entry]).status == "match"
    for changed in (["final"], ["init", "step1", "final"], ["data", "final"]):
        wrong = {
            **entry,
            "hashes": {s: ("f" * 64 if s in changed else h) for s, h in entry["hashes"].items()},
        }
        verdict = compare(measured, [wrong])
        assert (verdict.status, verdict.exit_code, verdict.first) == ("mismatch", 1, changed[0])
        assert list(verdict.differing) == changed
        first = verdict.to_dict()["first_difference"]
        assert first == {
            "stage": changed[0],
            "what": STAGES[changed[0]],
            "recorded": "f" * 64,
            "computed": measured["hashes"][changed[0]],
        }
    # Two entries for one build (two CPUs recorded it): any one that matches is a match.
    both = compare(measured, [{**wrong, "cpu": "Other CPU"}, entry])
    assert both.status == "match" and both.other_cpus == ("Other CPU",)
    assert "other bits were recorded for this build on Other CPU" in describe(both)
    assert compare(measured, [entry, dict(entry)]).other_cpus == ()


def test_no_reference_for_this_build_is_a_note_with_exit_0(shipped):
    measured = shipped[1]["measured"]
    other = {**record_entry(measured), "torch": "0.0.1+cpu"}
    verdict = compare(measured, [other])
    assert verdict.status == "no reference" and verdict.exit_code == 0
    text = describe(verdict)
    assert "no reference for this build" in text and "repro selftest --record" in text
    older = {
        **record_entry(measured),
        "workload": 0,
    }  # recorded with another workload: not compared
    assert compare(measured, [older]).status == "no reference"


def test_record_prints_an_entry_the_reference_file_accepts(shipped, tmp_path):
    entry = record_entry(shipped[1]["measured"])
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"entries": [json.loads(json.dumps(entry))]}))
    assert load_reference(path) == [entry]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"entries": [{"torch": "2"}]}',
        '{"entries": [{"torch": "2", "build": "cpu", "machine": "x", "workload": 1, "hashes": {"data": "xyz"}}]}',
    ],
)
def test_an_unusable_reference_file_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "ref.json"
    path.write_text(content)
    with pytest.raises(SelftestError, match=f"--reference {path}"):
        load_reference(path)
    from repro.tools.cli import main

    assert main(["selftest", "--reference", str(path)]) == 2  # refused before the workload runs
