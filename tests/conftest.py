"""Shared helpers: run the main job in a separate process and read its record."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
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


#: ``REPRO_TESTS_FRESH=1``: every run in a fresh interpreter, none forked from the fork servers.
ALWAYS_FRESH = os.environ.get("REPRO_TESTS_FRESH") == "1"


class ForkServers:
    """Interpreters that imported torch, numpy and Hydra once and fork a child per run
    (``tests/zygote_server.py``): a run then costs its own work, not 2.4 s of imports. One server per
    hash seed a run may start with ("" for none, "0" for the kit's pin), started on first use; a run
    they cannot serve as a fresh interpreter would (another environment, flags) gets a real process."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.bases: dict[str, dict[str, str]] = {}
        self.procs: list[subprocess.Popen] = []
        self.broken = False
        #: Why the last run was not served (for the fork server's own tests).
        self.last_refusal = ""

    def _start(self) -> None:
        folder = tempfile.mkdtemp(prefix="repro-zygote-")
        self.paths = {"": os.path.join(folder, "none"), "0": os.path.join(folder, "zero")}
        peers = [f"{seed}={path}" for seed, path in self.paths.items()]
        server = str(Path(__file__).with_name("zygote_server.py"))
        for seed, path in self.paths.items():
            env = clean_env(**({"PYTHONHASHSEED": seed} if seed else {}))
            self.bases[seed] = env
            proc = subprocess.Popen(
                [sys.executable, server, path, *peers],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=folder,
            )
            self.procs.append(proc)
        for proc in self.procs:
            if proc.stdout.readline() != b"ready\n":
                raise RuntimeError("a fork server did not start")
        atexit.register(self.stop)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
            proc.wait(timeout=30)
        self.procs = []

    def run(self, cmd: list[str], env: dict[str, str], cwd: Path, timeout: float):
        """``cmd`` (``python -m module ...``) forked from a server, as ``subprocess.run(...,
        capture_output=True, text=True)`` would give it; ``None`` where no server can serve it."""
        from zygote_server import ask, env_difference, module_argv

        seed = env.get("PYTHONHASHSEED", "")
        if ALWAYS_FRESH or self.broken or cmd[0] != sys.executable or not module_argv(cmd[1:]):
            return None
        if not self.procs:
            try:
                self._start()
            except (OSError, RuntimeError) as err:
                self.broken = True
                print(f"fork servers unavailable ({err}): runs start fresh interpreters")
                return None
        if seed not in self.paths:
            self.last_refusal = f"no server for PYTHONHASHSEED={seed}"
            return None
        differ = env_difference(env, self.bases[seed])
        if differ:
            self.last_refusal = "environment differs in " + ", ".join(differ)
            return None
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            with open(os.devnull) as nothing:
                fds = [nothing.fileno(), out.fileno(), err.fileno()]
                conn, pid = ask(self.paths[seed], cmd[1:], env, str(cwd), fds, None)
            with conn:
                conn.settimeout(timeout)
                try:
                    status = json.loads(conn.recv(1 << 20))["status"]
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(cmd, timeout) from None
            texts = []
            for stream in (out, err):
                stream.seek(0)
                text = stream.read().decode(errors="replace")
                texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
        return subprocess.CompletedProcess(cmd, status, texts[0], texts[1])


FORK_SERVERS = ForkServers()


def run_main(
    run_dir: Path,
    *overrides: str,
    env: dict | None = None,
    check: bool = True,
    cwd: Path | None = None,
    args: list[str] | None = None,
    module: str = "experiment.train",
    fresh: bool = False,
) -> Run:
    """``python -m experiment.train`` (or ``module``) in a new process, writing into ``run_dir``.

    The process is forked from a fork server (:class:`ForkServers`) where one can serve it;
    ``fresh=True`` starts a new interpreter, for claims about processes (see docs/testing.md)."""
    cmd = [sys.executable, "-m", module, *(args or []), f"hydra.run.dir={run_dir}", *overrides]
    proc = run_module(cmd, cwd=cwd or run_dir.parent, env=env, fresh=fresh)
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
    cmd: list[str], *, cwd: Path, env: dict | None = None, fresh: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``cmd`` (``python -m MODULE ...``) as ``subprocess.run(cmd, capture_output=True, text=True)``
    gives it, in the session's clean environment plus ``env``: forked from a fork server where one
    can serve it, else (or with ``fresh=True``: claims about processes) a fresh interpreter."""
    full_env = {**clean_env(), **(env or {})}
    proc = None if fresh else FORK_SERVERS.run(cmd, full_env, cwd, timeout=timeout)
    if proc is None:
        proc = subprocess.run(
            cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    return proc


def run_tool(*args, cwd: Path, env: dict | None = None, fresh: bool = False, timeout: float = 600):
    """``python -m repro ARGS`` (the kit's command line) through :func:`run_module`; forked, its
    replays (``verify``, ``diff``) are forked too (``tests/zygote_server.py``)."""
    cmd = [sys.executable, "-m", "repro", *map(str, args)]
    return run_module(cmd, cwd=cwd, env=env, fresh=fresh, timeout=timeout)


def verify_identical(
    run_dir: Path, out: Path, *, entry: str | None = None, fresh: bool = False
) -> None:
    """``repro verify RUN --out OUT --quiet`` (a full replay in another process) says IDENTICAL.
    ``entry``: the project's entry module (the fixture's, for the kit's tests); ``fresh``: the tool
    and its replay in fresh interpreters."""
    args = ["verify", run_dir, "--out", out, "--quiet", *(["--entry", entry] if entry else [])]
    done = run_tool(*args, cwd=out.parent, fresh=fresh)
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
