"""Keep ``torch._dynamo`` unimported until something in the process uses it.

Torch's eager training path imports its compiler stack without compiling
anything: the first optimizer built calls ``add_param_group``, which torch
marks "not to be compiled" with ``torch._disable_dynamo``, a lazy mark that
imports ``torch._dynamo`` on its first call to build the real wrapper; and every
``optimizer.step()`` runs ``import torch._dynamo; torch._dynamo.graph_break()``.
Outside a compiled frame both are no-ops, yet the import costs about 0.85 s here
(2.3 s on a slow VM), a third of a short run's start-up.

:func:`defer_dynamo_import` (called by the kit's entry point once torch is
imported, before the task runs) moves that import to where something needs it:

* each function behind torch's lazy mark gets itself as the cached wrapper (the
  attribute the mark looks up first), so it is called directly;
* ``sys.modules["torch._dynamo"]`` holds a stand-in whose ``graph_break`` does
  nothing; any other use of it (``torch.compile``, ``torch._dynamo.config``,
  ``from torch._dynamo import ...``, importing one of its submodules) first takes
  every shortcut back, removes the stand-in and imports the real package, then
  answers from it. A set attribute goes to the real package. Code that took the
  stand-in (``import torch._dynamo as d`` while deferred) gets the real
  ``graph_break`` from it once dynamo is in. Dunder names other than ``__path__``
  and ``__all__`` are answered without importing (``__file__`` is the real one;
  the others are missing): scans of ``sys.modules`` (``inspect.getmodule``, run
  while ``torch.distributed.tensor`` is imported) must not import dynamo midway.
* while deferred, ``torch.load``'s weights-only allow-list holds a stand-in for
  the class dynamo's import would allow-list (``_DimRange``, in saved nested
  jagged tensors); loading one brings dynamo in.

Both shortcuts are exact while dynamo is not imported: the real wrapper only
switches dynamo's frame hook off around the call, and no hook exists without
dynamo; ``graph_break`` only acts while dynamo traces a frame. Once anything
touches dynamo the process is as torch would have left it, so compiling works
as usual and the bits never change (``tests/repro/test_lazy_dynamo.py`` runs the
same job with and without, and compiles after deferring).

Torch internals are read here (the lazy mark's code and closure, the cached
attribute's name). When a torch upgrade changes them nothing is deferred, the
import happens as before, and the tests fail to say so.
``REPRO_IMPORT_DYNAMO=1`` switches the deferral off.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.machinery
import os
import sys
import threading
import types
from typing import Any

import torch

NAME = "torch._dynamo"
OPT_OUT_ENV = "REPRO_IMPORT_DYNAMO"
_CACHE_ATTR = "__dynamo_disable"  # what torch's lazy mark caches its real wrapper under
_DIM_RANGE = "torch._dynamo.decorators._DimRange"  # held by saved nested jagged tensors

_shortcuts: list[types.FunctionType] = []  # functions behind the lazy mark, given themselves


def _mark_code() -> types.CodeType | None:
    """The code of the wrapper ``torch._disable_dynamo`` puts around a function, when it is the
    lazy wrapper described above (it looks ``__dynamo_disable`` up on its ``fn``)."""
    outer = getattr(getattr(torch, "_compile", None), "_disable_dynamo", None)
    for const in getattr(getattr(outer, "__code__", None), "co_consts", ()):
        if (
            isinstance(const, types.CodeType)
            and const.co_name == "inner"
            and _CACHE_ATTR in const.co_names
            and "fn" in const.co_freevars
        ):
            return const
    return None


class _StandIn(types.ModuleType):
    """``torch._dynamo`` until something uses it: ``graph_break`` here, anything else real."""

    def __getattr__(self, name: str) -> Any:
        if name == "graph_break" and sys.modules.get(NAME) is self:
            # Only while deferred: a holder of this object gets dynamo's own once it is in.
            return _graph_break
        if name.startswith("__") and name.endswith("__") and name not in ("__path__", "__all__"):
            # Scans of sys.modules ask every module for dunders (inspect.getmodule reads __file__,
            # which is set): answering would import dynamo in the middle of someone else's import.
            raise AttributeError(f"module {NAME!r} has no attribute {name!r}")
        # An import of a submodule reads its parent's __path__ first, then looks the submodule up.
        return getattr(materialize(submodule_next=name == "__path__"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(materialize(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(materialize(), name)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, (NAME,)  # by reference, as pickle libraries do for modules


def _graph_break(msg: str = "") -> None:
    """``torch._dynamo.graph_break`` while the stand-in stands in: nothing to do outside a compiled
    frame. A reference kept until dynamo comes in (``gb = torch._dynamo.graph_break``) calls
    dynamo's own from then on, so compiled code still breaks its graph there."""
    if not isinstance(sys.modules.get(NAME), _StandIn):
        from torch._dynamo.decorators import graph_break

        graph_break(msg)


class _DimRangeStandIn:
    """Stands for ``torch._dynamo.decorators._DimRange`` in ``torch.load``'s weights-only allow-list
    while deferred: importing dynamo registers that class (a saved nested jagged tensor holds
    them), and plain PyTorch has imported dynamo by the time a training loop loads one. Loading
    one imports dynamo and builds the real object."""

    own_name = f"{__name__}._DimRangeStandIn"

    def __new__(cls, *args: Any) -> Any:
        real = materialize().decorators._DimRange
        return real.__new__(real, *args)


class _Reuse:
    """A meta-path finder, in place only while the stand-in is or has just been: when importing a
    submodule of dynamo (``import torch._dynamo.config``) found the stand-in as its parent, reading
    the parent's ``__path__`` imported the real package, which may have imported that submodule
    already; the import then finds it here instead of running its code a second time. It serves
    only a thread that read ``__path__``, only once that thread's import of the package is done,
    only its next lookup, and never a reload."""

    def __init__(self) -> None:
        # Threads that read the stand-in's __path__ -> whether their import of the package is done.
        self.waiting: dict[int, bool] = {}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        thread = threading.get_ident()
        if not self.waiting.get(thread):
            return None
        with _lock:
            self.waiting.pop(thread, None)
            if not self.waiting:
                _unhook()
        module = sys.modules.get(name)
        if target is not None or module is None or not name.startswith(NAME + "."):
            return None
        return importlib.machinery.ModuleSpec(name, _Existing(module), is_package=False)

    def invalidate_caches(self) -> None:
        pass


class _Existing:
    """The loader of a module that is already imported: hands it back as it is."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module, self.spec = module, module.__spec__

    def create_module(self, spec: Any) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import machinery tried to set ``__spec__`` to ours (dynamo's config module refuses
        # new attributes, so it may not have): the real one goes back.
        if getattr(module, "__spec__", None) is not self.spec:
            with contextlib.suppress(AttributeError):
                module.__spec__ = self.spec


_reuse = _Reuse()
_lock = threading.Lock()
_real: types.ModuleType | None = None  # the real package, once materialize() has imported it


def _unhook() -> None:
    # A new list, not remove(): an import looking through sys.meta_path right now (this finder's
    # own caller included) iterates the old one, which must not shift under it.
    if _reuse in sys.meta_path:
        sys.meta_path = [f for f in sys.meta_path if f is not _reuse]


def defer_dynamo_import() -> bool:
    """Defer importing ``torch._dynamo`` (see the module's text). True when deferred; False when it
    is already imported, ``REPRO_IMPORT_DYNAMO`` is set, or torch is not the torch understood here."""
    if os.environ.get(OPT_OUT_ENV, "").strip() not in ("", "0") or NAME in sys.modules:
        return False
    code = _mark_code()
    spec = importlib.machinery.PathFinder.find_spec(NAME, list(torch.__path__))
    if code is None or spec is None:
        return False
    slot = code.co_freevars.index("fn")
    for wrapper in gc.get_referrers(code):
        if not isinstance(wrapper, types.FunctionType) or wrapper.__closure__ is None:
            continue
        fn = wrapper.__closure__[slot].cell_contents
        if isinstance(fn, types.FunctionType) and _CACHE_ATTR not in fn.__dict__:
            fn.__dict__[_CACHE_ATTR] = fn
            _shortcuts.append(fn)
    stand_in = _StandIn(NAME)
    # Set through the dict: the class's __setattr__ would import the real package.
    stand_in.__dict__.update(
        __spec__=spec,
        __loader__=spec.loader,
        __package__=NAME,
        __file__=spec.origin,
        __cached__=spec.cached,
    )
    sys.modules[NAME] = stand_in
    allow = getattr(torch.serialization, "add_safe_globals", None)
    if allow is not None:
        # Under dynamo's name while deferred; under its own too, so that an object whose class was
        # looked up before dynamo came in (both names then map to a class) is still allowed.
        allow([(_DimRangeStandIn, _DIM_RANGE), (_DimRangeStandIn, _DimRangeStandIn.own_name)])
    _reuse.waiting.clear()
    sys.meta_path.insert(0, _reuse)
    return True


def deferred() -> bool:
    """Whether ``torch._dynamo`` is, right now, the stand-in."""
    return isinstance(sys.modules.get(NAME), _StandIn)


def _drop_dynamo_name() -> None:
    """Once dynamo is in, its own ``_DimRange`` is the only class allowed under its name (two
    classes under one name would leave the choice to the order of a set)."""
    ser = torch.serialization
    ours = (_DimRangeStandIn, _DIM_RANGE)
    allowed = ser.get_safe_globals() if hasattr(ser, "get_safe_globals") else []
    if ours in allowed:
        ser.clear_safe_globals()
        ser.add_safe_globals([g for g in allowed if g != ours])


def materialize(*, submodule_next: bool = False) -> types.ModuleType:
    """Take every shortcut back and return the real ``torch._dynamo`` (imported now if need be).
    ``submodule_next``: an import of one of its submodules asked, and looks that submodule up next
    (once the package is in: another thread may be importing it right now)."""
    global _real
    if _real is not None and sys.modules.get(NAME) is _real:
        return _real  # a held stand-in, used after dynamo came in: nothing left to undo
    thread = threading.get_ident()
    with _lock:  # the import itself runs outside: the import system has its own per-module locks
        for fn in _shortcuts:
            if fn.__dict__.get(_CACHE_ATTR) is fn:
                del fn.__dict__[_CACHE_ATTR]
        _shortcuts.clear()
        if isinstance(sys.modules.get(NAME), _StandIn):
            del sys.modules[NAME]
        if submodule_next:
            _reuse.waiting[thread] = False
        elif not _reuse.waiting:
            _unhook()
    try:
        module = importlib.import_module(NAME)
        _drop_dynamo_name()
        _real = module
        return module
    finally:
        if submodule_next:
            _reuse.waiting[thread] = True
