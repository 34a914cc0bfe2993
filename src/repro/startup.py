"""The process environment as it was when the kit was first imported.

Some variables (PYTHONHASHSEED, MKL_CBWR, ...) are read once when the process
or a library starts; what ``os.environ`` says later may not be what is in
effect. The report compares against this snapshot.
"""

from __future__ import annotations

import os

ENVIRON: dict[str, str] = dict(os.environ)


def set_before_libraries(var: str, value: str) -> None:
    """Set ``var`` for libraries that read it once when they start (ATen, MKL, oneDNN, cuBLAS).

    Only while torch is not imported yet: then no library has read it, so it is in effect exactly as if
    the process had started with it, and the snapshot records it so.
    """
    import sys

    if "torch" in sys.modules:
        raise RuntimeError(f"{var} must be set before torch is imported")
    os.environ[var] = value
    ENVIRON[var] = value
