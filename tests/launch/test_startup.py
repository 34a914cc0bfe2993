"""Start-up: how many interpreters a run starts, how often it composes its config, and that the short
path through Hydra (``repro.launch.hydra_run``) gives the run what ``hydra.main`` gives it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FIXTURE, FIXTURE_PATH, clean_env, run_fixture, run_python

# Appends one line per interpreter start (pid, hash seed in the environment) to $STARTS_FILE.
_SITECUSTOMIZE = """
import os
if os.environ.get("STARTS_FILE"):
    with open(os.environ["STARTS_FILE"], "a") as f:
        f.write(f"{os.getpid()} {os.environ.get('PYTHONHASHSEED', '-')}\\n")
if os.environ.get("IMPORT_TORCH_FIRST"):  # a program that imports torch before the entry point
    import torch
"""


def _counted_run(tmp_path: Path, name: str, *overrides: str, **env: str):
    """Run the fixture for 1 step; return (the run, [(pid, hash seed)] of every interpreter start)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    starts = tmp_path / f"{name}.starts"
    run_env = clean_env(PYTHONPATH=f"{site}:{FIXTURE_PATH}", STARTS_FILE=str(starts), **env)
    run = run_fixture(tmp_path / name, "train.max_steps=1", *overrides, env=run_env)
    lines = [ln.split() for ln in starts.read_text().splitlines()]
    return run, [(int(pid), seed) for pid, seed in lines]


def _setting(run, var: str) -> dict:
    return run.manifest["determinism"]["settings"][f"env.{var}"]


@pytest.mark.slow
def test_a_run_starts_python_once_when_the_shell_has_the_pins(tmp_path):
    run, starts = _counted_run(tmp_path, "a", PYTHONHASHSEED="0")
    assert len(starts) == 1, starts
    assert _setting(run, "PYTHONHASHSEED")["took_effect"] is True


@pytest.mark.slow
def test_the_hash_seed_costs_one_early_restart_and_holds(tmp_path):
    run, starts = _counted_run(tmp_path, "b")
    assert [seed for _, seed in starts] == ["-", "0"], (
        starts
    )  # the shell had none; the second has 0
    assert (
        len({pid for pid, _ in starts}) == 1
    )  # os.execve: one process for schedulers and torchrun
    assert _setting(run, "PYTHONHASHSEED") == {
        "requested": "0",
        "applied": "0",
        "took_effect": True,
        "note": "",
    }
    assert run.manifest["environment"]["env_at_start"].get("PYTHONHASHSEED") == "0"


# A program whose task is decorated in its own module: says which heavy modules were imported and the
# hash seed, before and after decorating (main() is never called: the restart needs no config).
_DECORATED = """
import os, sys
from repro import entrypoint

def seen(when):
    heavy = [m for m in ("hydra", "omegaconf", "torch") if m in sys.modules]
    print(when, os.environ.get("PYTHONHASHSEED", "-"), ",".join(heavy) or "none", flush=True)

seen("before")

@entrypoint(config_dir=".", config_name="config")
def main(run):
    pass

seen("after")
"""


def test_decorating_the_task_restarts_before_any_heavy_import(tmp_path):
    """``from repro import entrypoint`` imports no Hydra, OmegaConf or torch, and decorating the task in
    the program's module re-executes at once with the kit's hash seed: the entry module needs no
    start-up code of its own."""
    out = run_python(tmp_path, _DECORATED)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["before - none", "before 0 none", "after 0 hydra,omegaconf"]


def test_decorating_restarts_nothing_with_a_flag_or_when_imported(tmp_path):
    """A flag leaves the decision to main(); a module that is not the program never restarts."""
    out = run_python(tmp_path, _DECORATED, "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[:2] for line in out.stdout.splitlines()] == [
        ["before", "-"],
        ["after", "-"],
    ]
    (tmp_path / "decorated.py").write_text(_DECORATED)
    out = run_python(
        tmp_path, "import os, sys\nsys.path.insert(0, os.getcwd())\nimport decorated\n"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[:2] for line in out.stdout.splitlines()] == [
        ["before", "-"],
        ["after", "-"],
    ]


@pytest.mark.slow
def test_another_hash_seed_in_the_config_restarts_once_more(tmp_path):
    run, starts = _counted_run(tmp_path, "c", "repro.pythonhashseed=7")
    assert [seed for _, seed in starts] == ["-", "0", "7"], starts
    assert _setting(run, "PYTHONHASHSEED")["applied"] == "7"
    assert _setting(run, "PYTHONHASHSEED")["took_effect"] is True


@pytest.mark.slow
def test_an_unpinned_hash_seed_takes_the_guess_back(tmp_path):
    """``repro.pythonhashseed=null``: the process must run as the shell started it, not on the guess."""
    run, starts = _counted_run(tmp_path, "d", "repro.pythonhashseed=null")
    assert starts[-1][1] == "-", starts
    setting = _setting(run, "PYTHONHASHSEED")
    assert setting["requested"] is None and setting["applied"] is None
    assert "PYTHONHASHSEED" not in run.manifest["environment"]["env_at_start"]


@pytest.mark.slow
def test_library_pins_are_set_in_process_before_torch(tmp_path):
    """cuBLAS' workspace, the ATen CPU capability, MKL's branch and oneDNN's ISA are read when torch's
    libraries start: set before torch is imported, they hold without a restart, and the record says
    they were there at start."""
    pins = {
        "repro.cpu_capability": "default",
        "repro.mkl_cbwr": "COMPATIBLE",
        "repro.onednn_max_cpu_isa": "DEFAULT",
        "repro.cublas_workspace_config": ":16:8",
    }
    run, starts = _counted_run(
        tmp_path, "e", *(f"{k}={v}" for k, v in pins.items()), PYTHONHASHSEED="0"
    )
    assert len(starts) == 1, starts
    at_start = run.manifest["environment"]["env_at_start"]
    for var, value in {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": "DEFAULT",
        "CUBLAS_WORKSPACE_CONFIG": ":16:8",
    }.items():
        setting = _setting(run, var)
        assert setting["took_effect"] is True, (var, setting)
        assert at_start.get(var) == value, (var, at_start)


@pytest.mark.slow
def test_after_torch_is_imported_only_a_pin_nothing_has_read_is_set_in_process(tmp_path):
    """A program that imported torch before the entry point: cuBLAS' workspace is still unread where
    torch has no GPU backend (set in process, one interpreter); the ATen capability is read when torch
    loads (the process re-executes with it)."""
    import torch

    no_gpu = torch.version.cuda is None and torch.version.hip is None
    run, starts = _counted_run(
        tmp_path,
        "cublas",
        "repro.cublas_workspace_config=:16:8",
        PYTHONHASHSEED="0",
        IMPORT_TORCH_FIRST="1",
    )
    assert len(starts) == (1 if no_gpu else 2), starts
    assert _setting(run, "CUBLAS_WORKSPACE_CONFIG")["took_effect"] is True
    run, starts = _counted_run(
        tmp_path, "aten", "repro.cpu_capability=default", PYTHONHASHSEED="0", IMPORT_TORCH_FIRST="1"
    )
    assert len(starts) == 2, starts
    assert _setting(run, "ATEN_CPU_CAPABILITY")["took_effect"] is True


def test_still_unread_knows_which_pins_torch_has_read(monkeypatch):
    import torch

    from repro.base import startup

    assert "torch" in sys.modules
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    assert startup.still_unread("CUBLAS_WORKSPACE_CONFIG")
    for var in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS"):
        assert not startup.still_unread(var)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert not startup.still_unread("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert not startup.still_unread("CUBLAS_WORKSPACE_CONFIG")
    with pytest.raises(RuntimeError, match="CUBLAS_WORKSPACE_CONFIG"):
        startup.set_before_libraries("CUBLAS_WORKSPACE_CONFIG", ":16:8")


_COUNT_COMPOSES = """
import atexit, runpy, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
calls = []
original = ConfigLoaderImpl.load_configuration
def counted(self, *args, **kwargs):
    calls.append(1)
    return original(self, *args, **kwargs)
ConfigLoaderImpl.load_configuration = counted
atexit.register(lambda: print(f"COMPOSED {len(calls)}"))
module, sys.argv = sys.argv[1], ["prog", *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_plain_run_composes_its_config_once(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _COUNT_COMPOSES,
            FIXTURE,
            f"hydra.run.dir={tmp_path / 'run'}",
            "train.max_steps=1",
        ],
        env=clean_env(PYTHONHASHSEED="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "COMPOSED 1", out.stdout[-500:]
    assert (tmp_path / "run" / "run.json").is_file()


_CONF = FIXTURE_PATH / "repro_fixture" / "conf"


def _python(cwd: Path, code: str, *args: str) -> str:
    """``python -c code args`` in a fresh process; its stdout (fails the test on a non-zero exit)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


# Runs the fixture's task twice in one fresh process, once through hydra.main and once through the
# kit's HydraSession, each capturing what the task sees; prints both as JSON.
_BOTH_WAYS = """
import json, sys
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from repro.base.config import register_configs
from repro.launch.hydra_run import HydraSession
import repro_fixture.train  # registers the fixture's schema

conf_dir, out_a, out_b = sys.argv[1:4]
seen = []
def task(cfg):
    hc = HydraConfig.get()
    seen.append({
        "cfg": OmegaConf.to_container(cfg, resolve=True),
        "hydra": OmegaConf.to_container(hc, resolve=False),
    })

register_configs()
overrides = ["train.max_steps=3", "data.size=64"]
sys.argv = ["train", f"hydra.run.dir={out_a}", *overrides]
hydra.main(config_path=conf_dir, config_name="config", version_base="1.3")(task)()
session = HydraSession(task, conf_dir, "config")
session.run(session.compose([f"hydra.run.dir={out_b}", *overrides]), task)
print(json.dumps(seen, default=str))
"""


def test_the_short_path_gives_the_task_what_hydra_main_gives_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    out = _python(tmp_path, _BOTH_WAYS, str(_CONF), str(a), str(b))
    via_main, via_session = json.loads(out.strip().splitlines()[-1])
    assert via_main["cfg"] == via_session["cfg"]
    hydra_a = json.dumps(via_main["hydra"]).replace(str(a), "RUN")
    hydra_b = json.dumps(via_session["hydra"]).replace(str(b), "RUN")
    assert json.loads(hydra_a) == json.loads(hydra_b)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        text_a = (a / ".hydra" / name).read_text().replace(str(a), "RUN")
        text_b = (b / ".hydra" / name).read_text().replace(str(b), "RUN")
        assert text_a == text_b, name


def test_the_checked_run_directory_is_the_one_written(tmp_path):
    """The default directory names the clock (``${now:...}``): the config the check approved is the
    one the run uses, so the directory the check found free is the one the run writes, whenever the
    clock ticks in between."""
    code = textwrap.dedent("""
        import sys, time
        from repro.base.config import register_configs
        from repro.launch.hydra_run import HydraSession
        from hydra.core.hydra_config import HydraConfig
        import repro_fixture.train  # registers the fixture's schema
        register_configs()
        session = HydraSession(lambda cfg: None, sys.argv[1], "config")
        cfg = session.compose(["hydra.run.dir=outputs/${now:%H-%M-%S-%f}"])
        checked = str(cfg.hydra.run.dir)
        time.sleep(0.01)
        seen = []
        session.run(cfg, lambda c: seen.append(HydraConfig.get().runtime.output_dir))
        print(checked, seen[0])
    """)
    checked, used = _python(tmp_path, code, str(_CONF)).split()
    assert Path(used) == (tmp_path / checked).resolve()
