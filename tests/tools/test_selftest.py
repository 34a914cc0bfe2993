"""`repro selftest`: this machine against the one shipped reference of its build, and the file's rules.

The reference is one set of bits per torch build that every x86-64 CPU with AVX2 must give under
the portable pins, whatever its vendor and model: the first test asserts it on whatever machine
runs the suite. A failure there on a CPU model nobody has run it on is a finding (which kernel
differs?), not a flaky test: docs/portable.md says how to look.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_tool
from repro.tools.selftest import (
    REFERENCE_FILE,
    SelftestError,
    build_key,
    compare,
    describe,
    load_reference,
    new_entry,
    record,
)
from repro.tools.selftest_workload import FLAGS, PINS, STAGES


def selftest(*args):
    return run_tool("selftest", *args, cwd=Path.cwd(), timeout=300)


@pytest.fixture(scope="module")
def shipped():
    """`repro selftest --json` against the reference shipped in the kit."""
    out = selftest("--json")
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def this_build(shipped) -> dict:
    """The shipped reference for this machine's build (skips where the kit ships none: another
    torch version or build is a reference to record, not a failure)."""
    measured = shipped[1]["measured"]
    entries = [e for e in load_reference() if build_key(e) == build_key(measured)]
    if not entries:
        pytest.skip(
            f"no shipped reference for {build_key(measured)}: run `repro selftest --record`"
        )
    (entry,) = entries
    return entry


def test_this_machine_reproduces_the_one_reference_of_its_build(shipped):
    """Any CPU model, any vendor: the bits of the single reference, or a named first difference."""
    code, data = shipped
    entry = this_build(shipped)
    measured = data["measured"]
    assert data["status"] == "match", (
        f"{measured['cpu']} ({measured['vendor']}) gives other bits than the reference confirmed on "
        f"{[c['cpu'] for c in entry['confirmed']]}: first difference {data['first_difference']}. "
        "See docs/portable.md, 'When the selftest differs'."
    )
    assert code == 0 and data["first_difference"] is None and data["differing"] == []
    assert data["reference"]["hashes"] == entry["hashes"]


def test_the_workload_ran_under_the_portable_pins(shipped):
    measured = shipped[1]["measured"]
    # what the workload process saw and read back
    assert measured["pins"] == PINS and measured["flags"] == FLAGS
    assert measured["threads"] == 1 and measured["deterministic"] is True
    if "avx2" in measured["features"]:
        assert measured["cpu_capability"] == "AVX2"
    assert set(measured["hashes"]) == set(STAGES)


def _tamper(hexdigest: str) -> str:
    return hexdigest[:10] + ("0" if hexdigest[10] != "0" else "1") + hexdigest[11:]


def test_a_tampered_reference_is_reported_at_the_first_stage_that_differs(shipped, tmp_path):
    measured = shipped[1]["measured"]
    # a copy: the measured hashes stay as computed
    entry = json.loads(json.dumps(new_entry(measured)))
    entry["hashes"]["step1"] = tampered = _tamper(entry["hashes"]["step1"])
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"entries": [entry]}))
    before = path.read_text()
    out = selftest("--reference", path, "--record")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "first stage that differs is 'step1' (the weights after step 1)" in out.stdout
    assert f"recorded sha256 {tampered}" in out.stdout
    assert f"computed sha256 {measured['hashes']['step1']}" in out.stdout
    for stage in ("data", "init", "final", "eval"):
        assert f"{stage:<6} same" in out.stdout
    # --record refuses a second set of bits for a build, and leaves the file alone
    assert "not recorded" in out.stderr and path.read_text() == before


def test_first_difference_is_the_earliest_stage_in_workload_order(shipped):
    measured = shipped[1]["measured"]
    entry = new_entry(measured)
    assert compare(measured, [entry]).status == "match"
    for changed in (["final"], ["init", "step1", "final"], ["data", "eval"]):
        wrong = {
            **entry,
            "hashes": {s: ("f" * 64 if s in changed else h) for s, h in entry["hashes"].items()},
        }
        verdict = compare(measured, [wrong])
        assert (verdict.status, verdict.exit_code, verdict.first) == ("mismatch", 1, changed[0])
        assert list(verdict.differing) == changed
        assert verdict.to_dict()["first_difference"] == {
            "stage": changed[0],
            "what": STAGES[changed[0]],
            "recorded": "f" * 64,
            "computed": measured["hashes"][changed[0]],
        }


def test_no_reference_for_this_build_is_a_note_with_exit_0(shipped):
    measured = shipped[1]["measured"]
    verdict = compare(measured, [{**new_entry(measured), "torch": "0.0.1+cpu"}])
    assert verdict.status == "no reference" and verdict.exit_code == 0
    text = describe(verdict)
    assert "no reference for this build" in text and "repro selftest --record" in text
    # recorded with another workload version: not compared
    assert compare(measured, [{**new_entry(measured), "workload": 0}]).status == "no reference"


def test_record_adds_a_reference_then_confirmations_one_per_cpu_model(shipped, tmp_path):
    measured = shipped[1]["measured"]
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"entries": []}))
    assert "new reference" in record(compare(measured, load_reference(path)), path)
    (entry,) = load_reference(path)
    assert entry["hashes"] == measured["hashes"] and entry["workload"] == measured["workload"]
    assert [c["cpu"] for c in entry["confirmed"]] == [measured["cpu"]]
    # the same model again, even with another stepping (VMs report various): nothing to add
    again = {**measured, "cpu": re.sub(r"stepping \d+", "stepping 99", measured["cpu"])}
    same_model = compare(again, load_reference(path))
    assert same_model.confirmed_here and "unchanged" in record(same_model, path)
    # another model with the same bits: one more confirmation, still one reference
    other = {
        **measured,
        "cpu": "Some Other CPU (family 6, model 1, stepping 1)",
        "vendor": "GenuineIntel",
    }
    verdict = compare(other, load_reference(path))
    assert verdict.status == "match" and not verdict.confirmed_here
    assert "not among the confirmations" in describe(verdict)
    assert "added Some Other CPU" in record(verdict, path)
    (entry,) = load_reference(path)
    assert [c["vendor"] for c in entry["confirmed"]] == [measured["vendor"], "GenuineIntel"]
    # other bits: refused, the file unchanged
    before = path.read_text()
    odd = {**other, "hashes": {**other["hashes"], "final": "0" * 64}}
    with pytest.raises(SelftestError, match="not recorded"):
        record(compare(odd, load_reference(path)), path)
    assert path.read_text() == before


def test_the_shipped_file_holds_one_reference_per_build_each_confirmed():
    entries = load_reference(REFERENCE_FILE)
    assert entries and all(e["confirmed"] for e in entries)
    assert len({build_key(e) for e in entries}) == len(entries)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"entries": [{"torch": "2"}]}',
        '{"entries": [{"torch": "2", "build": "cpu", "machine": "x", "workload": 1, "hashes": {"data": "xyz"}}]}',
        "DUPLICATE",
        "NO-CONFIRMED",
    ],
)
def test_an_unusable_reference_file_is_one_line_naming_it(tmp_path, content):
    entry = {
        "torch": "2",
        "build": "cpu",
        "machine": "x",
        "workload": 1,
        "hashes": dict.fromkeys(STAGES, "a" * 64),
        "confirmed": [{"cpu": "c"}],
    }
    if content == "DUPLICATE":
        content = json.dumps({"entries": [entry, entry]})
    elif content == "NO-CONFIRMED":
        content = json.dumps({"entries": [{**entry, "confirmed": "c"}]})
    path = tmp_path / "ref.json"
    path.write_text(content)
    with pytest.raises(SelftestError, match=f"--reference {path}"):
        load_reference(path)
    from repro.tools.cli import main

    # refused before the workload runs
    assert main(["selftest", "--reference", str(path)]) == 2


def test_record_refuses_bits_computed_without_the_pins(shipped, tmp_path):
    measured = {**shipped[1]["measured"], "cpu_capability": "DEFAULT", "threads": 2}
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"entries": []}))
    with pytest.raises(SelftestError, match=r"did not run under the portable pins \(threads=2"):
        record(compare(measured, load_reference(path)), path)
    assert json.loads(path.read_text()) == {"entries": []}
