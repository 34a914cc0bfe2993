"""Hydra's and OmegaConf's multi-line errors about a command line, as one line that starts with the key
and says how to fix it (quote a value, pick an option of the group)."""

from __future__ import annotations


def one_line(text: str) -> str:
    skip = (
        "full_key:",
        "object_type",
        "reference_type",
        "Config search path",
        "provider=",
        "Set the environment",
    )
    lines = [ln.strip().rstrip(".") for ln in str(text).splitlines()]
    return "; ".join(ln for ln in lines if ln and not ln.startswith(skip))


def describe_compose_error(exc: BaseException) -> str:
    """Hydra/OmegaConf's multi-line message, reduced to one line that starts with the key."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(exc, OverrideParseException):
        return describe_override_parse_error(exc.override, exc.message)
    if isinstance(exc, MissingConfigException) and getattr(exc, "options", None) is not None:
        group, _, wanted = (exc.missing_cfg_file or "?/?").rpartition("/")
        options = ", ".join(o for o in sorted(exc.options) if o != "schema")
        return f"{group}={wanted}: no such option in config group '{group}' (available: {options})"
    cause = exc.__cause__ or exc
    head = one_line(str(exc)) if cause is not exc else ""
    msg = one_line(getattr(cause, "msg", None) or str(cause))
    prefix = "Error merging override "
    if head.startswith(prefix):  # "Error merging override k=v" -> "k=v: <why>"
        return f"{head[len(prefix) :]}: {msg}"
    key = getattr(cause, "full_key", None)
    out = "; ".join(dict.fromkeys(p for p in (head, msg) if p))
    return out if not key or key in out else f"{key}: {out}"


def describe_override_parse_error(override: str, message: str) -> str:
    """One line for an override Hydra's grammar cannot parse, saying how to quote it."""
    key, eq, value = override.partition("=")
    if not eq:
        return (
            f"{override!r} is not an override (key=value); if it belongs to the value before it (a "
            "space), quote that whole value for Hydra: key='\"a b\"'"
        )
    if not value.isascii() or any(c.isspace() for c in value) or "Lexer" in message:
        why = "characters outside ASCII" if not value.isascii() else "spaces or special characters"
        return (
            f"{override}: Hydra cannot parse a value with {why} unquoted; quote the value: "
            f"{key}='\"{value}\"' (the single quotes for the shell, the double ones for Hydra)"
        )
    reason = one_line(message).split("; See https://hydra.cc")[0]
    reason = reason.replace(f"Error parsing override '{override}'; ", "")
    return (
        f"{override}: Hydra cannot parse this override ({reason}); quote the value: "
        f"{key}='\"{value}\"'"
    )


def quote_override_value(text: str) -> str:
    """``text`` as a quoted Hydra override value: any character (spaces, non-ASCII, ``=``, quotes) survives."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
