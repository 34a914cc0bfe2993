"""``run.fingerprint_data``: the content fingerprints of the data a task declares, in ``run.json``.

A task names each dataset it wants recorded and hands over what holds it (tensors, numpy arrays,
bytes, files, folders: :func:`repro.core.data_fingerprint.data_fingerprint`). Rank 0 records
``data: {name: {"sha256", "what"}}`` in ``run.json``, where ``repro diff`` compares it. A resumed run
hashes its data again and refuses to go on when a dataset no longer matches what the interrupted
process recorded: the steps after the checkpoint would train on other data.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from repro.base.errors import DataError
from repro.base.records import DATA_KEY, MAX_DATA_TEXT
from repro.core.data_fingerprint import DataFingerprint, data_fingerprint, human_size

if TYPE_CHECKING:
    from repro.run.record import RunRecord
    from repro.run.run import Run

log = logging.getLogger("repro.run")

#: Hashing that takes longer than this logs how far it got, at most this often.
PROGRESS_EVERY_S = 10.0


class _HashProgress:
    """Log lines for hashing that takes long (rank 0): how far it got, every PROGRESS_EVERY_S seconds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        log.info(
            "hashing data %r: %d%% of %s (%.0f s)",
            self.name,
            100 * done // max(total, 1),
            human_size(total),
            now - self.start,
        )


def fingerprint_data(run: Run, name: str, *sources: Any) -> DataFingerprint:
    """Record a content fingerprint of the data named ``name`` in ``run.json``, and return it.

    ``sources``: tensors, numpy arrays, bytes, or paths of files and folders (every file below,
    read in chunks), hashed in the order given with their dtypes and shapes. ``run.json`` gets
    ``data: {name: {"sha256": ..., "what": "3 files, 12.4 MB"}}`` and ``repro diff`` names a dataset
    whose fingerprint differs between two runs. On a resume the data is hashed again: a dataset
    that no longer matches what the interrupted run recorded raises DataError (exit status 2). Every
    rank hashes its own data (no communication); rank 0 records and checks. Call it once per
    dataset, before training, with the data the task trains on (a file's name is not hashed: a
    moved copy fingerprints alike).
    """
    if not isinstance(name, str) or not name or len(name) > MAX_DATA_TEXT or not name.isprintable():
        raise DataError(
            f"run.fingerprint_data({name!r}, ...): the name must be a short printable text, "
            "such as 'corpus'"
        )
    started = time.monotonic()
    try:
        found = data_fingerprint(
            *sources, progress=_HashProgress(name) if run.dist.is_main else None
        )
    except DataError as exc:
        raise DataError(f"run.fingerprint_data({name!r}, ...): {exc}") from None
    if run.dist.is_main:
        record_data(run.record, name, found)
        took = time.monotonic() - started
        log.info(
            "data %r: %s, sha256 %s%s",
            name,
            found.what,
            found.sha256[:16],
            f" (hashed in {took:.1f} s)" if took >= 1 else "",
        )
    return found


def record_data(record: RunRecord, name: str, found: DataFingerprint) -> None:
    """Add ``found`` under ``name`` to the record's ``data``; DataError when a resumed run's data no
    longer matches what the interrupted process recorded under that name."""
    before = record.interrupted_data.get(name)
    if before is not None and before["sha256"] != found.sha256:
        raise DataError(
            f"data {name!r} changed under the resumed run {record.run_dir}: it was recorded as sha256 "
            f"{before['sha256'][:16]}... ({before['what']}), it is now {found.sha256[:16]}... "
            f"({found.what}); put back the data the run started with, or start a new run"
        )
    section = dict(record.manifest.get(DATA_KEY) or {})
    section[name] = found.to_dict()
    record.update(**{DATA_KEY: section})
