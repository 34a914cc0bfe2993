"""CUDA-only checks (marked ``gpu``; skipped without a CUDA device)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gpu


def test_strict_training_on_cuda_reproduces_itself(fixture_run):
    a = fixture_run("a", "train.device=cuda")
    b = fixture_run("b", "train.device=cuda")
    assert a.manifest["environment"]["gpus"], "the run did not see the GPU"
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_cuda_rng_is_seeded():
    """Same seed, same CUDA draws in two processes; another seed, other draws (an unseeded CUDA
    generator also starts from a fixed state, so the second half is what shows the seed is applied)."""
    code = textwrap.dedent("""
        import sys, torch
        from repro import ReproConfig, setup_reproducibility
        setup_reproducibility(ReproConfig(seed=int(sys.argv[1]), pythonhashseed=None))
        print(torch.rand(3, device="cuda").tolist())
    """)

    def draw(seed):
        return subprocess.run(
            [sys.executable, "-c", code, str(seed)],
            capture_output=True,  # noqa: E731
            text=True,
            check=True,
        ).stdout

    assert draw(5) == draw(5) != draw(6)


def test_cublas_workspace_set_after_cuda_started_is_caught():
    code = textwrap.dedent("""
        import torch
        torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")
        from repro import ReproConfig, setup_reproducibility, EnvironmentPinError
        try:
            setup_reproducibility(ReproConfig(pythonhashseed=None))
            print("no error")
        except EnvironmentPinError as e:
            print("error", e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("error") and "CUBLAS_WORKSPACE_CONFIG" in out
