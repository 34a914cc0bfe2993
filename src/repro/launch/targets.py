"""Config nodes checked against what they declare: a schema's fields, and each ``_target_``'s signature.

Two checks, both one line naming the key when they refuse (:mod:`repro.base.checks`):

* :func:`check_typed_nodes`: every node typed by a dataclass schema (the kit's ``repro`` and ``train``,
  a project's typed groups) against the ranges and choices declared on its fields. Torch-free: it runs
  in the pre-run check with the rest.
* :func:`check_targets`: every node with a ``_target_`` (a model, a dataset, a task, an optimizer)
  against the signature of the class or function it names: unknown arguments, missing required ones,
  types and the ranges the class declares with ``Annotated[..., Range(...)]``. Importing a target
  imports its module (and torch with it), so the entry point calls it after the environment pins are
  in place and before Hydra makes the run directory; :func:`target_nodes` collects the nodes in the
  pre-run check, and they travel in the launch plan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from repro.base.checks import check_arguments, check_fields
from repro.base.errors import ConfigValueError

__all__ = ["check_targets", "check_typed_nodes", "target_nodes"]


def _children(cfg: DictConfig, prefix: str = "") -> list[tuple[str, Any]]:
    """The nodes of ``cfg``, but Hydra's own at the top."""
    return [(str(k), cfg._get_node(k)) for k in cfg if prefix or k != "hydra"]


def check_typed_nodes(cfg: DictConfig, prefix: str = "") -> None:
    """Check each node typed by a dataclass schema against the ranges and choices on its fields.

    A node that names a ``_target_`` without being typed (a replayed ``config.yaml`` has no defaults
    list) is checked against the schema stored in the ConfigStore for that same ``_target_``, if any.
    """
    by_target = stored_schemas() if not prefix else {}
    _check_typed(cfg, prefix, by_target)


def _check_typed(cfg: DictConfig, prefix: str, by_target: dict[str, type]) -> None:
    for key, node in _children(cfg, prefix):
        if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
            continue
        name = f"{prefix}{key}"
        kind = OmegaConf.get_type(node)
        if not dataclasses.is_dataclass(kind):
            target = node.get("_target_") if "_target_" in node else None
            kind = by_target.get(target) if isinstance(target, str) else None
        if kind is not None:
            check_fields(OmegaConf.to_container(node, resolve=True), kind, name)
        _check_typed(node, f"{name}.", by_target)


def stored_schemas() -> dict[str, type]:
    """``{_target_: schema}`` for the dataclass schemas in Hydra's ConfigStore that name a target."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    found: dict[str, type] = {}

    def walk(path: str) -> None:
        for entry in store.list(path):
            full = f"{path}/{entry}" if path else entry
            if not entry.endswith(".yaml"):
                if full != "hydra":
                    walk(full)
                continue
            node = store.load(full).node
            kind = OmegaConf.get_type(node)
            target = node.get("_target_") if isinstance(node, DictConfig) else None
            if dataclasses.is_dataclass(kind) and isinstance(target, str):
                found.setdefault(target, kind)

    walk("")
    return found


def target_nodes(cfg: DictConfig) -> list[list[Any]]:
    """``[key, node]`` for every node with a ``_target_`` (resolved, plain values), outside ``hydra``."""
    found: list[list[Any]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            if "_target_" in value:
                found.append([key, value])
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")

    for key, node in _children(cfg):
        if isinstance(node, DictConfig | ListConfig):
            walk(OmegaConf.to_container(node, resolve=True, enum_to_str=True), key)
    return found


def check_targets(nodes: list[list[Any]]) -> None:
    """Check each ``[key, node]`` of :func:`target_nodes` against its target's signature.

    Raises ConfigValueError (or MissingArgumentError) naming the key. Imports each target's module.
    """
    for key, node in nodes:
        name = node.get("_target_")
        if not isinstance(name, str) or not name:
            raise ConfigValueError(f"{key}._target_", name, "the dotted name of a class")
        try:
            target = locate(name)
        # ImportError, AttributeError, or any error of the user's module while it is imported
        except Exception as exc:
            why = str(exc).strip().splitlines()
            allowed = "an importable class or function" + (f" ({why[-1]})" if why else "")
            raise ConfigValueError(f"{key}._target_", name, allowed) from None
        if not callable(target):
            raise ConfigValueError(f"{key}._target_", name, "a class or function")
        check_arguments(key, node, target)


def locate(name: str) -> Any:
    """The object a dotted name names, as Hydra finds a ``_target_``: the longest importable module
    prefix, then attributes. Raises ImportError or AttributeError saying which part is missing."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this very module does not exist" moves on to a shorter prefix.
            if cut > 1 and exc.name is not None and module_name.startswith(exc.name):
                continue
            raise
        for i, attr in enumerate(parts[cut:], start=cut):
            if not hasattr(obj, attr):
                raise AttributeError(f"{'.'.join(parts[:i])} has no attribute '{attr}'")
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module named {parts[0]!r}")
