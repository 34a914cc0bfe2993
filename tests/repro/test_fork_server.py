"""The test suite's fork servers (tests/zygote_server.py) give what a fresh interpreter gives.

Most runs in the suite are forked from an interpreter that imported torch, numpy and Hydra once; these
tests check that a forked run is a faithful stand-in: the same bits and record as a fresh process,
its own RNG state, the request's arguments, directory and environment, and the exit status.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    FIXTURE,
    FORK_SERVERS,
    SESSION_ENV,
    clean_env,
    run_fixture,
    run_module,
    run_tool,
)

pytestmark = pytest.mark.skipif(FORK_SERVERS.broken, reason="no fork server on this machine")

_VOLATILE = {"started_at", "finished_at", "wall_time_s", "pid", "argv"}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _stable(manifest: dict) -> dict:
    return {k: v for k, v in _flat(manifest).items() if k.rsplit(".", 1)[-1] not in _VOLATILE}


def test_a_forked_run_gives_the_bits_and_record_of_a_fresh_one(tmp_path: Path):
    fresh = run_fixture(tmp_path / "fresh", "train.epochs=1", fresh=True)
    forked = run_fixture(tmp_path / "forked", "train.epochs=1")
    assert forked.weights == fresh.weights
    assert forked.fingerprints() == fresh.fingerprints()
    assert _stable(forked.manifest) == _stable(fresh.manifest)
    assert forked.manifest["process"]["pid"] != fresh.manifest["process"]["pid"]


_PROBE = """
import json, os, random, sys
import numpy, torch
print(json.dumps({
    "draws": [random.random(), float(numpy.random.rand()), float(torch.rand(1))],
    "argv": sys.argv[1:], "orig_argv": sys.orig_argv[1:], "path0": sys.path[0], "cwd": os.getcwd(),
    "env": os.environ.get("REPRO_PROBE"), "pid": os.getpid(),
}))
sys.stderr.write("to stderr\\n")
sys.exit(int(os.environ.get("REPRO_PROBE_EXIT", "0")))
"""


def _probe(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "zygote_probe", *args]
    done = FORK_SERVERS.run(cmd, clean_env(**env), cwd, timeout=120)
    assert done is not None, f"the fork server refused a plain run: {FORK_SERVERS.last_refusal}"
    return done


def test_a_forked_child_is_a_fresh_process_in_what_a_run_can_see(tmp_path: Path):
    (tmp_path / "zygote_probe.py").write_text(_PROBE)
    one, two = (_probe(tmp_path, "a=1", "--flag", REPRO_PROBE="x") for _ in range(2))
    first, second = json.loads(one.stdout), json.loads(two.stdout)
    assert one.returncode == 0 and one.stderr == "to stderr\n"
    assert first["draws"] != second["draws"], "the global RNGs are not reseeded in each child"
    assert first["pid"] != second["pid"]
    assert first["argv"] == ["a=1", "--flag"]
    assert first["orig_argv"] == ["-m", "zygote_probe", "a=1", "--flag"]
    assert first["path0"] == first["cwd"] == str(tmp_path)
    assert first["env"] == "x"


def test_a_forked_child_exits_with_its_status_and_other_environments_are_refused(tmp_path: Path):
    (tmp_path / "zygote_probe.py").write_text(_PROBE)
    assert _probe(tmp_path, REPRO_PROBE_EXIT="3").returncode == 3
    # variables read when torch loads, or another hash seed: the run needs a fresh interpreter
    cmd = [sys.executable, "-m", "zygote_probe"]
    assert FORK_SERVERS.run(cmd, clean_env(PROBE_EXIT="3"), tmp_path, timeout=60) is None
    assert (
        FORK_SERVERS.run(
            cmd,
            clean_env(OMP_NUM_THREADS=str(int(SESSION_ENV.get("OMP_NUM_THREADS", "1")) + 1)),
            tmp_path,
            timeout=60,
        )
        is None
    )
    assert FORK_SERVERS.run(cmd, clean_env(PYTHONHASHSEED="7"), tmp_path, timeout=60) is None


@pytest.mark.parametrize("module", [FIXTURE, "experiment.train"])
def test_a_plain_run_stays_in_forked_children(tmp_path: Path, module: str):
    """The suite's speed rests on the kit's re-executions (the hash seed pin) being served by a fork
    server too, not by a real ``execve`` into a fresh interpreter."""
    cmd = [sys.executable, "-m", module, f"hydra.run.dir={tmp_path / 'run'}", "train.max_steps=2"]
    done = FORK_SERVERS.run(cmd, clean_env(REPRO_ZYGOTE_DEBUG="1"), tmp_path, timeout=300)
    assert done is not None, FORK_SERVERS.last_refusal
    assert done.returncode == 0, done.stderr[-2000:]
    assert "zygote: re-executed for real" not in done.stderr
    assert "zygote: forked for an execve" in done.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH is new in Python 3.11")
def test_pythonsafepath_leaves_the_working_directory_off_sys_path(tmp_path: Path):
    """Replays run under ``PYTHONSAFEPATH=1``: a forked child emulates it, as a fresh one would."""
    (tmp_path / "zygote_probe.py").write_text(_PROBE)
    plain = FORK_SERVERS.run(
        [sys.executable, "-m", "zygote_probe"], clean_env(), tmp_path, timeout=120
    )
    assert plain is not None and json.loads(plain.stdout)["path0"] == str(tmp_path)
    safe = FORK_SERVERS.run(
        [sys.executable, "-m", "zygote_probe"],
        clean_env(PYTHONSAFEPATH="1"),
        tmp_path,
        timeout=120,
    )
    assert safe is not None, FORK_SERVERS.last_refusal
    assert safe.returncode == 1 and "No module named zygote_probe" in safe.stderr, safe.stderr


def test_the_tools_replays_are_forked_too_and_give_the_same_verdict(tmp_path: Path):
    """``repro verify`` forked from a server asks the server for its replay (a Popen-like child)
    instead of starting a fresh interpreter; the verdict is the one a fresh tool gives."""
    run = run_fixture(tmp_path / "run", "train.epochs=1")
    forked = run_tool(
        "verify", run.dir, "--out", tmp_path / "a", "--quiet", "--entry", FIXTURE,
        cwd=tmp_path, env={"REPRO_ZYGOTE_DEBUG": "1"},
    )  # fmt: skip
    assert forked.returncode == 0, forked.stderr[-2000:]
    assert "zygote: forked for a Popen" in forked.stderr
    fresh = run_tool(
        "verify", run.dir, "--out", tmp_path / "b", "--quiet", "--entry", FIXTURE,
        cwd=tmp_path, fresh=True,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert forked.stdout.splitlines()[-1] == fresh.stdout.splitlines()[-1] == "IDENTICAL"
    assert (tmp_path / "a" / "weights.pt").read_bytes() == run.weights
    assert (tmp_path / "b" / "weights.pt").read_bytes() == run.weights


@pytest.mark.slow
def test_torchrun_and_its_ranks_are_forked_and_give_the_bits_of_fresh_ones(tmp_path: Path):
    """A forked torchrun forks its ranks too (each a child of the server, in a session of its own);
    the run's bits are those of a fresh torchrun with fresh ranks."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", FIXTURE, "train.epochs=1"]
    forked = FORK_SERVERS.run(
        [*cmd, f"hydra.run.dir={tmp_path / 'forked'}"],
        clean_env(REPRO_ZYGOTE_DEBUG="1"),
        tmp_path,
        timeout=300,
    )
    assert forked is not None, FORK_SERVERS.last_refusal
    assert forked.returncode == 0, forked.stderr[-3000:]
    if "OMP_NUM_THREADS" in SESSION_ENV:
        assert forked.stderr.count("zygote: forked for a Popen") == 2, forked.stderr[-3000:]
        assert "zygote: started for real" not in forked.stderr
    else:  # torchrun sets OMP_NUM_THREADS=1 for its ranks: read when torch loads, so fresh ranks
        started = (
            "zygote: started for real ['-u', '-m', 'repro_fixture.train']: ['OMP_NUM_THREADS']"
        )
        assert forked.stderr.count(started) == 2, forked.stderr[-3000:]
    fresh = run_module([*cmd, f"hydra.run.dir={tmp_path / 'fresh'}"], cwd=tmp_path, fresh=True)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    weights = [(tmp_path / d / "weights.pt").read_bytes() for d in ("forked", "fresh")]
    assert weights[0] == weights[1]


def test_unbuffered_output_survives_a_kill(tmp_path: Path):
    """``PYTHONUNBUFFERED`` (torchrun starts its ranks with ``-u``): what a child printed before it was
    killed is in its output, as with a fresh unbuffered interpreter."""
    code = (
        "import os, signal, sys\nprint('before the kill')\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    (tmp_path / "zygote_killed.py").write_text(code)
    cmd = [sys.executable, "-m", "zygote_killed"]
    done = FORK_SERVERS.run(cmd, clean_env(PYTHONUNBUFFERED="1"), tmp_path, timeout=60)
    assert done is not None, FORK_SERVERS.last_refusal
    assert done.returncode == -9 and done.stdout == "before the kill\n", done
