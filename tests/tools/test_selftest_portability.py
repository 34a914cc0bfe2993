"""What another CPU would change, emulated on this one: under the portable pins nothing may follow it.

A CPU of another vendor or generation differs in what the libraries detect at start: the instruction
sets MKL, oneDNN and glibc's math functions dispatch on, and the cache sizes oneDNN and NNPACK size
their tiles by. The instruction sets can be narrowed on any machine through the libraries' own
switches; each case runs the selftest workload in a fresh process with one of them, and must give
the bits of the plain run. The control case shows the emulation reaches the kernels: with oneDNN
switched back on, its instruction set changes the bits, which is why the portable profile
switches it off. (The cache sizes cannot be emulated here: `repro selftest` on each CPU model
checks those, see test_selftest.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from repro.tools.selftest_workload import FLAGS, PINS, UNSET

pytestmark = pytest.mark.slow


def hashes(extra_env: dict[str, str], flags: dict[str, bool] = FLAGS) -> dict[str, str]:
    """The workload's stage hashes in a fresh process: the pins, then ``extra_env`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PINS)
    env.update(extra_env)
    code = (
        "import json; from repro.tools.selftest_workload import workload; "
        f"print(json.dumps(workload(flags={flags!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plain() -> dict[str, str]:
    return hashes({})


CASES = {
    # MKL's own dispatch, narrowed to an older instruction set
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    # oneDNN's, should anything still call it
    "ONEDNN_MAX_CPU_ISA=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    # glibc's math functions (exp, log, pow: ifunc variants chosen by CPU features)
    "glibc without AVX2 and FMA": {
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2_Usable,-FMA_Usable,-AVX2,-FMA"
    },
}


@pytest.mark.parametrize("name", list(CASES))
def test_narrowed_instruction_sets_leave_the_portable_bits_alone(plain, name):
    assert hashes(CASES[name]) == plain, name


def test_control_with_onednn_on_its_instruction_set_changes_the_bits():
    on = {**FLAGS, "mkldnn": True}
    avx2, sse41 = hashes({}, on), hashes({"ONEDNN_MAX_CPU_ISA": "SSE41"}, on)
    assert avx2["data"] == sse41["data"] and avx2["init"] == sse41["init"]
    assert avx2["final"] != sse41["final"], "oneDNN's instruction set no longer changes the bits"
