"""``repro selftest``: does this machine give the reference bits of its torch build?

A fixed workload (``selftest_workload.py``: convolutions, batch norm, pooling, linear layers, an
embedding, layer norm, causal attention, dropout and AdamW) runs in a fresh Python process under
the portable pins (``PINS`` and ``FLAGS``: AVX2 kernels for ATen, MKL's COMPATIBLE branch, no
oneDNN or NNPACK, one thread, deterministic algorithms, ``PYTHONHASHSEED=0``). Each stage's
tensors are hashed and compared with ``selftest_reference.json``, which holds ONE reference per
workload version, torch version, build (cpu, cudaX.Y, rocmX.Y) and machine architecture: every
x86-64 CPU with AVX2 must give it, whatever its vendor and model. Each reference lists the CPU
models that confirmed it.

Exit status: 0 when the bits match (or the file holds no reference for this build: a note), 1 when
a stage differs (the first one is named, with the recorded and computed hashes), 2 when the
workload cannot run or the reference file is unusable.

``--record`` writes to the reference file: this CPU model as one more confirmation of a matching
reference, or a new reference for a build that has none. It never records a second set of bits
for a build: a CPU that gives other bits is a finding to explain (docs/portable.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import ReproError
from repro.base.files import atomic_write
from repro.tools.selftest_workload import FLAGS, PINS, STAGES, UNSET

REFERENCE_FILE = Path(__file__).with_name("selftest_reference.json")
_HEX64 = re.compile(r"[0-9a-f]{64}")
ABOUT = (
    "Reference hashes for `repro selftest`: one entry per workload version, torch version, build "
    "and machine architecture, which every CPU of that architecture (x86-64: with AVX2) must "
    "reproduce under the portable pins. 'confirmed' lists the CPU models that did. Add a "
    "confirmation with `repro selftest --record` and commit this file."
)


class SelftestError(ReproError, RuntimeError):
    """The selftest could not run, or its reference file is not usable."""


def measure(timeout: float = 300) -> dict[str, Any]:
    """Run the workload in a fresh process under ``PINS``; what it computed (see ``worker``)."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PINS)
    start = time.perf_counter()
    code = "from repro.tools.selftest_workload import worker; worker()"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise SelftestError(f"the selftest workload did not finish in {timeout:.0f} s") from None
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SelftestError(f"the selftest workload failed (exit {out.returncode}): {tail}")
    try:
        measured = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SelftestError(
            f"the selftest workload printed no result: {out.stdout[-200:]!r}"
        ) from None
    measured["seconds"] = round(time.perf_counter() - start, 3)
    return measured


def model_key(cpu: str) -> str:
    """A CPU's name without its stepping: one model, whatever the stepping a VM reports."""
    return re.sub(r", stepping \d+", "", cpu)


def build_key(entry: dict[str, Any]) -> tuple[str, str, str, int]:
    """What a reference is keyed by: torch version, build, machine, workload version."""
    return entry["torch"], entry["build"], entry["machine"], entry["workload"]


def load_reference(path: str | Path = REFERENCE_FILE) -> list[dict[str, Any]]:
    """The entries of a reference file, each checked, and at most one per :func:`build_key`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SelftestError(f"--reference {path}: not a readable JSON file ({exc})") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SelftestError(f"--reference {path}: expected an object with an 'entries' list")
    seen: set[tuple[str, str, str, int]] = set()
    for i, e in enumerate(entries):
        ok = isinstance(e, dict) and all(
            isinstance(e.get(k), str) for k in ("torch", "build", "machine")
        )
        hashes = e.get("hashes") if ok else None
        confirmed = e.get("confirmed") if ok else None
        if not (
            ok
            and isinstance(e.get("workload"), int)
            and isinstance(hashes, dict)
            and all(isinstance(hashes.get(s), str) and _HEX64.fullmatch(hashes[s]) for s in STAGES)
            and isinstance(confirmed, list)
            and all(isinstance(c, dict) and isinstance(c.get("cpu"), str) for c in confirmed)
        ):
            raise SelftestError(
                f"--reference {path}: entry {i} needs torch, build, machine (strings), workload "
                f"(int), hashes with a 64-digit hex sha256 for each of {list(STAGES)}, and "
                f"'confirmed', a list of objects with a 'cpu' string"
            )
        if build_key(e) in seen:
            raise SelftestError(
                f"--reference {path}: entry {i} repeats {build_key(e)}: one reference per "
                "workload version, torch version, build and machine"
            )
        seen.add(build_key(e))
    return entries


@dataclass
class Verdict:
    """The outcome: 'match', 'mismatch' or 'no reference', and what was compared."""

    status: str
    measured: dict[str, Any]
    reference: dict[str, Any] | None = None
    #: the stages that differ, in workload order (the first one first)
    differing: tuple[str, ...] = ()

    @property
    def first(self) -> str | None:
        return self.differing[0] if self.differing else None

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "mismatch" else 0

    @property
    def confirmed_here(self) -> bool:
        """Whether this CPU model is among the reference's confirmations."""
        ref = self.reference or {"confirmed": []}
        here = model_key(self.measured["cpu"])
        return any(model_key(c["cpu"]) == here for c in ref["confirmed"])

    def to_dict(self) -> dict[str, Any]:
        first = None
        if self.first is not None and self.reference is not None:
            first = {
                "stage": self.first,
                "what": STAGES[self.first],
                "recorded": self.reference["hashes"][self.first],
                "computed": self.measured["hashes"][self.first],
            }
        return {
            "status": self.status,
            "first_difference": first,
            "differing": list(self.differing),
            "confirmed_here": self.confirmed_here,
            "measured": self.measured,
            "reference": self.reference,
        }


def compare(measured: dict[str, Any], entries: list[dict[str, Any]]) -> Verdict:
    """Compare measured hashes with the one reference for the same build."""
    same = [e for e in entries if build_key(e) == build_key(measured)]
    if not same:
        return Verdict("no reference", measured)
    ref = same[0]
    diff = tuple(s for s in STAGES if ref["hashes"][s] != measured["hashes"][s])
    return Verdict("mismatch" if diff else "match", measured, ref, diff)


def confirmation(measured: dict[str, Any]) -> dict[str, Any]:
    """This machine as one confirmation of a reference."""
    return {
        "cpu": measured["cpu"],
        "vendor": measured.get("vendor", "unknown"),
        "features": measured.get("features", []),
        "python": measured["python"],
        "date": dt.date.today().isoformat(),
    }


def new_entry(measured: dict[str, Any]) -> dict[str, Any]:
    """A reference for a build that has none: this machine's bits, confirmed by this CPU."""
    return {
        "torch": measured["torch"],
        "build": measured["build"],
        "machine": measured["machine"],
        "workload": measured["workload"],
        "hashes": measured["hashes"],
        "confirmed": [confirmation(measured)],
    }


def pins_held(measured: dict[str, Any]) -> list[str]:
    """What the workload process read back that is not the portable pins (empty when all held)."""
    wrong = [f"{k}={v!r}" for k, v in (measured.get("pins") or {}).items() if PINS.get(k) != v]
    wrong += [f"{k}={v!r}" for k, v in (measured.get("flags") or {}).items() if FLAGS.get(k) != v]
    if measured.get("threads") != 1:
        wrong.append(f"threads={measured.get('threads')!r}")
    if measured.get("deterministic") is not True:
        wrong.append("deterministic algorithms off")
    if "avx2" in measured.get("features", []) and measured.get("cpu_capability") != "AVX2":
        wrong.append(f"ATen kernels {measured.get('cpu_capability')!r}")
    return wrong


def record(verdict: Verdict, path: str | Path) -> str:
    """Write this machine into the reference file (see the module docstring); what was done. The
    file is read and compared again first: it may have changed while the workload ran."""
    wrong = pins_held(verdict.measured)
    if wrong:
        raise SelftestError(
            f"not recorded: the workload did not run under the portable pins ({', '.join(wrong)})"
        )
    verdict = compare(verdict.measured, load_reference(path))
    if verdict.status == "mismatch":
        raise SelftestError(
            "not recorded: this machine gives other bits than the reference for its build, and a "
            "build has one reference. Find the kernel that differs (docs/portable.md)."
        )
    data = json.loads(Path(path).read_text())
    entries = data["entries"]
    if verdict.status == "no reference":
        entries.append(new_entry(verdict.measured))
        done = "recorded a new reference for this build"
    elif verdict.confirmed_here:
        return f"this CPU model already confirmed the reference: {path} unchanged"
    else:
        key = build_key(verdict.measured)
        entry = next(e for e in entries if build_key(e) == key)
        entry["confirmed"].append(confirmation(verdict.measured))
        done = f"added {verdict.measured['cpu']} to the reference's confirmations"
    data["about"] = ABOUT
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return f"{done} in {path}: commit it"


def describe(verdict: Verdict, reference_file: str | Path = REFERENCE_FILE) -> str:
    """The verdict as lines for a person."""
    m = verdict.measured
    lines = [
        f"selftest: torch {m['torch']} ({m['build']}), {m['machine']}, {m['cpu']} "
        f"[{m.get('vendor', '?')}; {' '.join(m.get('features', [])) or 'no AVX2'}]; workload "
        f"{m['workload']}, ATen kernels {m['cpu_capability']}, {m['threads']} thread(s); "
        f"{m['seconds']:.1f} s"
    ]
    if verdict.reference is None:
        lines.append(
            f"no reference for this build (torch {m['torch']}, {m['build']}, {m['machine']}, "
            f"workload {m['workload']}): nothing to compare. To add one, run "
            f"`repro selftest --record` (it writes {reference_file}) and commit the file."
        )
        return "\n".join(lines)
    ref = verdict.reference
    models = [f"{c['cpu']} ({c.get('date', '?')})" for c in ref["confirmed"]]
    lines.append(f"reference: confirmed on {len(models)} CPU model(s): {'; '.join(models)}")
    for stage, what in STAGES.items():
        lines.append(
            f"  {stage:<6} {'DIFFERENT' if stage in verdict.differing else 'same':<9}  {what}"
        )
    if verdict.first is None:
        lines.append("REPRODUCED: this machine gives the reference bits for this build")
        if not verdict.confirmed_here:
            lines.append(
                "  this CPU model is not among the confirmations yet: run "
                "`repro selftest --record` and commit the file"
            )
        return "\n".join(lines)
    lines += [
        f"DIFFERENT: the first stage that differs is '{verdict.first}' ({STAGES[verdict.first]})",
        f"  recorded sha256 {ref['hashes'][verdict.first]}",
        f"  computed sha256 {m['hashes'][verdict.first]}",
        f"  later stages that differ too: {', '.join(verdict.differing[1:]) or 'none'}",
        "  every x86-64 CPU with AVX2 should give the reference bits under the portable pins: "
        "this machine is a finding to explain (docs/portable.md, 'When the selftest differs')",
    ]
    if m["cpu_capability"] != "AVX2" or any(m.get("flags", {}).values()):
        lines.append(
            f"  note: the workload ran ATen's {m['cpu_capability']} kernels with "
            f"{m.get('flags')} (the pins ask for AVX2 and no oneDNN or NNPACK)"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``repro selftest`` arguments (``--reference`` is hidden: for tests and kit maintainers)."""
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument(
        "--record",
        action="store_true",
        help="add this CPU model to the reference's confirmations (or a new reference for a "
        "build without one) in the reference file; refused when the bits differ",
    )
    parser.add_argument("--reference", default=str(REFERENCE_FILE), help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run the selftest; 0 match or no reference, 1 mismatch (SelftestError when it cannot run)."""
    # a bad file fails before the workload runs
    entries = load_reference(args.reference)
    verdict = compare(measure(), entries)
    print(
        json.dumps(verdict.to_dict(), indent=2) if args.json else describe(verdict, args.reference)
    )
    if args.record:
        if verdict.status == "mismatch":
            print(
                "not recorded: a build has one reference; these bits differ from it",
                file=sys.stderr,
            )
            return 1
        try:
            print(record(verdict, args.reference), file=sys.stderr)
        except SelftestError as exc:
            print(exc, file=sys.stderr)
            return 1
    return verdict.exit_code
