"""``python -m experiment.train --help`` and ``--cfg job`` answer before torch is imported."""

from __future__ import annotations

import pytest

from conftest import imports_torch


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["experiment=quikc"]])
def test_the_example_answers_without_torch(args, tmp_path):
    assert not imports_torch("experiment.train", *args, cwd=tmp_path)
