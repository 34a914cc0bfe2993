"""One validator for config values: types from annotations, ranges and choices declared next to them.

A range or a set of choices is declared where the value is declared, with :data:`typing.Annotated`::

    width: Annotated[int, Range(1, 4096)] = 64          # a class's __init__ argument
    mode: Annotated[str, OneOf("min", "max")] = "min"   # a dataclass schema's field

:func:`check_fields` checks a dataclass schema's fields (the kit's ``repro`` and ``train`` nodes, a
project's typed groups); :func:`check_arguments` checks a config node with ``_target_`` against the
signature of the callable it names: types, ranges, unknown arguments and missing required ones. Both
raise :class:`repro.base.errors.ConfigValueError` (or :class:`MissingArgumentError`), one line that
names the key, the value and what is allowed. Pure Python: no torch, no Hydra.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Annotated, Any, Literal, Union

from repro.base.errors import ConfigValueError, ReproError

__all__ = [
    "InsideRun",
    "MissingArgumentError",
    "OneOf",
    "Range",
    "check_arguments",
    "check_fields",
    "describe",
]

#: A bound: a number, or a function of no arguments that gives it when the check runs.
Bound = float | Callable[[], float] | None
#: Hydra's own keys of a node it instantiates: never arguments of the target.
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


class MissingArgumentError(ReproError, ValueError):
    """A config node that builds an object lacks an argument its target requires."""


@dataclass(frozen=True)
class Range:
    """A number in ``[ge, le]`` (``gt``/``lt`` for open ends; ``None``: unbounded; a float is also finite).

    ``Range(1, 4096)``: 1 to 4096; ``Range(gt=0)``: above 0; ``Range(0, lt=1)``: [0, 1). A bound may be a
    function of no arguments (evaluated when the check runs); ``note`` is said after the range.
    """

    ge: Bound = None
    le: Bound = None
    _: dataclasses.KW_ONLY
    gt: Bound = None
    lt: Bound = None
    note: str = ""

    def bounds(self) -> tuple[float | None, float | None, float | None, float | None]:
        return tuple(b() if callable(b) else b for b in (self.ge, self.le, self.gt, self.lt))  # type: ignore[return-value]

    def allows(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        ge, le, gt, lt = self.bounds()
        return (
            (ge is None or value >= ge)
            and (le is None or value <= le)
            and (gt is None or value > gt)
            and (lt is None or value < lt)
        )

    def describe(self, kind: str, nullable: bool = False) -> str:
        """In words: ``an int in [1, 4096]``, ``a finite float > 0 or null``."""
        ge, le, gt, lt = self.bounds()
        low, high = (
            (ge, "[") if ge is not None else (gt, "("),
            (le, "]") if le is not None else (lt, ")"),
        )
        if low[0] is not None and high[0] is not None:
            text = f"{kind} in {low[1]}{_num(low[0])}, {_num(high[0])}{high[1]}"
        elif low[0] is not None or high[0] is not None:
            finite = "a finite float" if kind == "a float" else kind
            op, bound = (
                (">=" if ge is not None else ">", low[0])
                if low[0] is not None
                else ("<=" if le is not None else "<", high[0])
            )
            text = f"{finite} {op} {_num(bound)}"
        else:
            text = "a finite float" if kind == "a float" else kind
        text = f"{text} ({self.note})" if self.note else text
        return f"{text} or null" if nullable else text


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``; ``normalize`` maps a value before the comparison (``str.lower``: any case)."""

    choices: tuple[Any, ...]
    normalize: Callable[[Any], Any] | None = None
    note: str = ""

    def __init__(
        self, *choices: Any, normalize: Callable[[Any], Any] | None = None, note: str = ""
    ) -> None:
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "normalize", normalize)
        object.__setattr__(self, "note", note)

    def allows(self, value: Any) -> bool:
        try:
            return (self.normalize(value) if self.normalize else value) in self.choices
        except (TypeError, ValueError, AttributeError):
            return False

    def describe(self, kind: str = "", nullable: bool = False) -> str:
        """In words: ``auto, gloo or nccl``, ``null, ':4096:8' or ':16:8'``."""
        text = _either([*(["null"] if nullable else []), *(_show(c) for c in self.choices)])
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class InsideRun:
    """A path that names a file or folder inside the run directory: relative, no ``..`` part, no ``~``.

    ``path: Annotated[str, InsideRun()] = "logs/metrics.csv"``: a logger's file stays in the run it
    belongs to, so a config can never make a run write elsewhere.
    """

    note: str = ""

    def allows(self, value: Any) -> bool:
        if not isinstance(value, str | PurePath):
            return False
        text = str(value)
        path = PurePosixPath(text.replace("\\", "/"))
        return not (
            path.is_absolute()
            or ".." in path.parts
            or text.startswith("~")
            or re.match(r"[A-Za-z]:", text)
        )

    def describe(self, kind: str = "", nullable: bool = False) -> str:
        text = "a relative path inside the run directory (no '..', not absolute)"
        text = f"{text} ({self.note})" if self.note else text
        return f"{text} or null" if nullable else text


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() and abs(x) < 1e15 else str(x)


def _show(choice: Any) -> str:
    text = str(choice)
    return text if re.fullmatch(r"[\w.-]+", text) else repr(text)


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _split(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, m1, m2]`` -> (T, [m1, m2]); anything else -> (it, [])."""
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
        return base, [m for m in meta if isinstance(m, Range | OneOf | InsideRun)]
    return annotation, []


def _members(annotation: Any) -> list[Any] | None:
    """The members of a union (``X | None``, ``Optional[X]``), else None."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return list(typing.get_args(annotation))
    return None


_KIND = {bool: "a bool (true or false)", int: "an int", float: "a float", str: "a string"}


def describe(annotation: Any) -> str:
    """What ``annotation`` allows, in words: ``an int in [1, 4096] or null``."""
    base, meta = _split(annotation)
    members = _members(base)
    if members is not None:
        nullable = type(None) in members
        rest = [describe(m) for m in members if m is not type(None)]
        if meta:
            # Annotated[int | None, Range(...)]: the marker speaks for the whole union
            kind = _KIND.get(_plain(members), "a value")
            return "; ".join(m.describe(kind, nullable) for m in meta)
        return _either([*dict.fromkeys(rest), *(["null"] if nullable else [])])
    if meta:
        return "; ".join(m.describe(_KIND.get(base, "a value"), False) for m in meta)
    if base is type(None) or base is None:
        return "null"
    if base in _KIND:
        return _KIND[base]
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is Literal:
        return _either([_show(a) for a in args])
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return _either([m.name for m in base])
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
    if origin in (list, tuple, Sequence, Iterable) or base in (list, tuple):
        return f"a list (each {describe(args[0])})" if args else "a list"
    if origin in (dict, Mapping) or base is dict:
        return "a mapping"
    return f"a {getattr(base, '__name__', str(base))}"


def _plain(members: list[Any]) -> Any:
    return next((m for m in members if m is not type(None)), None)


def allows(annotation: Any, value: Any) -> bool:
    """Whether ``value`` (as a config holds it: plain scalars, lists, dicts) fits ``annotation``.

    Types the check cannot judge from a config value (a class it does not know, a callable) pass: the
    object's own constructor decides.
    """
    if isinstance(value, Mapping) and "_target_" in value:
        return True  # built by its own target, which is checked on its own
    base, meta = _split(annotation)
    if not _type_allows(base, value):
        return False
    if value is None:
        return True
    return all(m.allows(value) for m in meta)


def _type_allows(base: Any, value: Any) -> bool:
    if base in (Any, inspect.Parameter.empty, object) or isinstance(base, str | typing.TypeVar):
        return True
    members = _members(base)
    if members is not None:
        # A scalar is judged by the members a config can hold (float in float | Tensor) when any is.
        known = [m for m in members if _holdable(m)]
        if known and (value is None or isinstance(value, bool | int | float | str)):
            members = known
        return any(allows(m, value) for m in members)
    if base is type(None) or base is None:
        return value is None
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is Literal:
        return value in args and type(value) in {type(a) for a in args}
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return (
            isinstance(value, base) or value in base.__members__ or value in {m.value for m in base}
        )
    if isinstance(base, type) and issubclass(base, PurePath):
        return isinstance(value, str | PurePath)
    if origin is tuple or base is tuple:
        if not isinstance(value, list | tuple):
            return False
        if args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(allows, args, value))
        return not args or all(allows(args[0], v) for v in value)
    if origin in (list, Sequence) or base is list:
        return isinstance(value, list | tuple) and all(allows(args[0], v) for v in value if args)
    if origin in (dict, Mapping) or base is dict:
        return isinstance(value, Mapping) and all(
            allows(args[1], v) for v in value.values() if args
        )
    # A class the config cannot hold (a tensor, a module): its constructor decides; null is refused.
    return value is not None


def _holdable(annotation: Any) -> bool:
    """Whether a config can hold a value of ``annotation`` (a scalar, a list, an enum), not only build it."""
    base = _split(annotation)[0]
    if base in _KIND or base is type(None) or _members(base) is not None:
        return True
    if typing.get_origin(base) in (Literal, list, tuple, dict, Sequence, Mapping):
        return True
    return isinstance(base, type) and issubclass(base, enum.Enum | PurePath)


def check_value(key: str, value: Any, annotation: Any) -> None:
    """Raise ConfigValueError naming ``key`` when ``value`` does not fit ``annotation``."""
    if not allows(annotation, value):
        raise ConfigValueError(key, value, describe(annotation))


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # an annotation that names something not importable here: judge what resolves
        return {
            k: v for k, v in getattr(obj, "__annotations__", {}).items() if not isinstance(v, str)
        }


def check_fields(values: Any, schema: type, prefix: str) -> None:
    """Check every field of dataclass ``schema`` that ``values`` (a mapping or an object) holds."""
    hints = _hints(schema)
    for f in dataclasses.fields(schema):
        if isinstance(values, Mapping):
            if f.name not in values:
                continue
            value = values[f.name]
        elif hasattr(values, f.name):
            value = getattr(values, f.name)
        else:
            continue
        annotation = hints.get(f.name, Any)
        if isinstance(value, enum.Enum):
            value = value if _split(annotation)[0] is type(value) else value.value
        check_value(f"{prefix}.{f.name}", value, annotation)


def _signature_of(target: Any) -> tuple[inspect.Signature, dict[str, Any]]:
    signature = inspect.signature(target)
    init = target.__init__ if isinstance(target, type) else target
    return signature, _hints(init)


def check_arguments(key: str, node: Mapping[str, Any], target: Any) -> None:
    """Check the config ``node`` at ``key`` (its ``_target_`` is ``target``) against its signature.

    Refuses an argument the target does not take, a required one that is missing (unless the node is
    ``_partial_``), and a value whose type or range its annotation does not allow.
    """
    name = node.get("_target_", getattr(target, "__qualname__", str(target)))
    try:
        signature, hints = _signature_of(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    params = [
        p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    positional = list(node.get("_args_") or [])
    by_name = {p.name: p for p in params if p.kind is not p.POSITIONAL_ONLY}
    given = {k: v for k, v in node.items() if k not in HYDRA_KEYS}
    for arg, value in given.items():
        if arg not in by_name and not takes_any:
            takes = ", ".join(by_name) or "no arguments"
            raise ConfigValueError(
                f"{key}.{arg}", value, f"an argument of {name} (it takes: {takes})"
            )
    for param, value in zip(params, positional, strict=False):
        check_value(f"{key}._args_", value, hints.get(param.name, param.annotation))
    filled = {p.name for p in params[: len(positional)]}
    for param in params:
        if param.name in given:
            value = given[param.name]
            if value == "???":
                raise MissingArgumentError(f"{key}.{param.name} is ??? (missing): {name} needs it")
            check_value(f"{key}.{param.name}", value, hints.get(param.name, param.annotation))
        elif (
            param.default is param.empty
            and param.name not in filled
            and not node.get("_partial_", False)
        ):
            raise MissingArgumentError(
                f"{key}.{param.name} is missing: {name} needs it (set it in the config file of "
                f"'{key}')"
            )
