"""Reading a run directory's record files as untrusted data: the one reader every layer uses.

``run.json`` and ``config.yaml`` come from a run directory that may have been damaged (a disk that filled
up, a hand edit, a copy cut short) or written by someone else. They are read only when they are regular
files of a bounded size, parsed as plain JSON / YAML (nothing is imported or executed), and checked for the
shape every reader relies on: ``run.json`` is a JSON object, ``config.yaml`` a mapping whose
interpolations resolve. What does not fit raises :class:`RunDirectoryError` with one line: what is wrong,
the file, and what to do. Resume, ``repro.load_run``, evaluation and the ``repro`` tools share it.
"""

from __future__ import annotations

import errno
import json
import re
import stat
from pathlib import Path
from typing import Any

from repro.base.errors import RunDirectoryError
from repro.base.layout import CONFIG_FILE, RUN_FILE

#: Larger record files are refused rather than read into memory.
MAX_RECORD_BYTES = 64 << 20

#: What to do about a damaged record, when the caller does not say.
RESTORE = "restore the file from a copy of the run, or start a new run"


def describe(value: Any) -> str:
    """``repr(value)``, cut to about 60 characters."""
    text = repr(value)
    return f"{text[:57]}..." if len(text) > 60 else text


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_record_file(path: Path, limit: int = MAX_RECORD_BYTES) -> str:
    """The text of one record file; RunDirectoryError unless it is a readable regular UTF-8 file."""
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunDirectoryError(f"{path}: a symlink loop, not a file") from None
        raise RunDirectoryError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise RunDirectoryError(f"{path}: not a regular file; a run record holds plain files only")
    if info.st_size > limit:
        raise RunDirectoryError(
            f"{path}: {info.st_size} bytes; record files over {limit} bytes are refused"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
        return raw.decode("utf-8")
    except OSError as exc:
        raise RunDirectoryError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RunDirectoryError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def parse_config(text: str, where: Path) -> dict[str, Any]:
    """A ``config.yaml`` as plain data, read the way Hydra reads it, with interpolations left unresolved.

    RunDirectoryError when it is not YAML, is not a mapping, or uses keys a config cannot have.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        # The shape first: OmegaConf would turn a lone scalar into a key.
        top = yaml.safe_load(text)
        if top is not None and not isinstance(top, dict):
            raise RunDirectoryError(
                f"{where}: holds {type(top).__name__}; expected a mapping of config keys"
            )
        plain = OmegaConf.to_container(OmegaConf.create(text if top else {}), resolve=False)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RunDirectoryError(f"{where}: not valid YAML{at} ({problem})") from None
    except (OmegaConfBaseException, ValueError, TypeError, AssertionError, RecursionError) as exc:
        raise RunDirectoryError(f"{where}: not a config ({describe(_first_line(exc))})") from None
    if not isinstance(plain, dict):
        raise RunDirectoryError(
            f"{where}: holds {type(plain).__name__}; expected a mapping of config keys"
        )
    return plain


def parse_json_object(text: str, where: Path) -> dict[str, Any]:
    """A record's JSON text as a dict; RunDirectoryError when it is not JSON or not an object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RunDirectoryError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise RunDirectoryError(f"{where}: nested too deeply to be a run record") from None
    if not isinstance(value, dict):
        shown = "null" if value is None else type(value).__name__
        raise RunDirectoryError(f"{where}: holds a JSON {shown}; expected an object")
    return value


#: ``run.json``'s section of data fingerprints (``run.fingerprint_data``): ``{name: {"sha256", "what"}}``.
DATA_KEY = "data"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The longest dataset name and description a record may hold.
MAX_DATA_TEXT = 200


def data_fingerprints(manifest: dict[str, Any], where: Path) -> dict[str, dict[str, str]]:
    """``manifest``'s data fingerprints, ``{name: {"sha256": 64 hex digits, "what": text}}`` (empty when
    the record has none); RunDirectoryError naming the entry that does not have that shape."""
    section = manifest.get(DATA_KEY)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise RunDirectoryError(
            f"{where}: {DATA_KEY} is {describe(section)}; expected an object of data fingerprints"
        )
    out = {}
    for name, entry in section.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        what = entry.get("what") if isinstance(entry, dict) else None
        if not name or len(name) > MAX_DATA_TEXT or not name.isprintable():
            raise RunDirectoryError(
                f"{where}: {DATA_KEY} has the name {describe(name)}; expected printable text"
            )
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise RunDirectoryError(
                f"{where}: {DATA_KEY}.{name}.sha256 is {describe(sha)}; expected 64 hex digits"
            )
        if not isinstance(what, str) or len(what) > MAX_DATA_TEXT:
            raise RunDirectoryError(
                f"{where}: {DATA_KEY}.{name}.what is {describe(what)}; expected a short text"
            )
        out[name] = {"sha256": sha, "what": what}
    return out


def read_manifest(run_dir: str | Path, *, todo: str = RESTORE) -> dict[str, Any]:
    """``run_dir``'s ``run.json`` as a dict, or one line naming the file, what is wrong and ``todo``.

    The sections a run reads back (:func:`data_fingerprints`) are checked for their shape too.
    """
    path = Path(run_dir) / RUN_FILE
    try:
        manifest = parse_json_object(read_record_file(path), path)
        data_fingerprints(manifest, path)
    except RunDirectoryError as exc:
        raise RunDirectoryError(f"{exc}; {todo}") from None
    return manifest


def read_config(run_dir: str | Path, *, todo: str = RESTORE) -> Any:
    """``run_dir``'s ``config.yaml`` as a DictConfig whose values resolve (the ``hydra`` node aside), or
    one line naming the file, what is wrong and ``todo``."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / CONFIG_FILE
    try:
        plain = parse_config(read_record_file(path), path)
        cfg = OmegaConf.create(plain)
        try:
            OmegaConf.to_container(
                OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
            )
        # Any error of a resolver or an interpolation: the file is data, its failure one line.
        except Exception as exc:
            raise RunDirectoryError(
                f"{path}: a value does not resolve ({describe(_first_line(exc))})"
            ) from None
    except RunDirectoryError as exc:
        raise RunDirectoryError(f"{exc}; {todo}") from None
    return cfg
