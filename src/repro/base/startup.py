"""The process environment as it was when the kit was first imported.

Some variables (PYTHONHASHSEED, MKL_CBWR, ...) are read once when the process
or a library starts; what ``os.environ`` says later may not be what is in
effect. The report compares against this snapshot.
"""

from __future__ import annotations

import os

ENVIRON: dict[str, str] = dict(os.environ)


#: Read by cuBLAS, which a torch built without CUDA or ROCm never loads.
CUDA_ONLY = frozenset({"CUBLAS_WORKSPACE_CONFIG"})


def still_unread(var: str) -> bool:
    """Whether setting ``var`` now is in effect as if the process had started with it: torch is not
    imported yet (no library it loads has read anything), or ``var`` is for cuBLAS and this torch has
    no GPU backend to read it."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return True
    version = getattr(torch, "version", None)
    no_gpu = getattr(version, "cuda", "?") is None and getattr(version, "hip", "?") is None
    return var in CUDA_ONLY and no_gpu


def set_before_libraries(var: str, value: str) -> None:
    """Set ``var`` for libraries that read it once when they start (ATen, MKL, oneDNN, cuBLAS).

    Only while no library has read it (:func:`still_unread`): then it is in effect exactly as if
    the process had started with it, and the snapshot records it so.
    """
    if not still_unread(var):
        raise RuntimeError(f"{var} must be set before torch is imported")
    os.environ[var] = value
    ENVIRON[var] = value
