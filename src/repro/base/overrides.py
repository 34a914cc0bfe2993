"""Command-line overrides and config trees: the one ``key=value`` parser, and which keys a resume may change."""

from __future__ import annotations

from typing import Any

#: RunConfig keys that may differ when a run is resumed: they change speed or bookkeeping, never the bits.
RUN_RESUME_SAFE_KEYS = ("checkpoint_every", "keep_checkpoints", "resume", "accept_inexact_resume")
#: repro keys that may differ on resume.
REPRO_RESUME_SAFE_KEYS = ("repro.num_workers", "repro.persistent_workers")
#: The loggers may differ on resume (and are ignored by a config's hash): they copy metrics, never
#: change the bits.
LOGGER_RESUME_SAFE_KEYS = ("logger",)


def split_override(arg: str) -> tuple[str, str]:
    """The one parser of a ``key=value`` override: the key without ``+``/``++``/``~``, and the value."""
    key, _, value = arg.partition("=")
    return key.lstrip("+~"), value


def override_key(arg: str) -> str:
    """The key an override sets (``+train.x=1`` -> ``train.x``)."""
    return split_override(arg)[0]


def resume_safe_keys(node: str = "train", extra: Any = ()) -> tuple[str, ...]:
    """Keys that may differ when a run is resumed: the kit's own plus a project's ``extra``."""
    return (
        *REPRO_RESUME_SAFE_KEYS,
        *LOGGER_RESUME_SAFE_KEYS,
        *(f"{node}.{k}" for k in RUN_RESUME_SAFE_KEYS),
        *extra,
    )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {"a.b.c": leaf}; lists are leaves."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def diff_trees(a: Any, b: Any, ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every leaf that differs; '<absent>' marks a missing key."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if any(key == i or key.startswith(f"{i}.") for i in ignore):
            continue
        va, vb = fa.get(key, "<absent>"), fb.get(key, "<absent>")
        if va != vb:
            out.append((key, va, vb))
    return out
