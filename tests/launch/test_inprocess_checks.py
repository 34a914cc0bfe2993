"""``repro.start_run`` (the notebook API) refuses what the entry point refuses, before a run directory
exists: a ``_target_`` node's value against its class's annotations, an argument the class does not take."""

from __future__ import annotations

import sys

import pytest

from repro import ConfigValueError, start_run

MODULE = """
from typing import Annotated
from repro import Range


class Net:
    def __init__(self, width: Annotated[int, Range(1, 64)] = 8) -> None:
        self.width = width
"""

CONFIG = """
model:
  _target_: {module}.Net
  width: 8
train:
  epochs: 1
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    module = f"inprocess_target_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MODULE)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(CONFIG.format(module=module))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(module, None)


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("model.width=abc", "model.width", "an int in [1, 64]"),
        ("model.width=0", "model.width", "an int in [1, 64]"),
        ("+model.depth=3", "model.depth", "width"),
    ],
)
def test_a_bad_target_value_is_refused_before_the_run_directory(project, override, key, allowed):
    run_dir = project / "run"
    with pytest.raises(ConfigValueError) as caught:
        start_run(project / "conf", overrides=[override], run_dir=run_dir)
    message = str(caught.value)
    assert message.startswith(key) and allowed in message and "\n" not in message, message
    assert not run_dir.exists()
