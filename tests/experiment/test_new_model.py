"""Adding a model is a class and a YAML file: it runs, and its bad values are refused before anything is written.

In a copy of the project (the package and ``conf/``, first on ``PYTHONPATH``), an MLP variant is added
as one class (appended to ``model.py``) and one YAML file (``conf/model/wide_mlp.yaml``), with no schema
and no check written for it. A run with it completes; a value of the wrong type or out of the range the
class declares gives one line naming the key, a non-zero exit and no run directory.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_module

ENTRY = "experiment.train"
PACKAGE = REPO / "src" / "experiment"

NEW_CLASS = '''

class WideMLP(nn.Module):
    """One hidden layer of ``width`` units: the model a user adds."""

    def __init__(self, in_features: Width, width: Annotated[int, Range(1, 4096)] = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(-1)
'''
NEW_YAML = """_target_: experiment.model.WideMLP
in_features: ${data.features}
width: 16
"""
SMALL = [
    "experiment=regress",
    "model=wide_mlp",
    "data.train_size=64",
    "data.val_size=32",
    "train.batch_size=32",
    "train.max_steps=2",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the package and its configs, with the new model added as a class and a YAML file."""
    root = tmp_path_factory.mktemp("project")
    src = root / "src" / PACKAGE.name
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__"))
    # The entry module finds conf/ two levels above its package: root/conf.
    shutil.copytree(REPO / "conf", root / "conf")
    with open(src / "model.py", "a") as f:
        f.write(NEW_CLASS)
    (root / "conf" / "model" / "wide_mlp.yaml").write_text(NEW_YAML)
    return root


def start(project: Path, cwd: Path, *overrides: str):
    env = {"PYTHONPATH": str(project / "src")}
    return run_module([sys.executable, "-m", ENTRY, *overrides], cwd=cwd, env=env)


def test_a_model_added_as_a_class_and_a_yaml_file_runs(project, tmp_path):
    proc = start(project, tmp_path, *SMALL, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["status"] == "completed", manifest["status"]
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "_target_: experiment.model.WideMLP" in saved and "width: 16" in saved


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("model.width=abc", "an int in [1, 4096]"),
        ("model.width=-5", "an int in [1, 4096]"),
        ("model.width=1.5", "an int in [1, 4096]"),
    ],
)
def test_its_bad_values_are_refused_with_one_line_before_anything_is_written(
    project, tmp_path, override, allowed
):
    proc = start(project, tmp_path, *SMALL, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(err.splitlines()) == 1, err
    key, _, value = override.partition("=")
    assert err.startswith(f"error: {key}=") and value in err and allowed in err, err
    assert list(tmp_path.iterdir()) == []
