"""The example's ``train.py`` is imports, the decorator and the task, yet the hash seed is pinned first
thing: ``repro.entrypoint`` decorating the task in the program's own module re-executes the interpreter
the shell started before Hydra, OmegaConf or torch are imported, so nothing heavy is done twice."""

from __future__ import annotations

import pytest

from conftest import clean_env, run_main

# Appends "<module> <PYTHONHASHSEED or ->" to $IMPORTS_FILE when a watched module is first imported.
_SITECUSTOMIZE = """
import os, sys
if os.environ.get("IMPORTS_FILE"):
    class _Watch:
        def find_spec(self, name, path=None, target=None):
            if name in ("omegaconf", "hydra", "torch"):
                with open(os.environ["IMPORTS_FILE"], "a") as f:
                    f.write(f"{name} {os.environ.get('PYTHONHASHSEED', '-')}\\n")
            return None
    sys.meta_path.insert(0, _Watch())
"""


def _imports(tmp_path, *args: str) -> list[tuple[str, str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    log = tmp_path / "imports.txt"
    env = clean_env()
    env.update(PYTHONPATH=f"{site}:{env['PYTHONPATH']}", IMPORTS_FILE=str(log))
    run_main(tmp_path / "run", "train.epochs=1", "train.max_steps=1", *args, env=env)
    return [tuple(line.split()) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_the_first_interpreter_restarts_before_any_heavy_import(tmp_path):
    imports = _imports(tmp_path)
    assert ("omegaconf", "0") in imports and ("torch", "0") in imports  # the probe sees the run's
    assert [name for name, seed in imports if seed == "-"] == [], imports


@pytest.mark.slow
def test_a_flag_leaves_the_decision_to_the_entry_point(tmp_path):
    """With a flag on the command line (here Hydra's --config-name) decorating restarts nothing: the
    entry point's main() parses the command line and re-executes after its imports."""
    imports = _imports(tmp_path, "--config-name=config")
    assert ("omegaconf", "-") in imports and ("omegaconf", "0") in imports, imports


@pytest.mark.slow
def test_importing_the_experiment_module_restarts_nothing(tmp_path):
    """Only a task decorated in the program's own module restarts early: a tool or a script that imports
    the experiment's module (``repro verify`` reads its entry settings so) runs on in the interpreter
    it started in."""
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    log = tmp_path / "imports.txt"
    script = tmp_path / "tool.py"
    script.write_text(
        "import os\nimport experiment.train\nprint('ran', os.environ.get('PYTHONHASHSEED', '-'))\n"
    )
    env = clean_env()
    env.update(PYTHONPATH=f"{site}:{env['PYTHONPATH']}", IMPORTS_FILE=str(log))
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ran", "-"]
    seeds = {seed for _, seed in (line.split() for line in log.read_text().splitlines())}
    assert seeds == {"-"}, log.read_text()
