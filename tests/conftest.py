"""Shared helpers: run the main job in a separate process and read its record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The kit's own fixture experiment (``python -m repro_fixture.train``), importable from here.
FIXTURE_PATH = REPO / "tests" / "fixture"
FIXTURE = "repro_fixture.train"

#: A few seconds per run: small data, two short epochs.
QUICK = ["experiment=quick"]
TIME_FIELDS = {"time_s", "samples_per_s"}


@dataclass
class Run:
    dir: Path
    proc: subprocess.CompletedProcess

    @property
    def manifest(self) -> dict:
        return json.loads((self.dir / "run.json").read_text())

    @property
    def weights(self) -> bytes:
        return (self.dir / "weights.pt").read_bytes()

    def fingerprints(self) -> list[dict]:
        return [
            json.loads(line) for line in (self.dir / "fingerprints.jsonl").read_text().splitlines()
        ]

    def metrics(self, drop_time: bool = True) -> list[dict]:
        rows = [json.loads(line) for line in (self.dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not (drop_time and k in TIME_FIELDS)} for r in rows]


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker's runs get an equal share of the CPU cores for torch's
    intra-op threads (``OMP_NUM_THREADS``), unless the shell set it. With every worker's runs taking
    all cores, OpenMP threads of different workers spin against each other (on 2 cores and 2 workers:
    a quarter of the suite's CPU time). Tests whose claim is about thread counts set them
    explicitly (``repro.threads``); a run's bits for a given thread count do not depend on this."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // workers))


_share_the_cores()

#: The environment this test process started with. In-process tests change ``os.environ`` (the kit sets
#: its pins and inductor's switch there, as it does in a run); a run in another process must not
#: depend on which test ran before it on the same worker.
SESSION_ENV = dict(os.environ)


def clean_env(*also_drop: str, **extra: str) -> dict[str, str]:
    """The test session's environment (:data:`SESSION_ENV`) without the kit's own variables and the hash seed (the process under
    test must get there by itself), nor variables starting with ``also_drop``; plus ``extra``.
    The fixture experiment is importable (``PYTHONPATH``)."""
    drop = ("REPRO_", "PYTHONHASHSEED", *also_drop)
    env = {k: v for k, v in SESSION_ENV.items() if not k.startswith(drop)}
    paths = [str(FIXTURE_PATH), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return {**env, **extra}


def run_python(
    tmp_path: Path,
    program: str,
    *args: str,
    sitecustomize: str | None = None,
    timeout: float = 300,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``program`` (dedented, written to ``tmp_path/program.py``) with ``args`` in a fresh
    interpreter: working directory ``tmp_path``, the session's clean environment plus ``env``, the
    kit's ``src`` and the fixture importable; ``sitecustomize``: code the interpreter runs first
    (claims about how a process starts or ends)."""
    paths = [str(REPO / "src"), str(FIXTURE_PATH)]
    if sitecustomize is not None:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(sitecustomize)
        paths.insert(0, str(site))
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(program))
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=clean_env(PYTHONPATH=os.pathsep.join(paths), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def run_main(
    run_dir: Path,
    *overrides: str,
    env: dict | None = None,
    check: bool = True,
    cwd: Path | None = None,
    args: list[str] | None = None,
    module: str = "experiment.train",
) -> Run:
    """``python -m experiment.train`` (or ``module``) in a fresh interpreter, writing into ``run_dir``."""
    cmd = [sys.executable, "-m", module, *(args or []), f"hydra.run.dir={run_dir}", *overrides]
    proc = run_module(cmd, cwd=cwd or run_dir.parent, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return Run(run_dir, proc)


@pytest.fixture
def run_train(tmp_path: Path):
    """Factory: ``run_train("name", *overrides)`` runs the main job into ``tmp_path/name``."""

    def _run(name: str, *overrides: str, **kwargs) -> Run:
        return run_main(tmp_path / name, *overrides, **kwargs)

    return _run


_TORCH_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("TORCH-IMPORTED" if "torch" in sys.modules else "NO-TORCH"))
module, sys.argv = sys.argv[1], ["prog", *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def imports_torch(module: str, *args: str, cwd: Path) -> bool:
    """Whether ``python -m module args`` imported torch by the time it exited (checked in a fresh process)."""
    out = subprocess.run(
        [sys.executable, "-c", _TORCH_PROBE, module, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = (out.stdout.strip().splitlines() or ["?"])[-1]
    assert last in ("NO-TORCH", "TORCH-IMPORTED"), out.stdout[-500:] + out.stderr[-500:]
    return last == "TORCH-IMPORTED"


def run_fixture(run_dir: Path, *overrides: str, **kwargs) -> Run:
    """The kit's fixture experiment in a fresh process, writing into ``run_dir``."""
    return run_main(run_dir, *overrides, module=FIXTURE, **kwargs)


def run_module(
    cmd: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``cmd`` (``python -m MODULE ...``) in a fresh interpreter, as a user starts it, in the
    session's clean environment plus ``env``; as ``subprocess.run(cmd, capture_output=True,
    text=True)`` gives it."""
    full_env = {**clean_env(), **(env or {})}
    return subprocess.run(
        cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_tool(*args, cwd: Path, env: dict | None = None, timeout: float = 600):
    """``python -m repro ARGS`` (the kit's command line) through :func:`run_module`."""
    cmd = [sys.executable, "-m", "repro", *map(str, args)]
    return run_module(cmd, cwd=cwd, env=env, timeout=timeout)


def verify_identical(run_dir: Path, out: Path, *, entry: str | None = None) -> None:
    """``repro verify RUN --out OUT --quiet`` (a full replay in another process) says IDENTICAL.
    ``entry``: the project's entry module (the fixture's, for the kit's tests)."""
    args = ["verify", run_dir, "--out", out, "--quiet", *(["--entry", entry] if entry else [])]
    done = run_tool(*args, cwd=out.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "IDENTICAL"


def run_on_terminal(cmd: list[str], cwd: Path) -> tuple[int, str, bytes]:
    """Run ``cmd`` with its stderr on a pseudo-terminal (160 columns): (exit status, what the terminal
    showed, stdout)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # rows, columns
    proc = subprocess.Popen(cmd, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout = proc.stdout.read()
    return proc.wait(timeout=600), b"".join(chunks).decode(errors="replace"), stdout


@pytest.fixture
def fixture_run(tmp_path: Path):
    """Factory: ``fixture_run("name", *overrides)`` runs the fixture experiment into ``tmp_path/name``."""

    def _run(name: str, *overrides: str, **kwargs) -> Run:
        return run_fixture(tmp_path / name, *overrides, **kwargs)

    return _run


@pytest.fixture(scope="session")
def default_fixture_run(tmp_path_factory) -> Run:
    """The fixture experiment's run with its default config (no overrides), once per test process (an
    xdist worker) and shared by the tests that compare against it or read its record, in any module
    (rerun, resume, run directory, in-process API, progress lines, the tools). None of them writes
    into it; a test that alters a run copies it or makes its own."""
    return run_fixture(tmp_path_factory.mktemp("default-fixture-run") / "run")


@pytest.fixture(autouse=True)
def _thawed_torch_flags():
    """Importing ``torch.testing._internal.common_utils`` (the OpInfo tests do) freezes torch's global backend
    flags for the whole process; the kit sets them on purpose, so every test starts with them thawed."""
    import torch.backends

    if torch.backends.flags_frozen():
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    yield


def pytest_collection_modifyitems(config, items):
    """Modules with the most ``slow`` tests first (the longest work starts first, and ``--dist
    worksteal`` balances what is left from the end of the queues); tests marked ``gpu`` skip cleanly
    where no CUDA device is present."""
    import torch

    slow: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        slow[module] = slow.get(module, 0) + ("slow" in item.keywords)
    items.sort(key=lambda item: -slow[item.nodeid.split("::")[0]])  # stable within a module
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def torchrun(run_dir, *overrides, nproc=2, check=True, env=None):
    """torchrun on the example, as a user starts it: the launcher and every rank fresh interpreters."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "experiment.train",
        *overrides,
    ]
    if not any(o.startswith("train.resume=") and o != "train.resume=auto" for o in overrides):
        cmd.append(f"hydra.run.dir={run_dir}")
    proc = run_module(cmd, cwd=run_dir.parent, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return Run(run_dir, proc)
