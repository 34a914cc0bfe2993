"""The test suite's fork server: an interpreter that has imported torch, numpy and Hydra once, and
forks a child for each run the tests ask for, instead of starting Python and importing them again.

Run by ``tests/conftest.py`` (``python tests/zygote_server.py SOCKET``), never by users. A run costs
about 2.8 s on two cores, of which about 2.4 s is importing torch (with ``torch._dynamo``, which the
first optimizer step imports), numpy and Hydra: a child forked from here skips that (and the
0.8 s of inductor's modules that a run with ``train.compile=true`` imports).

What a child does to look like ``python -m MODULE ARGS`` started afresh:

- takes the request's stdin/stdout/stderr, working directory, environment, ``sys.argv``,
  ``sys.orig_argv`` and ``sys.path[0]``; joins the requester's process group (or makes its own);
- reseeds python's, numpy's and torch's global RNGs from the OS, as a fresh interpreter would be;
- runs MODULE as ``__main__`` and exits as the interpreter would (atexit handlers, threads joined);
- ``os.execve`` of this interpreter on ``-m MODULE`` (the kit's re-executions to pin the hash seed)
  with an environment the server can serve asks the server for a new child and exits with its
  status; any other ``execve`` is a real one;
- ``subprocess.Popen`` of this interpreter on ``[-u] -m MODULE`` by the kit's replays
  (``repro.tools.replay``: ``repro verify`` and ``repro diff`` re-running a run) or by torchrun's
  agent (its ranks) with an environment the server can serve gets a forked child behind a
  Popen-like object; any other ``Popen`` is a real one.

The server only serves environments equal to its own but for the kit's variables (``REPRO_*``) and
the hash seed (fixed when an interpreter starts) and cuBLAS's workspace setting: the client runs one server per hash seed
it needs ("0", the kit's pin, and "" for none set, started without one) and starts a real process
for anything else. What a fork cannot give is said in ``docs/testing.md``: a child inherits the
server's address layout and its already-imported modules.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys

#: Environment keys a request may set differently from the server's own: the kit's and pytest's variables, the
#: hash seed (each server has one), and what is read only when first used (cuBLAS reads its workspace
#: setting when CUDA makes its first handle). Thread counts, ISA and capability pins are read when
#: torch and its libraries load: a run that sets them gets a fresh interpreter.
FREE_KEYS = ("REPRO_", "PYTEST_", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")
#: What torchrun sets for each rank: read by ``torch.distributed`` when the process group starts.
RANK_KEYS = frozenset(
    [
        "RANK",
        "LOCAL_RANK",
        "GROUP_RANK",
        "ROLE_RANK",
        "ROLE_NAME",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_WORLD_SIZE",
        "ROLE_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ]
)
RANK_PREFIXES = ("TORCHELASTIC_", "TORCH_NCCL_")
#: Interpreter settings a child emulates: ``PYTHONSAFEPATH`` (no working directory on
#: ``sys.path``) and ``PYTHONUNBUFFERED`` (``-u``: stdout and stderr written through).
EMULATED_KEYS = ("PYTHONSAFEPATH", "PYTHONUNBUFFERED")
_MAX_MESSAGE = 1 << 20


def _comparable(env: dict[str, str]) -> dict[str, str]:
    free = FREE_KEYS + EMULATED_KEYS + RANK_PREFIXES
    return {k: v for k, v in env.items() if not k.startswith(free) and k not in RANK_KEYS}


def env_difference(env: dict[str, str], base: dict[str, str]) -> list[str]:
    """The variables that keep a server started in ``base`` from serving ``env`` (sorted; empty
    where it can): those that differ, but for the ones read after start-up or emulated."""
    ours, theirs = _comparable(dict(env)), _comparable(dict(base))
    return sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))


def module_argv(args: list[str]) -> tuple[list[str], list[str]] | None:
    """An interpreter's arguments ``[-u] -m MODULE ARGS...`` as (flags, [MODULE, ARGS...]); None
    for anything else (a script, ``-c``, other flags): a child runs only what it can emulate."""
    flags = [a for a in args[:1] if a == "-u"]
    rest = args[len(flags) :]
    if len(rest) < 2 or rest[0] != "-m":
        return None
    return flags, rest[1:]


def _preload() -> None:
    import warnings

    # Forking a process that holds an OpenBLAS thread is what DataLoader workers do too.
    warnings.simplefilter("ignore", DeprecationWarning)
    import hydra  # noqa: F401
    import hydra._internal.utils  # noqa: F401
    import numpy  # noqa: F401
    import omegaconf  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401  (the first optimizer step imports it)
    import torch._functorch.aot_autograd  # noqa: F401  (torch.compile's first call imports these)
    import torch._inductor.async_compile  # noqa: F401
    import torch._inductor.codecache  # noqa: F401
    import torch._inductor.compile_fx  # noqa: F401
    import torch.utils.data  # noqa: F401

    del torch
    _quiet_library_finalizers()


def _quiet_library_finalizers() -> None:
    """torch.library's op registrations each leave a ``weakref.finalize`` that deregisters them at
    exit (188 of them): about 40 ms in every child's exit, for a process that is ending anyway.
    Dropped from the exit here, once; finalizers a run makes itself still run."""
    import weakref

    registry = getattr(weakref.finalize, "_registry", {})
    for finalizer, info in list(registry.items()):
        if getattr(info.func, "__module__", "") == "torch.library":
            finalizer.atexit = False


def _send(conn: socket.socket, payload: dict) -> None:
    with contextlib.suppress(OSError):
        conn.send(json.dumps(payload).encode())


def serve(path: str) -> tuple[dict, list[int]] | None:
    """Serve requests on the unix socket ``path`` until stdin closes; in a forked child, return its
    request and file descriptors (the caller then runs it)."""
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    waiting: dict[int, socket.socket] = {}
    # A pidfd per child wakes the loop the moment the child ends (Linux 5.3+); else poll often.
    pidfds: dict[int, int] | None = {} if hasattr(os, "pidfd_open") else None
    stdin = sys.stdin.fileno()
    while True:
        watched = [listener, stdin, *(pidfds.values() if pidfds is not None else ())]
        ready, _, _ = select.select(watched, [], [], 0.02 if pidfds is None else 1.0)
        if stdin in ready and not os.read(stdin, 1024):
            return None  # the test session is over
        if listener in ready:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in waiting.values():
                    other.close()
                for fd in (pidfds or {}).values():
                    os.close(fd)
                return request, fds
            for fd in fds:
                os.close(fd)
            # The child's process group exists before its pid is known (as after a real Popen with
            # start_new_session): the child sets it too, but only once it runs.
            with contextlib.suppress(OSError):
                os.setpgid(pid, request["pgid"] or pid)
            _send(conn, {"pid": pid})
            waiting[pid] = conn
            if pidfds is not None:
                try:
                    pidfds[pid] = os.pidfd_open(pid)
                except OSError:  # no pidfds here after all: back to polling
                    for fd in pidfds.values():
                        os.close(fd)
                    pidfds = None
        while waiting:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pidfds is not None and pid in pidfds:
                os.close(pidfds.pop(pid))
            conn = waiting.pop(pid, None)
            if conn is not None:
                _send(conn, {"status": os.waitstatus_to_exitcode(status)})
                conn.close()


def ask(
    path: str, argv: list[str], env: dict[str, str], cwd: str, fds: list[int], pgid: int | None
):
    """Send a request to the server at ``path``: the connection, and the child's pid."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.connect(path)
    request = {"argv": argv, "env": env, "cwd": cwd, "pgid": pgid}
    socket.send_fds(conn, [json.dumps(request).encode()], fds)
    pid = json.loads(conn.recv(_MAX_MESSAGE))["pid"]
    return conn, pid


def _become(request: dict, fds: list[int], servers: dict[str, str], base: dict[str, str]) -> None:
    """In a forked child: take on the request's process state, then run its module as ``__main__``."""
    import random
    import runpy

    import numpy
    import torch

    os.setpgid(0, request["pgid"] or 0)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    cwd, argv = request["cwd"], request["argv"]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.orig_argv = [sys.executable, *argv]
    flags, module_args = module_argv(argv)
    if "-u" in flags or request["env"].get("PYTHONUNBUFFERED"):
        _unbuffered()
    if not getattr(sys.flags, "safe_path", False):
        del sys.path[0]  # the server script's folder
    if not (request["env"].get("PYTHONSAFEPATH") and sys.version_info >= (3, 11)):
        sys.path.insert(0, cwd)  # what -m puts first (nothing under PYTHONSAFEPATH, from 3.11)
    random.seed()
    numpy.random.seed()
    torch.seed()
    real_execve = os.execve

    def server_for(cmd, env, what: str) -> str | None:
        """The server that can fork ``cmd`` (``python [-u] -m MODULE ...``) in ``env``, if any;
        ``what`` names the fallback in the debug line (a real execve, a real process)."""
        args = [os.fspath(a) for a in cmd] if isinstance(cmd, (list, tuple)) else []
        server = servers.get(env.get("PYTHONHASHSEED", ""))
        if args[:1] != [sys.executable] or module_argv(args[1:]) is None or server is None:
            return None
        differ = env_difference(env, base)
        if differ and os.environ.get("REPRO_ZYGOTE_DEBUG"):
            print(f"zygote: {what} for real {args[1:4]}: {differ}", file=sys.stderr)
        return None if differ else server

    def execve(path, args, env):  # the kit re-executing itself: a new child of the right server
        args = list(args)
        server = server_for([path, *args[1:]], env, "re-executed")
        if server is None:
            return real_execve(path, args, env)
        if os.environ.get("REPRO_ZYGOTE_DEBUG"):
            print(f"zygote: forked for an execve {args[:3]}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        conn, _ = ask(server, args[1:], dict(env), os.getcwd(), [0, 1, 2], os.getpgid(0))
        status = json.loads(conn.recv(_MAX_MESSAGE))["status"]
        if status < 0:
            os.kill(os.getpid(), -status)
        os._exit(status if status >= 0 else 128 - status)

    os.execve = execve
    _fork_children(lambda cmd, env: server_for(cmd, env, "started"))
    module = module_args[0]
    sys.argv = list(module_args)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _exit(code)


class _ForkedChild:
    """What ``repro.tools.replay`` and torchrun's agent use of a ``subprocess.Popen`` (``pid``,
    ``wait``, ``poll``, signals; text pipes for stdout and stderr where asked), for a child forked
    by a server. ``fds``: the child's stdin, stdout and stderr (``None``: a pipe to read here)."""

    def __init__(self, server, args, env, cwd, fds, errors=None, own_group=True) -> None:
        self.args, self.returncode, self.stdin = args, None, None
        sys.stdout.flush()  # what the caller printed comes before what the child prints
        sys.stderr.flush()
        ours, theirs, readers = [], [], []
        for fd in fds:
            if fd is None:
                read, write = os.pipe()
                ours.append(write)
                theirs.append(write)
                readers.append(open(read, encoding="utf-8", errors=errors, buffering=1))  # noqa: SIM115
            else:
                theirs.append(fd)
                readers.append(None)
        self.stdout, self.stderr = readers[1], readers[2]
        where = os.fspath(cwd) if cwd is not None else os.getcwd()
        pgid = None if own_group else os.getpgid(0)
        try:
            self._conn, self.pid = ask(server, args[1:], dict(env), where, theirs, pgid)
        except BaseException:
            for stream in readers:
                if stream is not None:
                    stream.close()
            raise
        finally:
            for fd in ours:
                os.close(fd)
        _FORKED_PIDS.add(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._conn.settimeout(None if timeout is None else max(0.0, timeout))
            try:
                message = self._conn.recv(_MAX_MESSAGE)
            except (TimeoutError, BlockingIOError):
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            self.returncode = json.loads(message)["status"]
            self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


#: The pids of this process's forked children: the server reaps a child as soon as it exits, where
#: a real child stays a zombie until its parent waits for it, so a ``killpg`` of one that has just
#: exited finds no group (torchrun's agent checks ``poll()``, then kills the group).
_FORKED_PIDS: set[int] = set()

#: Callers whose ``Popen`` of ``python [-u] -m MODULE`` a server may fork instead: the kit's replays
#: (``repro verify``, ``repro diff``) and torchrun's workers.
_REPLAY = "repro.tools.replay"
_TORCHRUN = "torch.distributed.elastic.multiprocessing.subprocess_handler.subprocess_handler"


def _fork_children(server_for) -> None:
    """``subprocess.Popen`` in a child: a forked child instead of a fresh interpreter for the kit's
    replays (text pipes, no stdin) and torchrun's workers (inherited or file streams, a session
    of their own), where a server can serve the environment; any other ``Popen`` is a real one."""
    real = subprocess.Popen
    known = {"env", "stdout", "stderr", "stdin", "text", "errors", "bufsize", "cwd"}

    def fd_of(stream, default: int) -> int | None:
        if stream is None:
            return default
        if isinstance(stream, int) and stream >= 0:
            return stream
        return stream.fileno() if hasattr(stream, "fileno") else None

    class Popen(real):
        def __new__(cls, *pargs, **kw):
            caller = sys._getframe(1).f_globals.get("__name__")
            args = kw.pop("args", None) if not pargs else pargs[0]
            env = kw.get("env")
            ours = cls is Popen and caller in (_REPLAY, _TORCHRUN) and len(pargs) <= 1
            server = server_for(args, env) if ours and env is not None else None
            if server is None:
                return super().__new__(cls)
            child = None
            if (
                caller == _REPLAY
                and set(kw) <= known | {"universal_newlines"}
                and kw.get("stdout") == kw.get("stderr") == subprocess.PIPE
                and kw.get("stdin") == subprocess.DEVNULL
                and (kw.get("text") or kw.get("universal_newlines"))
            ):
                with open(os.devnull) as nothing:
                    fds = [nothing.fileno(), None, None]
                    child = _ForkedChild(  # in the caller's process group, as a real one would be
                        server, list(args), env, kw.get("cwd"), fds, kw.get("errors"), False
                    )
            elif caller == _TORCHRUN and set(kw) <= (known - {"stdin"}) | {"start_new_session"}:
                fds = [0, fd_of(kw.get("stdout"), 1), fd_of(kw.get("stderr"), 2)]
                if None not in fds:
                    own = bool(kw.get("start_new_session"))
                    child = _ForkedChild(server, list(args), env, kw.get("cwd"), fds, own_group=own)
            if child is None:
                return super().__new__(cls)
            if os.environ.get("REPRO_ZYGOTE_DEBUG"):
                print(f"zygote: forked for a Popen {list(args)[1:4]}", file=sys.stderr)
            return child

    subprocess.Popen = Popen
    real_killpg = os.killpg

    def killpg(pgid: int, sig: int) -> None:
        try:
            real_killpg(pgid, sig)
        except ProcessLookupError:
            if pgid not in _FORKED_PIDS:
                raise

    os.killpg = killpg


def _unbuffered() -> None:
    """stdout and stderr as ``python -u`` makes them: text written through to the descriptor."""
    import io

    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "w", closefd=False)
        new = io.TextIOWrapper(raw, encoding=old.encoding, errors=old.errors, write_through=True)
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)


def _exit_code(code) -> int:
    """The status the interpreter exits with for ``SystemExit(code)`` (printing a message code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """End as the interpreter does (threads joined, atexit handlers, streams flushed) without tearing
    down every module: with torch loaded, that teardown alone takes about 0.4 s."""
    import atexit
    import threading

    threading._shutdown()
    teardown = sys.modules.get("repro.launch.teardown")
    if teardown is not None:  # its collection and file scan would only delay the os._exit below
        teardown.cancel()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    # argv: this server's socket, then "HASHSEED=SOCKET" for every server a re-execution may use.
    own, peers = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
    base = dict(os.environ)
    child = serve(own)
    if child is not None:
        _become(*child, peers, base)
