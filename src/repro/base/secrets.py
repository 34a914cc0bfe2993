"""Secrets never reach a run's files: what counts as one, and how it is hidden.

A value is hidden when its key names a credential (``api_key``, ``wandb_key``,
``db_password``, ``token``, ...; a leading ``+``/``++``/``~`` and any parent
keys ignored), and a URL's password is hidden whatever its key
(``postgres://user:<redacted>@host/db``).

:func:`redact_text` is the one pass every string the kit or Hydra writes goes through (a config copy,
Hydra's own files, a log line, ``run.json`` with its error, stderr, a value handed to a logger). It knows
the spellings Hydra produces: ``key=value`` and ``key\\=value``, a quoted value, and a URL written
``scheme\\://user\\:password@host`` in a sweep's files. :func:`redact_tree` applies it to a config tree
and also hides the value of every secret key.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "<redacted>"
#: The words that make a key a credential's, as the last word of the key.
_WORDS = (
    r"token|secret|password|passwd|pwd|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|"
    r"wandb[_-]?key|auth[_-]?key|license[_-]?key|credentials?|auth[_-]?token|bearer"
)
# Config keys are named by people ("key_dim" is no secret): match whole words at the end of the key.
_SECRET_KEY = re.compile(rf"(^|[_.-])({_WORDS})s?$", re.I)
#: A key that names a credential, inside a text (``service.api_key``, ``+db_password``).
_KEY_IN_TEXT = rf"(?<![\w.\\-])[+~]*(?:[\w-]+\.)*(?:[\w-]*[_-])?(?:{_WORDS})s?"
#: How a secret is written inside a text; each pattern's ``secret`` group is what is hidden.
_IN_TEXT = (
    # A URL's password, also as a sweep's files escape it: scheme\://user\:password@host.
    re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*\\?://[^:/@\s]*:)(?P<secret>[^/\s'\"]+)(?=@)"),
    # key=value as a command line, Hydra's files or a log line write it (key\=value, 'quoted').
    re.compile(
        rf"(?P<head>{_KEY_IN_TEXT}\s*\\?=\s*)(?!{REDACTED})(?P<secret>'[^']*'|\"[^\"]*\"|[^\s'\"]*[^\s'\":])",
        re.I,
    ),
    # 'key': 'value' or "key": "value", as a Python or JSON mapping quoted by an error message.
    re.compile(
        rf"(?P<head>(?P<q>['\"])[+~]*(?:[\w-]+\.)*(?:[\w-]*[_-])?(?:{_WORDS})s?(?P=q)\s*:\s*)"
        rf"(?!{REDACTED})(?P<secret>'[^']*'|\"[^\"]*\"|[^\s,}}]+)",
        re.I,
    ),
    # An HTTP authorization header quoted by an error message.
    re.compile(r"(?P<head>\bBearer\s+)(?P<secret>[\w.~+/-]+=*)"),
)


#: An environment variable's name is written by programs, not people: any part of it counts.
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)


def is_secret_env_name(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a credential (``WANDB_API_KEY``)."""
    return bool(_SECRET_ENV.search(str(name)))


def is_secret_key(name: str) -> bool:
    """Whether a config key's (last) name says it holds a credential."""
    return bool(_SECRET_KEY.search(str(name).lstrip("+~").rsplit(".", 1)[-1]))


def redact_text(value: str) -> str:
    """``value`` with every secret in it hidden: URL passwords and the values of secret keys, in any
    spelling Hydra writes them. The one redaction pass: every other function here calls it."""
    for pattern in _IN_TEXT:
        value = pattern.sub(_hidden, value)
    return value


def _hidden(match: re.Match[str]) -> str:
    # A count of tokens (max_tokens=1024) is no credential.
    key = match["head"].rstrip(" =\\:'\"").lower()
    if key.endswith("tokens") and match["secret"].isdigit():
        return match[0]
    return f"{match['head']}{REDACTED}"


def _hides(key: Any, value: Any) -> bool:
    """Whether a tree hides ``value`` for its ``key``: a string or a number under a secret key (a count
    such as ``max_tokens: 1024`` stays)."""
    if value is None or isinstance(value, bool | dict | list) or not is_secret_key(str(key)):
        return False
    return isinstance(value, str) or not str(key).lower().endswith("tokens")


def redact_tree(tree: Any) -> Any:
    """A copy of a plain tree (a config, a record) with secret values hidden: the value of a secret key,
    and every string through :func:`redact_text`."""
    if isinstance(tree, dict):
        return {k: REDACTED if _hides(k, v) else redact_tree(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact_tree(v) for v in tree]
    if isinstance(tree, str):
        return redact_text(tree)
    return tree


def redact_args(args: list[str]) -> list[str]:
    """Command-line arguments with every secret value hidden."""
    return [redact_text(str(a)) for a in args]


def redact_yaml_files(folder: Any) -> None:
    """Rewrite the YAML files Hydra wrote into ``folder`` (a run's ``.hydra/``, a sweep's directory with
    ``multirun.yaml``) with every secret hidden. Files without a secret stay untouched; a link is never
    followed."""
    from pathlib import Path

    import yaml

    from repro.base.files import atomic_write

    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return
    for path in sorted(folder.glob("*.yaml")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        cleaned = redact_tree(tree)
        if cleaned != tree:
            atomic_write(path, yaml.safe_dump(cleaned, sort_keys=False, allow_unicode=True))


class _RedactingRecords:
    """A log record factory that passes every record's message through :func:`redact_text`."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.make(*args, **kwargs)
        try:
            message = record.getMessage()
        # A malformed call: logging reports it when the record is formatted.
        except Exception:
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record


def redact_logging() -> None:
    """Hide secrets in every log record of this process (the kit's, Hydra's, a library's), whatever
    handlers Hydra's logging config installs later: the record factory is replaced, not a handler."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecords):
        logging.setLogRecordFactory(_RedactingRecords(factory))
