"""How many intra-op threads torch runs when ``repro.threads`` is null.

CPU float results depend on the thread count (reductions split their work by it). In one process a
null pin leaves torch's own default: the machine's cores, or ``OMP_NUM_THREADS`` as the process
started. Under ``torchrun`` that default would depend on the node layout: torchrun sets
``OMP_NUM_THREADS=1`` only when ``--nproc_per_node`` is above 1, so 2 nodes x 1 process would run
on every core and 1 node x 2 processes on one, and the same world size would give other bits. So
under torchrun (several ranks) a null pin means **1 thread per process**, what torchrun already
gives whenever a node runs more than one process, whatever ``OMP_NUM_THREADS`` says; an explicit
``repro.threads=N`` still wins, on every node alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from repro.core import distributed

#: Intra-op threads per rank under torchrun when ``repro.threads`` is null.
TORCHRUN_THREADS = 1
#: The note ``determinism.settings`` records for that choice.
TORCHRUN_NOTE = "torchrun: 1 thread per process whatever the node layout"
_FIX = "repro.threads=N pins another count on every rank"


def intra_op_threads(
    requested: int | None, initial: int, environ: Mapping[str, str]
) -> tuple[int, str]:
    """The thread count to set and the note to record, for ``repro.threads=requested``.

    ``initial``: torch's count as the process started; ``environ``: the environment as it started.
    When the torchrun rule applies, rank 0 logs one line saying so.
    """
    if requested is not None:
        return requested, ""
    dist = distributed.from_environment()
    if not dist.enabled:
        return initial, "not pinned: left as is"
    omp = environ.get("OMP_NUM_THREADS")
    overruled = omp is not None and omp.strip() != str(TORCHRUN_THREADS)
    note = TORCHRUN_NOTE
    if overruled:
        note += f" (OMP_NUM_THREADS={omp} at start does not set it: {_FIX})"
    if dist.is_main:
        log = logging.getLogger("repro.run")
        if overruled:
            # an OMP_NUM_THREADS the shell set is overruled: say it louder than the rule itself
            log.warning("%s", note)
        else:
            log.info("%s (%s)", note, _FIX)
    return TORCHRUN_THREADS, note
