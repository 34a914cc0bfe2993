"""Secrets never reach a run's files: what counts as one, and how it is hidden.

A value is hidden when its key names a credential (``api_key``, ``wandb_key``,
``db_password``, ``token``, ...; a leading ``+``/``++``/``~`` and any parent
keys ignored), and a URL's password is hidden whatever its key
(``postgres://user:<redacted>@host/db``).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
# Config keys are named by people ("key_dim" is no secret): match whole words at the end of the key.
_SECRET_KEY = re.compile(
    r"(^|[_.-])(token|secret|password|passwd|pwd|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|"
    r"wandb[_-]?key|auth[_-]?key|license[_-]?key|credentials?|auth[_-]?token|bearer)s?$",
    re.I,
)
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@/\s]+)(?P<tail>@)"
)


def is_secret_key(name: str) -> bool:
    """Whether a config key's (last) name says it holds a credential."""
    return bool(_SECRET_KEY.search(str(name).lstrip("+~").rsplit(".", 1)[-1]))


def redact_text(value: str) -> str:
    """``value`` with the password of any URL in it hidden."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['tail']}", value)


def redact_tree(tree: Any) -> Any:
    """A copy of a plain config tree with secret values hidden (by key name, and URL passwords anywhere)."""
    if isinstance(tree, dict):
        return {
            k: REDACTED
            if is_secret_key(str(k)) and v is not None and not isinstance(v, dict | list)
            else redact_tree(v)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [redact_tree(v) for v in tree]
    if isinstance(tree, str):
        return redact_text(tree)
    return tree


def redact_override(arg: str) -> str:
    """One ``key=value`` argument with a secret value hidden."""
    key, sep, value = arg.partition("=")
    if sep and is_secret_key(key):
        return f"{key}={REDACTED}"
    return redact_text(arg)


def redact_args(args: list[str]) -> list[str]:
    """Command-line arguments with every secret value hidden."""
    return [redact_override(a) for a in args]


def _redact_strings(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {
            k: REDACTED
            if is_secret_key(str(k)) and v is not None and not isinstance(v, dict | list)
            else _redact_strings(v)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [_redact_strings(v) for v in tree]
    if isinstance(tree, str):
        return redact_override(tree) if "=" in tree else redact_text(tree)
    return tree


def redact_yaml_files(folder: Any) -> None:
    """Rewrite the YAML files Hydra wrote into ``folder`` (``.hydra/``) with every secret hidden:
    values of secret keys, ``key=value`` overrides, URL passwords. Files without a secret stay untouched."""
    from pathlib import Path

    import yaml

    from repro.base.files import atomic_write

    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.yaml")):
        if path.is_symlink() or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        cleaned = _redact_strings(tree)
        if cleaned != tree:
            atomic_write(path, yaml.safe_dump(cleaned, sort_keys=False, allow_unicode=True))
