"""The main job's ``--help``: the config groups without their schemas, and what each key means.

Hydra prints ``hydra.help.template`` (``conf/hydra/help/repro.yaml``); that template calls the
two OmegaConf resolvers registered here:

* ``${repro.help_groups:}``: every config group of the application with its options, like
  Hydra's ``$APP_CONFIG_GROUPS`` but without the schemas stored in the ConfigStore (``schema``,
  ``*_schema``), which a user never selects;
* ``${repro.help_keys:}``: one line per documented key, ``train.epochs: Passes over the
  training data.``, read from the ``#:`` comment above each field of the dataclass schemas
  that typed the composed config (the same comments the source shows).

Torch-free; the resolvers run only when a template names them (``--help``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

__all__ = ["field_descriptions", "is_schema", "key_descriptions", "register_help_resolvers"]

GROUPS_RESOLVER = "repro.help_groups"
KEYS_RESOLVER = "repro.help_keys"

_FIELD = re.compile(r"([A-Za-z_]\w*)\s*:")
_ROLE = re.compile(r":\w+:`([^`]*)`")  # Sphinx roles (:class:`Determinism`) read as plain words


def is_schema(option: str) -> bool:
    """Whether a config group option is a schema (``schema``, ``cnn_schema``), not a choice."""
    return option == "schema" or option.endswith("_schema")


@functools.cache
def field_descriptions(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines right above each field of dataclass ``cls`` (and its bases).

    A comment documents the one field below it; a field without one has no entry. A class whose
    source cannot be read (built in a REPL) gives what its bases give.
    """
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        names = {f.name for f in dataclasses.fields(klass)}
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("class "))
        body = [line for line in lines[start + 1 :] if line.strip()]
        indent = min((len(line) - len(line.lstrip()) for line in body), default=0)
        comment: list[str] = []
        for line in body:
            if len(line) - len(line.lstrip()) != indent:  # nested code or continued lines
                continue
            text = line.strip()
            if text.startswith("#:"):
                comment.append(text[2:].strip())
                continue
            match = _FIELD.match(text)
            if match and comment and match.group(1) in names:
                out[match.group(1)] = _ROLE.sub(r"\1", " ".join(comment)).replace("``", "")
            comment = []
    return out


def key_descriptions(cfg: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, description) for every documented key of ``cfg`` (a DictConfig), in order.

    Each node typed by a dataclass schema (its object type in OmegaConf) contributes its fields'
    comments; values are never resolved. The ``hydra`` node is left out.
    """
    from omegaconf import DictConfig, OmegaConf

    out: list[tuple[str, str]] = []
    kind = OmegaConf.get_type(cfg)
    described = field_descriptions(kind) if dataclasses.is_dataclass(kind) else {}
    for key in cfg:
        name = f"{prefix}{key}"
        if name == "hydra":
            continue
        if str(key) in described:
            out.append((name, described[str(key)]))
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            out.extend(key_descriptions(child, f"{name}."))
    return out


def _app_groups(loader: Any, parent: str = "") -> list[str]:
    from hydra.core.object_type import ObjectType

    groups = []
    for group in loader.list_groups(parent):
        name = f"{parent}/{group}" if parent else group
        if name == "hydra":
            continue
        if loader.get_group_options(name, ObjectType.CONFIG):
            groups.append(name)
        if loader.get_group_options(name, ObjectType.GROUP):
            groups.extend(_app_groups(loader, name))
    return groups


def _escape(text: str) -> str:
    return text.replace("$", "$$")  # Hydra runs the template through string.Template afterwards


def render_groups() -> str:
    """The application's config groups, one line each: ``group: option, option``."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    lines = []
    for group in sorted(_app_groups(loader)):
        options = [o for o in sorted(loader.get_group_options(group)) if not is_schema(o)]
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    return _escape("\n".join(lines))


def render_keys(root: Any) -> str:
    """The documented keys of the composed config ``root``, one ``key: description`` a line."""
    return _escape("\n".join(f"{key}: {text}" for key, text in key_descriptions(root)))


def register_help_resolvers() -> None:
    """Register the help template's resolvers with OmegaConf. Idempotent."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(GROUPS_RESOLVER):
        OmegaConf.register_new_resolver(GROUPS_RESOLVER, render_groups, use_cache=False)
    if not OmegaConf.has_resolver(KEYS_RESOLVER):
        OmegaConf.register_new_resolver(
            KEYS_RESOLVER, lambda *, _root_: render_keys(_root_), use_cache=False
        )
