"""Mixed precision and torch.compile keep the guarantees on both examples (the classifier and
``experiment=regress``): workers 0 and 2 give the same bits and ``repro verify`` (a rerun in a new
process, compared step by step) says IDENTICAL. Paired to keep the suite short: compile with bf16-mixed
on one, with 16-mixed on the other; each setting alone, and SIGKILL + resume, in
tests/e2e/test_step_options.py (the fixture experiment)."""

from __future__ import annotations

import pytest

from conftest import run_main, verify_identical

pytestmark = pytest.mark.slow
QUICK = ["experiment=quick", "train.epochs=1"]  # 8 steps
REGRESS = ["experiment=regress", "train.epochs=1", "data.train_size=256"]  # 4 steps
#: Compile on both examples, each precision on one (each alone, on the fixture: test_step_options.py).
CASES = {
    "quick-bf16-compile": [*QUICK, "train.precision=bf16-mixed", "train.compile=true"],
    "regress-16-compile": [*REGRESS, "train.precision=16-mixed", "train.compile=true"],
}


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()
    assert a.metrics() == b.metrics()


@pytest.mark.parametrize("case", CASES)
def test_workers_and_verify_give_the_same_bits(case, tmp_path):
    overrides = CASES[case]
    ref = run_main(tmp_path / "ref", *overrides)
    training = ref.manifest["training"]
    assert training["precision"] == next(o for o in overrides if "precision" in o).split("=")[1]
    assert training["compile"] is ("train.compile=true" in overrides)
    same_bits(ref, run_main(tmp_path / "workers", *overrides, "repro.num_workers=2"))
    verify_identical(ref.dir, tmp_path / "replay")
