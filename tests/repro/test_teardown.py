"""The quick end of a process (``repro.launch.teardown``): nothing written is lost, garbage is still
finalised, the interpreter's own exit status is kept, and ``REPRO_FULL_TEARDOWN=1`` turns it off.
Every case is a fresh interpreter: the claim is about how a process ends."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURE, run_python

# Registered before the kit's handler, so it runs after it: it records what the handler left.
_LAST_WORD = """
import atexit, gc, os
def _last_word():
    with open(os.environ["LAST_WORD"], "w") as f:
        f.write(str(gc.get_freeze_count()))
atexit.register(_last_word)
"""

_PROGRAM = """
import gc, os, sys
from pathlib import Path
gc.disable()  # no collection by chance: only the exit's own collections finalise the garbage below
OUT = Path(sys.argv[1])

# A file held by a module global, never closed.
KEPT = open(OUT / "global.txt", "w")
KEPT.write("global " * 5000)   # more than one buffer's worth, and a tail left in the buffer

class Holder:  # a file reachable at exit only through a reference cycle
    def __init__(self, path):
        self.file, self.me = open(path, "w"), self
HELD = Holder(OUT / "cycle.txt")
HELD.file.write("cycle")

class Finaliser:  # unreachable cyclic garbage whose __del__ writes: still finalised
    def __init__(self):
        self.me = self
    def __del__(self, _open=open, _out=OUT):
        with _open(_out / "del.txt", "w") as f:
            f.write("finalised")
Finaliser()

class Proxy:  # like torch.distributed.reduce_op: reading __class__ warns
    @property
    def __class__(self):
        sys.stderr.write("__class__ read at exit\\n")
        return Proxy
PROXY = Proxy()

from repro.launch.teardown import quick_teardown_at_exit
quick_teardown_at_exit()
"""


def _run(tmp_path: Path, program: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    last_word = str(tmp_path / "last_word")
    return run_python(
        tmp_path, program, *args, sitecustomize=_LAST_WORD, timeout=120, LAST_WORD=last_word, **env
    )


def _frozen(tmp_path: Path) -> int:
    return int((tmp_path / "last_word").read_text())


@pytest.mark.parametrize("full", ["", "1"], ids=["quick", "full"])
def test_nothing_written_is_lost(tmp_path: Path, full: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = _run(tmp_path, _PROGRAM, str(out), REPRO_FULL_TEARDOWN=full)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (out / "global.txt").read_text() == "global " * 5000
    assert (out / "del.txt").read_text() == "finalised"
    if not full:
        # CPython's own teardown may leave a file held by a cycle unflushed; the quick one flushes it.
        assert (out / "cycle.txt").read_text() == "cycle"
        assert _frozen(tmp_path) > 0  # the handler ran: the heap was frozen before the teardown
    else:
        assert _frozen(tmp_path) == 0  # REPRO_FULL_TEARDOWN=1: the interpreter's own teardown


def test_a_broken_stdout_still_fails_the_process(tmp_path: Path) -> None:
    """The standard streams are left to the interpreter: a failed flush of stdout at exit still
    gives its exit status 120, as without the kit."""
    program = (
        "import os, sys\n"
        "from repro.launch.teardown import quick_teardown_at_exit\n"
        "quick_teardown_at_exit()\n"
        "sys.stdout = open('/dev/full', 'w')\n"
        "sys.stdout.write('x')\n"
    )
    for full in ("", "1"):
        proc = _run(tmp_path, program, REPRO_FULL_TEARDOWN=full)
        assert proc.returncode == 120, (full, proc.returncode, proc.stderr)


@pytest.mark.parametrize(
    "command",
    [["-m", FIXTURE, "--help"], ["-m", "repro", "--help"]],
    ids=["entry point", "tools"],
)
def test_the_kit_s_programs_end_quickly(tmp_path: Path, command: list[str]) -> None:
    """The entry point and ``python -m repro`` register the quick end, and the opt-out holds."""
    launcher = (
        "import runpy, sys\n"
        "sys.argv = sys.argv[1:]\n"
        "sys.path.pop(0)\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    )
    proc = _run(tmp_path, launcher, command[1], *command[2:])
    assert proc.returncode == 0, proc.stderr
    assert _frozen(tmp_path) > 0
    proc = _run(tmp_path, launcher, command[1], *command[2:], REPRO_FULL_TEARDOWN="1")
    assert proc.returncode == 0, proc.stderr
    assert _frozen(tmp_path) == 0


def test_a_library_call_of_the_tools_leaves_the_exit_alone(tmp_path: Path) -> None:
    """``repro.tools.cli.main(argv)`` called from Python registers nothing: the caller's process
    may go on, and it ends as its own program decides."""
    program = (
        "import contextlib, io\n"
        "from repro.tools.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
    )
    proc = _run(tmp_path, program)
    assert proc.returncode == 0, proc.stderr
    assert _frozen(tmp_path) == 0


def test_registering_again_runs_it_once(tmp_path: Path) -> None:
    """Every entry point call registers it; the handler still runs once at exit."""
    program = (
        "import atexit, os\n"
        "from repro.launch import teardown\n"
        "freeze = teardown.gc.freeze\n"
        "def counted():\n"
        "    with open(os.path.join(os.getcwd(), 'runs'), 'a') as f:\n"
        "        f.write('x')\n"
        "    freeze()\n"
        "teardown.gc.freeze = counted\n"
        "for _ in range(3):\n"
        "    teardown.quick_teardown_at_exit()\n"
    )
    proc = _run(tmp_path, program)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs").read_text() == "x"
