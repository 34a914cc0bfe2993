"""A quicker end for the processes the kit starts, with nothing written lost.

When CPython ends it tears its heap down: it clears every module and collects the reference cycles
that tie modules, classes and functions together. In a process that has imported torch (and with
it ``torch._dynamo``, which the first optimizer imports), that takes about 0.5 s of the process's
wall time, spent freeing memory the operating system frees anyway.

:func:`quick_teardown_at_exit` registers an exit handler that, once every handler registered
after it has run (the run's own, the user's), does three things:

1. collects the garbage there is (a full ``gc.collect()``, with the interpreter still whole), so
   unreachable objects are finalised as they would be at teardown: their ``__del__`` runs, their
   files are closed;
2. flushes every open file object that is still reachable (stdout and stderr are left to the
   interpreter, which reports a broken pipe in its exit status);
3. freezes the garbage collector (``gc.freeze()``): the collections of the teardown then skip the
   objects alive at that moment, and the modules' cycles are left to the operating system.

Handlers registered before it (``logging``'s, ``multiprocessing``'s, ``weakref.finalize``) still run
after it, threads are still joined, and objects not held by a cycle are still freed as modules are
cleared. What no longer runs is the ``__del__`` of objects still reachable at exit only through a
reference cycle or the ``__main__`` module; Python does not promise those either (the data model's
note on ``__del__``). An unclosed writer whose format needs its ``close()`` (a gzip or zip file
left open at exit) has its buffered bytes flushed, not its trailer written: close such files, or
set ``REPRO_FULL_TEARDOWN=1`` for the interpreter's full teardown. Measured on a 1-step run of
the example (2-core Intel VM): from the end of the task to the process's exit 0.52 s -> 0.22 s.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

#: Set to 1 (or any value but 0 or empty) for CPython's full teardown at exit.
FULL_TEARDOWN_ENV = "REPRO_FULL_TEARDOWN"


def quick_teardown_at_exit() -> None:
    """Register :func:`_quick_teardown` as an exit handler (once: registering again replaces it),
    unless ``REPRO_FULL_TEARDOWN`` asks for the full teardown."""
    if os.environ.get(FULL_TEARDOWN_ENV, "").strip() in ("", "0"):
        cancel()
        atexit.register(_quick_teardown)


def cancel() -> None:
    """Unregister the handler (a process that ends with ``os._exit`` right after the exit handlers
    gains nothing from it)."""
    atexit.unregister(_quick_teardown)


def flush_open_files() -> None:
    """Flush every open, writable file object that is still reachable, except the standard
    streams. Errors of a single file are ignored (it is the end of the process: the interpreter
    would ignore them too)."""
    import io

    try:
        import _io

        base = _io._IOBase  # the C base of every file object
    except (ImportError, AttributeError):
        base = io.IOBase
    std: set[int] = set()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        while stream is not None and id(stream) not in std:  # the stream, its buffer, its raw file
            std.add(id(stream))
            stream = getattr(stream, "buffer", None) or getattr(stream, "raw", None)
    # By type, not isinstance: isinstance reads ``__class__``, which some proxies warn on or compute.
    objects = gc.get_objects()
    file_types = {t for t in set(map(type, objects)) if issubclass(t, base)}
    files = [o for o in objects if type(o) in file_types and id(o) not in std]
    del objects
    for file in files:
        try:
            if not file.closed and file.writable():
                file.flush()
        except Exception:  # noqa: BLE001 - one file's error must not cost the others their flush
            continue


def _quick_teardown() -> None:
    try:
        gc.collect()
        flush_open_files()
        gc.freeze()
    except BaseException:  # noqa: BLE001 - an exit handler must never change how the process ends
        pass
