"""The portable profile: the same bits whatever the launching machine's threads, cores, CPU kernels and hash seed.

Each case is a separate process launched with a different environment, as a
different machine or cluster node would launch it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import QUICK, clean_env, run_main

pytestmark = pytest.mark.slow
SHORT = [*QUICK, "train.max_steps=12"]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def capabilities() -> list[str]:
    flags = cpu_flags()
    caps = ["default"]
    if "avx2" in flags:
        caps.append("avx2")
    if "avx512f" in flags:
        caps.append("avx512")
    return caps


def launch_cases() -> list[tuple[str, dict, tuple, list]]:
    """(name, environment, command prefix, extra overrides) for each way a machine may launch the run."""
    cases = [
        ("shell OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, (), []),
        ("shell OMP_NUM_THREADS=2", {"OMP_NUM_THREADS": "2"}, (), []),
        ("repro.threads=2", {}, (), ["repro.threads=2", "repro.interop_threads=2"]),
        ("PYTHONHASHSEED=1", {"PYTHONHASHSEED": "1"}, (), []),
    ]
    cases += [
        (f"ATEN_CPU_CAPABILITY={c}", {"ATEN_CPU_CAPABILITY": c}, (), []) for c in capabilities()
    ]
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        cases.append(("affinity: one core", {}, ("taskset", "-c", str(cpus[0])), []))
        if len(cpus) >= 2:
            cases.append(("affinity: two cores", {}, ("taskset", "-c", f"{cpus[0]},{cpus[1]}"), []))
    return cases


def launch(run_dir, overrides, env=None, prefix=()):
    full = clean_env("OMP_", "ATEN_")
    full.update(env or {})
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "experiment.train",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    proc = subprocess.run(
        cmd, cwd=run_dir.parent, env=full, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    from conftest import Run

    return Run(run_dir, proc)


@pytest.fixture(scope="module")
def portable_reference(tmp_path_factory):
    return run_main(tmp_path_factory.mktemp("portable") / "ref", *SHORT, "repro=portable")


@pytest.mark.parametrize(
    ("name", "env", "prefix", "extra"), launch_cases(), ids=[c[0] for c in launch_cases()]
)
def test_portable_gives_the_same_bits_however_it_is_launched(
    tmp_path, portable_reference, name, env, prefix, extra
):
    run = launch(tmp_path / "run", [*SHORT, "repro=portable", *extra], env, prefix)
    assert run.weights == portable_reference.weights, name
    assert run.fingerprints() == portable_reference.fingerprints(), name


def test_portable_records_every_pin_as_in_effect(portable_reference):
    settings = portable_reference.manifest["determinism"]["settings"]
    expected = {
        "env.ATEN_CPU_CAPABILITY": "avx2",
        "env.MKL_CBWR": "COMPATIBLE",
        "env.ONEDNN_MAX_CPU_ISA": "AVX2",
        "env.PYTHONHASHSEED": "0",
        "torch.num_threads": 1,
        "torch.num_interop_threads": 1,
        "torch.backends.mkldnn.enabled": False,
        "torch.backends.nnpack.enabled": False,
    }
    for key, value in expected.items():
        assert settings[key]["applied"] == value and settings[key]["took_effect"], key
    assert portable_reference.manifest["environment"]["cpu"]["aten_capability"] == "AVX2"


def test_without_portable_the_launch_changes_the_bits(tmp_path):
    """The profile's value, demonstrated: the default profile follows the machine."""
    hashes = {
        name: run_main(tmp_path / name, *SHORT, f"repro.threads={n}").manifest["weights_sha256"]
        for name, n in [("threads1", 1), ("threads2", 2)]
    }
    aten = launch(tmp_path / "aten", SHORT, {"ATEN_CPU_CAPABILITY": "default"})
    hashes["aten-default"] = aten.manifest["weights_sha256"]
    assert len(set(hashes.values())) > 1, hashes


def test_a_capability_the_cpu_lacks_is_refused(tmp_path):
    """sve256 is an Arm capability: on x86 ATen keeps its own, and strict mode refuses to pretend."""
    if "sve" in cpu_flags():
        pytest.skip("this CPU has SVE")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiment.train",
            f"hydra.run.dir={run_dir}",
            *SHORT,
            "repro=portable",
            "repro.cpu_capability=sve256",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: env.ATEN_CPU_CAPABILITY='sve256' did not take effect")
    assert "cannot run sve256 kernels" in line and "repro.cpu_capability=" in line
    assert not run_dir.exists()


def test_a_pin_set_after_kernels_ran_is_refused():
    code = textwrap.dedent("""
        import torch
        torch.ones(1000) * 2  # a CPU kernel runs: ATen has chosen its capability
        from repro import ReproConfig, setup_reproducibility, EnvironmentPinError
        try:
            setup_reproducibility(ReproConfig(pythonhashseed=None, cpu_capability="default"))
            print("no error")
        except EnvironmentPinError as e:
            print("error", e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    if "avx" not in cpu_flags() and out.startswith("no error"):
        pytest.skip("this CPU runs the default kernels anyway")
    assert (
        out.startswith("error")
        and "ATEN_CPU_CAPABILITY" in out
        and "a CPU kernel ran before it was set" in out
    )
    assert "`" in out  # says how to launch so the pin is in place from the start


def recorded_portable_weights() -> dict[str, tuple[str, str]]:
    """docs/portable.md's table: torch build -> (weights sha256 of the example under repro=portable,
    the CPU models that gave it)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "portable.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \| (.+?) \|$", text, re.MULTILINE)
    return {torch_version: (sha, cpus) for torch_version, sha, cpus in rows}


def test_the_example_gives_the_recorded_portable_weights_on_any_cpu(tmp_path):
    """`python -m experiment.train repro=portable` (the README's command) gives the weights sha256
    docs/portable.md records for this torch build, whichever x86-64 CPU with AVX2 runs it."""
    import torch

    recorded = recorded_portable_weights()
    assert recorded, "docs/portable.md has no table of recorded weights"
    if torch.__version__ not in recorded:
        pytest.skip(f"no recorded portable weights for torch {torch.__version__}")
    if "avx2" not in cpu_flags():
        pytest.skip("the portable profile promises its bits on x86-64 CPUs with AVX2")
    sha, cpus = recorded[torch.__version__]
    run = launch(tmp_path / "run", ["repro=portable"])
    assert run.manifest["weights_sha256"] == sha, (
        f"this CPU gives other weights than those recorded on {cpus}: a finding to explain, see "
        "docs/portable.md 'When the selftest differs' (and run `repro selftest`)"
    )
