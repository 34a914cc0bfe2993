"""CUDA-only checks (marked ``gpu``; skipped without a CUDA device)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gpu


def test_strict_training_on_cuda_reproduces_itself(run_train):
    a = run_train("a", "experiment=quick", "train.device=cuda")
    b = run_train("b", "experiment=quick", "train.device=cuda")
    assert a.manifest["environment"]["gpus"], "the run did not see the GPU"
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_cuda_rng_is_seeded():
    code = textwrap.dedent("""
        import torch
        from repro import ReproConfig, setup_reproducibility
        setup_reproducibility(ReproConfig(seed=5, pythonhashseed=None))
        print(torch.rand(3, device="cuda").tolist())
    """)
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(outs) == 1


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
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("error") and "CUBLAS_WORKSPACE_CONFIG" in out
