"""A content fingerprint of a task's data: one sha256 over tensors, arrays, bytes, files and folders.

The hash covers a canonical serialization, so it depends on the data only, not on where it lies or
how it was loaded. Each source adds a header line and its bytes, in the order given:

* a tensor or numpy array: ``array <dtype> <shape> <nbytes>`` and its elements' bytes in C order,
  little-endian (a float32 tensor and a float32 array of the same values hash alike);
* bytes: ``bytes <length>`` and the bytes;
* a file: ``file <size>`` and its content (its name is not hashed: a moved copy hashes alike);
* a folder: ``dir <count>``, then per regular file below it, sorted by relative path (links followed,
  each folder once): ``<relative path as JSON> <size>`` and the content.

Files are read in chunks, so a dataset larger than memory hashes in constant memory; a file whose size
changes while it is read is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.base.errors import DataError

#: The first line of every serialization: a later format changes it, so no two formats hash alike.
FORMAT = b"repro-data 1\n"
#: Bytes read from a file, or copied from a device tensor, at a time.
CHUNK = 8 << 20

#: ``progress(done_bytes, total_bytes)``, called as files and tensors are hashed.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DataFingerprint:
    """The sha256 of some data's canonical serialization, and a short description of it."""

    sha256: str
    #: ``'3 files, 12.4 MB'``, ``'tensor float32 (1000, 32)'``: what was hashed, for people.
    what: str
    nbytes: int

    def to_dict(self) -> dict[str, str]:
        """The entry of ``run.json``'s ``data`` section."""
        return {"sha256": self.sha256, "what": self.what}


def human_size(n: int) -> str:
    """``512 B``, ``12.4 MB``: decimal units, one decimal."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


@dataclass
class _Source:
    """One source, ready to hash: its header, its size, its bytes in chunks and its description."""

    header: bytes
    nbytes: int
    chunks: Callable[[], Iterator[Any]]
    what: str
    files: int = 0


def _array(arr: np.ndarray, kind: str) -> _Source:
    if arr.dtype.hasobject:
        raise TypeError("a numpy array of Python objects has no bytes of its own to hash")
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    dtype = arr.dtype.name if arr.dtype.fields is None else repr(arr.dtype.descr)
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    header = f"array {dtype} {_shape(arr.shape)} {flat.nbytes}\n".encode()
    return _Source(header, flat.nbytes, lambda: iter([flat]), f"{kind} {dtype} {_shape(arr.shape)}")


def _tensor(value: torch.Tensor) -> _Source:
    if value.layout != torch.strided or value.is_quantized:
        raise TypeError(
            "a sparse or quantized tensor: only dense tensors are hashed (use .to_dense())"
        )
    dtype, shape = str(value.dtype).removeprefix("torch."), _shape(tuple(value.shape))
    t = value.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
    nbytes = t.numel() * t.element_size()
    step = max(1, CHUNK // t.element_size())

    def chunks() -> Iterator[Any]:
        for start in range(0, t.numel(), step):
            # A device tensor comes to the host one slab at a time.
            yield t[start : start + step].cpu().view(torch.uint8).numpy()

    header = f"array {dtype} {shape} {nbytes}\n".encode()
    return _Source(header, nbytes, chunks, f"tensor {dtype} {shape}")


def _read(path: Path, size: int) -> Iterator[Any]:
    buffer = bytearray(min(CHUNK, max(size, 1)))
    view = memoryview(buffer)
    done = 0
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            done += n
            yield view[:n]
    if done != size:
        raise DataError(f"{path} changed while it was read ({size} bytes, then {done})")


def _files_below(top: Path) -> list[tuple[str, Path, int]]:
    """(relative path, path, size) of every regular file below ``top``, sorted; links are followed as
    ``find -L`` follows them, except a link back to a folder above it (a loop)."""
    found: list[tuple[str, Path, int]] = []

    def walk(folder: Path, above: frozenset[tuple[int, int]]) -> None:
        info = folder.stat()
        here = above | {(info.st_dev, info.st_ino)}
        with os.scandir(folder) as entries:
            paths = sorted(Path(entry.path) for entry in entries)
        for path in paths:
            try:
                info = path.stat()
            except OSError:
                # A dangling link holds no data.
                continue
            if stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) not in here:
                walk(path, here)
            elif stat.S_ISREG(info.st_mode):
                found.append((path.relative_to(top).as_posix(), path, info.st_size))

    walk(top, frozenset())
    return sorted(found)


def _path(path: Path) -> _Source:
    if path.is_file():
        size = path.stat().st_size
        return _Source(
            f"file {size}\n".encode(),
            size,
            lambda: _read(path, size),
            f"1 file, {human_size(size)}",
            1,
        )
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    files = _files_below(path)
    total = sum(size for _, _, size in files)

    def chunks() -> Iterator[Any]:
        for rel, file, size in files:
            yield f"{json.dumps(rel)} {size}\n".encode()
            yield from _read(file, size)

    word = "file" if len(files) == 1 else "files"
    return _Source(
        f"dir {len(files)}\n".encode(),
        total,
        chunks,
        f"{len(files)} {word}, {human_size(total)}",
        len(files),
    )


def _source(value: Any) -> _Source:
    if isinstance(value, torch.Tensor):
        return _tensor(value)
    if isinstance(value, np.ndarray):
        return _array(value, "array")
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return _Source(
            f"bytes {len(data)}\n".encode(),
            len(data),
            lambda: iter([data]),
            f"bytes, {human_size(len(data))}",
        )
    if isinstance(value, str | os.PathLike):
        return _path(Path(value))
    raise TypeError(f"{type(value).__name__}: expected a tensor, a numpy array, bytes or a path")


def _describe(sources: list[_Source]) -> str:
    if len(sources) == 1:
        return sources[0].what
    files = sum(s.files for s in sources)
    if len(sources) <= 3:
        return "; ".join(s.what for s in sources)
    total = human_size(sum(s.nbytes for s in sources))
    return f"{len(sources)} sources{f' ({files} files)' if files else ''}, {total}"


def data_fingerprint(*sources: Any, progress: Progress | None = None) -> DataFingerprint:
    """The sha256 of ``sources`` (tensors, numpy arrays, bytes, paths of files or folders), in order.

    Raises DataError naming the source that cannot be hashed (a missing path, an unreadable file, a
    type that holds no data of its own). ``progress(done, total)`` follows the bytes hashed.
    """
    if not sources:
        raise DataError("no data given: pass tensors, numpy arrays, bytes or paths")
    try:
        parts = [_source(value) for value in sources]
    except (TypeError, OSError) as exc:
        raise DataError(_why(exc)) from None
    total = sum(p.nbytes for p in parts)
    h = hashlib.sha256(FORMAT)
    done = 0
    try:
        for part in parts:
            h.update(part.header)
            for chunk in part.chunks():
                h.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(min(done, total), total)
    except OSError as exc:
        raise DataError(_why(exc)) from None
    return DataFingerprint(h.hexdigest(), _describe(parts), total)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)
