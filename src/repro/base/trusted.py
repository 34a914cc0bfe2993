"""Which code a run directory's config may name: every ``_target_``, resolved, not matched as text.

A run's ``config.yaml`` is data. Before anything is instantiated from it, every ``_target_`` in the
node (nested ones too: ``instantiate`` is recursive) must name code of an allowed prefix, such as
the project's own packages (``"experiment."``). A textual prefix alone is not enough: Hydra walks
attributes, so ``experiment.model.torch.load`` starts with ``experiment.`` and yet is torch's
``load``. So each target is resolved the way Hydra resolves it, importing only modules whose name
has an allowed prefix, and every module on the way and the object reached must be defined under an
allowed prefix.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any

from repro.base.errors import ConfigValueError

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def targets_in(value: object, path: str = "") -> list[tuple[str, object]]:
    """Every ``_target_`` in a plain config container: (its dotted key, its value)."""
    if isinstance(value, dict):
        found = [(f"{path}_target_", value["_target_"])] if "_target_" in value else []
        for key, sub in value.items():
            found += targets_in(sub, f"{path}{key}.")
        return found
    if isinstance(value, list):
        return [hit for i, sub in enumerate(value) for hit in targets_in(sub, f"{path}{i}.")]
    return []


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(f"{name}.".startswith(p) for p in prefixes)


def _defined_in(obj: Any) -> str | None:
    if isinstance(obj, ModuleType):
        return obj.__name__
    return getattr(obj, "__module__", None)


def resolves_inside(target: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``target`` (a dotted path) names an object defined under ``prefixes``, resolved as Hydra
    resolves it. Imports only modules whose dotted name is under ``prefixes``."""
    if not _DOTTED.fullmatch(target) or not _allowed(target, prefixes):
        return False
    parts = target.split(".")
    obj: Any = None
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if not _allowed(name, prefixes):
            return False
        try:
            obj = importlib.import_module(name)
        except ImportError:
            continue
        rest = parts[i:]
        break
    else:
        return False
    for attr in rest:
        obj = getattr(obj, attr, None)
        where = _defined_in(obj)
        if obj is None or where is None or not _allowed(where, prefixes):
            return False
    return True


def check_targets(
    node: object, key: str, prefixes: tuple[str, ...], expected: str | None = None
) -> None:
    """Refuse, as one :class:`ConfigValueError` naming the key, any ``_target_`` in ``node`` (a plain
    container, or None) that does not resolve under ``prefixes``. ``key``: the node's dotted key with
    a trailing dot (``"model."``); ``expected``: what the message says is allowed."""
    expected = expected or "a target of " + (", ".join(f"{p}*" for p in prefixes) or "none")
    for where, target in targets_in(node, key):
        if not isinstance(target, str) or not resolves_inside(target, prefixes):
            raise ConfigValueError(where, target, expected)
