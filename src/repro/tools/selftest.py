"""``repro selftest``: does this machine give the reference bits for its torch build?

A fixed workload (data drawn from a fixed seed; a small conv net with batch norm, pooling and
linear layers; ``STEPS`` steps of AdamW) runs in a fresh Python process under the portable
pins (``PINS``: AVX2 kernels for ATen, MKL and oneDNN, one thread, deterministic algorithms,
``PYTHONHASHSEED=0``). Each stage's tensors are hashed with sha256 over their raw bytes and
compared with the hashes shipped in ``selftest_reference.json``, keyed by torch version, build
(cpu, cudaX.Y, rocmX.Y) and machine architecture, each recorded with the CPU that gave it.

Exit status: 0 when the bits match, 1 when a stage differs (the first one is named, with the
recorded and computed hashes), 0 with a note when the file holds no reference for this build;
2 when the workload cannot run or the reference file is unreadable.

What a match promises: this machine, with this torch build, computes these ops bit for bit as
the recording machine did under the pins. It says nothing about ops the workload does not use,
about GPUs (the workload runs on the CPU), nor about runs made without the pins.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.base.errors import ReproError

REFERENCE_FILE = Path(__file__).with_name("selftest_reference.json")
#: Bump when the workload changes: references recorded for another version are not compared.
WORKLOAD_VERSION = 1
SEED = 20261129
STEPS = 24
BATCH = 64
#: Environment the workload runs under (what ``repro=portable`` pins for CPU bits).
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}
#: Variables that would change the bits under the pins; removed from the workload's environment.
UNSET = (
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "DNNL_DEFAULT_FPMATH_MODE",
    "MKL_ENABLE_INSTRUCTIONS",
)
#: The stages compared, in the order they are computed: key -> what was hashed.
STAGES = {
    "data": "the generated data",
    "init": "the initial weights",
    "step1": "the weights after step 1",
    "final": f"the weights after all {STEPS} steps",
}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SelftestError(ReproError, RuntimeError):
    """The selftest could not run, or its reference file is not usable."""


def digest(named: dict[str, Any]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in the given order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in named.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(bytes(t.reshape(-1).view(torch.uint8).tolist()))
    return h.hexdigest()


def adamw_step(params: list[Any], moments: list[tuple[Any, Any]], step: int) -> None:
    """One AdamW update (lr 1e-2, betas 0.9/0.999, eps 1e-8, weight decay 1e-2), in place.

    Written out rather than torch.optim.AdamW, whose import pulls in torch._dynamo (seconds).
    """
    import torch

    lr, beta1, beta2, eps, decay = 1e-2, 0.9, 0.999, 1e-8, 1e-2
    with torch.no_grad():
        for p, (m, v) in zip(params, moments, strict=True):
            p.mul_(1 - lr * decay)
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v / (1 - beta2**step)).sqrt_().add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**step))


def workload() -> dict[str, str]:
    """Run the fixed workload in this process and return each stage's hash (see ``STAGES``)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    from repro.core.determinism import set_deterministic_algorithms

    # The kit's own switch (no inductor import on tested torch releases); the worker reports the
    # flag read back.
    set_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(8 * BATCH, 3, 16, 16, generator=g)
    y = torch.randint(0, 4, (8 * BATCH,), generator=g)
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 128),
        nn.Tanh(),
        nn.Linear(128, 4),
    )
    params = list(model.parameters())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    hashes = {"data": digest({"x": x, "y": y}), "init": digest(model.state_dict())}
    for step in range(STEPS):
        start = step % 8 * BATCH  # eight batches, each used three times
        batch = slice(start, start + BATCH)
        logits = model(x[batch])
        penalty = sum(p.pow(2).sum() for p in model.parameters())  # an explicit reduction
        loss = nn.functional.cross_entropy(logits, y[batch]) + 1e-4 * penalty
        for p in params:
            p.grad = None
        loss.backward()
        adamw_step(params, moments, step + 1)
        if step == 0:
            hashes["step1"] = digest(model.state_dict())
    hashes["final"] = digest(model.state_dict())
    return hashes


def cpu_model() -> str:
    """The CPU's model name, with family, model and stepping where /proc/cpuinfo gives them."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                if fields:
                    break  # the first processor is enough
                continue
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or fields.get("hardware") or platform.processor() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']}"
        name += f", stepping {fields['stepping']})" if "stepping" in fields else ")"
    return name


def _worker() -> None:
    """The workload process: run it and print what it computed, and where, as one JSON line."""
    import torch

    start = time.perf_counter()
    hashes = workload()
    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "build": f"cuda{cuda}" if cuda else f"rocm{hip}" if hip else "cpu",
                "machine": platform.machine(),
                "cpu": cpu_model(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "pins": {k: os.environ.get(k) for k in PINS},
                "python": platform.python_version(),
                "workload": WORKLOAD_VERSION,
                "workload_seconds": round(time.perf_counter() - start, 3),
                "hashes": hashes,
            }
        )
    )


def measure(timeout: float = 300) -> dict[str, Any]:
    """Run the workload in a fresh process under ``PINS``; what it computed (see ``_worker``)."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PINS)
    start = time.perf_counter()
    code = "from repro.tools.selftest import _worker; _worker()"
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


def load_reference(path: str | Path = REFERENCE_FILE) -> list[dict[str, Any]]:
    """The entries of a reference file, each checked: torch, build, machine, workload, hashes."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SelftestError(f"--reference {path}: not a readable JSON file ({exc})") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SelftestError(f"--reference {path}: expected an object with an 'entries' list")
    for i, e in enumerate(entries):
        ok = isinstance(e, dict) and all(
            isinstance(e.get(k), str) for k in ("torch", "build", "machine")
        )
        hashes = e.get("hashes") if ok else None
        if not (
            ok
            and isinstance(e.get("workload"), int)
            and isinstance(hashes, dict)
            and all(isinstance(hashes.get(s), str) and _HEX64.fullmatch(hashes[s]) for s in STAGES)
        ):
            raise SelftestError(
                f"--reference {path}: entry {i} needs torch, build, machine (strings), "
                f"workload (int) and hashes with a 64-digit hex sha256 for each of "
                f"{list(STAGES)}"
            )
    return entries


def build_key(entry: dict[str, Any]) -> tuple[str, str, str, int]:
    """What a reference is keyed by: torch version, build, machine, workload version."""
    return entry["torch"], entry["build"], entry["machine"], entry["workload"]


@dataclass
class Verdict:
    """The outcome: 'match', 'mismatch' or 'no reference', and what was compared."""

    status: str
    measured: dict[str, Any]
    reference: dict[str, Any] | None = None
    first: str | None = None  # the first stage that differs
    differing: tuple[str, ...] = ()
    #: CPUs whose entries for this build hold other bits than ``reference``
    other_cpus: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "mismatch" else 0

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
            "measured": self.measured,
            "reference": self.reference,
            "other_cpus": list(self.other_cpus),
        }


def compare(measured: dict[str, Any], entries: list[dict[str, Any]]) -> Verdict:
    """Compare measured hashes with the entries for the same build: a match if any entry matches
    every stage; else a mismatch against the entry that agrees on the most leading stages."""
    same = [e for e in entries if build_key(e) == build_key(measured)]
    if not same:
        return Verdict("no reference", measured)

    def differing(entry: dict[str, Any]) -> tuple[str, ...]:
        return tuple(s for s in STAGES if entry["hashes"][s] != measured["hashes"][s])

    def agreed(entry: dict[str, Any]) -> int:
        return next((i for i, s in enumerate(STAGES) if s in differing(entry)), len(STAGES))

    best = max(same, key=agreed)
    diff = differing(best)
    others = tuple(
        sorted({e.get("cpu", "an unnamed CPU") for e in same if e["hashes"] != best["hashes"]})
    )
    status = "mismatch" if diff else "match"
    return Verdict(status, measured, best, diff[0] if diff else None, diff, others)


def record_entry(measured: dict[str, Any]) -> dict[str, Any]:
    """The reference entry for what this machine computed, to add to the reference file."""
    keys = ("torch", "build", "machine", "cpu", "cpu_capability", "python")
    return {
        **{k: measured[k] for k in keys},
        "workload": measured["workload"],
        "recorded": dt.date.today().isoformat(),
        "hashes": measured["hashes"],
    }


def describe(verdict: Verdict, reference_file: str | Path = REFERENCE_FILE) -> str:
    """The verdict as lines for a person."""
    m = verdict.measured
    lines = [
        f"selftest: torch {m['torch']} ({m['build']}), {m['machine']}, {m['cpu']}; "
        f"ATen kernels {m['cpu_capability']}, {m['threads']} thread(s); {m['seconds']:.1f} s"
    ]
    if verdict.reference is None:
        lines.append(
            f"no reference for this build (torch {m['torch']}, {m['build']}, {m['machine']}): "
            f"nothing to compare. To add one, run `repro selftest --record` and add the entry "
            f"it prints to the 'entries' list of {reference_file}."
        )
        return "\n".join(lines)
    ref = verdict.reference
    lines.append(
        f"reference: recorded on {ref.get('cpu', 'an unnamed CPU')} ({ref.get('recorded', '?')})"
    )
    for stage, what in STAGES.items():
        lines.append(
            f"  {stage:<6} {'DIFFERENT' if stage in verdict.differing else 'same':<9}  {what}"
        )
    if verdict.other_cpus:
        lines.append(
            f"  note: other bits were recorded for this build on {', '.join(verdict.other_cpus)}: "
            "the pins do not make those CPU models agree (docs/portable.md)"
        )
    if verdict.first is None:
        lines.append("REPRODUCED: this machine gives the reference bits for this build")
        return "\n".join(lines)
    lines += [
        f"DIFFERENT: the first stage that differs is '{verdict.first}' ({STAGES[verdict.first]})",
        f"  recorded sha256 {ref['hashes'][verdict.first]}",
        f"  computed sha256 {m['hashes'][verdict.first]}",
        f"  later stages that differ too: {', '.join(verdict.differing[1:]) or 'none'}",
    ]
    if ref.get("cpu_capability", m["cpu_capability"]) != m["cpu_capability"]:
        lines.append(
            f"  note: the reference ran ATen's {ref['cpu_capability']} kernels, this machine "
            f"{m['cpu_capability']} (the pin asks for AVX2; a CPU without it falls back)"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``repro selftest`` arguments (``--reference`` is hidden: for tests and kit maintainers)."""
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument(
        "--record",
        action="store_true",
        help="print this machine's reference entry (JSON) instead of comparing",
    )
    parser.add_argument("--reference", default=str(REFERENCE_FILE), help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run the selftest; 0 match or no reference, 1 mismatch (SelftestError when it cannot run)."""
    entries = load_reference(args.reference)  # a bad file fails before the workload runs
    measured = measure()
    if args.record:
        print(json.dumps(record_entry(measured), indent=2))
        print(f"add this entry to the 'entries' list of {args.reference}", file=sys.stderr)
        return 0
    verdict = compare(measured, entries)
    print(
        json.dumps(verdict.to_dict(), indent=2) if args.json else describe(verdict, args.reference)
    )
    return verdict.exit_code
