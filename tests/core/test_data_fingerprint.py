"""The content fingerprint of data (``repro.core.data_fingerprint``): what it covers, what it leaves out,
that it is the same in another process, and that a record's ``data`` section is read as untrusted data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import repro.core.data_fingerprint as fingerprinting
from conftest import run_python
from repro.base.errors import DataError, RunDirectoryError
from repro.base.records import data_fingerprints
from repro.core.data_fingerprint import data_fingerprint, human_size


def folder(tmp_path: Path) -> Path:
    top = tmp_path / "data"
    (top / "sub").mkdir(parents=True)
    (top / "a.bin").write_bytes(bytes(range(256)) * 40)
    (top / "sub" / "b.txt").write_bytes(b"tokens\n" * 100)
    return top


def sha(*sources) -> str:
    return data_fingerprint(*sources).sha256


def test_a_tensor_and_an_array_of_the_same_values_hash_alike():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert sha(t) == sha(t.numpy()) == sha(t.clone().requires_grad_())
    # Layout in memory does not count, the values in C order do.
    assert sha(t.t()) == sha(t.t().contiguous()) != sha(t)
    # Big-endian storage hashes as the same numbers.
    assert sha(np.arange(5, dtype=">i4")) == sha(np.arange(5, dtype="<i4"))


@pytest.mark.parametrize(
    "other",
    [
        torch.arange(12, dtype=torch.float64).reshape(3, 4),
        torch.arange(12, dtype=torch.float32).reshape(4, 3),
        torch.arange(12, dtype=torch.float32).reshape(3, 4).add(torch.eye(3, 4) * 1e-6),
    ],
    ids=["dtype", "shape", "one value"],
)
def test_dtype_shape_and_values_each_change_the_hash(other):
    assert sha(torch.arange(12, dtype=torch.float32).reshape(3, 4)) != sha(other)


def test_one_byte_of_one_file_changes_the_hash_and_a_moved_copy_does_not(tmp_path):
    top = folder(tmp_path)
    before = data_fingerprint(top)
    assert before.what == "2 files, 10.9 kB" and before.nbytes == 10940
    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    top.rename(moved)
    assert sha(moved) == before.sha256
    path = moved / "sub" / "b.txt"
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    assert sha(moved) != before.sha256


def test_a_renamed_file_inside_a_folder_changes_the_hash_but_a_single_files_name_does_not(
    tmp_path,
):
    top = folder(tmp_path)
    before = sha(top)
    one = sha(top / "a.bin")
    (top / "a.bin").rename(top / "c.bin")
    assert sha(top) != before
    assert sha(top / "c.bin") == one


def test_the_order_of_sources_counts_and_sources_do_not_run_together():
    assert sha(b"ab", b"c") != sha(b"a", b"bc") != sha(b"abc")
    assert sha(b"a", b"b") != sha(b"b", b"a")


def test_files_are_read_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    top = folder(tmp_path)
    t = torch.randn(1000)
    whole = sha(top, t)
    seen = []
    monkeypatch.setattr(fingerprinting, "CHUNK", 64)
    small = data_fingerprint(top, t, progress=lambda done, total: seen.append((done, total)))
    assert small.sha256 == whole
    assert len(seen) > 100 and seen[-1] == (small.nbytes, small.nbytes)


def test_links_are_followed_and_a_loop_is_not(tmp_path):
    top = folder(tmp_path)
    os.symlink(top / "sub", top / "alias")
    os.symlink(top, top / "sub" / "loop")
    os.symlink(top / "missing", top / "dangling")
    assert data_fingerprint(top).what == "3 files, 11.6 kB"


def test_descriptions():
    assert data_fingerprint(torch.zeros(1000, 32)).what == "tensor float32 (1000, 32)"
    assert data_fingerprint(np.zeros(5, np.int64)).what == "array int64 (5,)"
    assert data_fingerprint(b"x" * 2048).what == "bytes, 2.0 kB"
    assert data_fingerprint(b"a", b"b").what == "bytes, 1 B; bytes, 1 B"
    assert data_fingerprint(*[b"a"] * 4).what == "4 sources, 4 B"
    assert [human_size(n) for n in (999, 12_400_000, 3 * 10**12)] == ["999 B", "12.4 MB", "3.0 TB"]


@pytest.mark.parametrize(
    "sources, message",
    [
        ((), "no data given"),
        ((3,), "int: expected a tensor, a numpy array, bytes or a path"),
        (("/no/such/dataset",), "/no/such/dataset: no such file or directory"),
        ((np.array([object()]),), "a numpy array of Python objects"),
        ((torch.eye(3).to_sparse(),), "only dense tensors are hashed"),
    ],
)
def test_what_cannot_be_hashed_is_one_line(sources, message):
    with pytest.raises(DataError, match="^[^\n]*$") as caught:
        data_fingerprint(*sources)
    assert message in str(caught.value)


def test_the_same_data_hashes_alike_in_another_process(tmp_path):
    top = folder(tmp_path)
    table = np.random.default_rng(3).normal(size=(50, 7)).astype(np.float32)
    np.save(tmp_path / "table.npy", table)
    here = sha(top, torch.from_numpy(table), b"header")
    done = run_python(
        tmp_path,
        """
        import sys
        import numpy as np
        from repro.core.data_fingerprint import data_fingerprint

        table = np.load(sys.argv[2])
        print(data_fingerprint(sys.argv[1], table, b"header").sha256)
        """,
        str(top),
        str(tmp_path / "table.npy"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == here


GOOD = {"sha256": "0" * 64, "what": "2 files, 1.0 kB"}


@pytest.mark.parametrize(
    "section, message",
    [
        ([GOOD], "data is [{'sha256'"),
        ({"corpus": "0" * 64}, "data.corpus.sha256 is None"),
        ({"corpus": {**GOOD, "sha256": "F" * 64}}, "data.corpus.sha256 is 'FFFF"),
        ({"corpus": {**GOOD, "what": None}}, "data.corpus.what is None"),
        ({"corpus": {**GOOD, "what": "x" * 500}}, "data.corpus.what is 'xxxx"),
        ({"": GOOD}, "data has the name ''"),
        ({"a\nb": GOOD}, "data has the name 'a\\nb'"),
    ],
)
def test_a_records_data_section_is_checked_for_its_shape(section, message):
    where = Path("run/run.json")
    with pytest.raises(RunDirectoryError) as caught:
        data_fingerprints(json.loads(json.dumps({"data": section})), where)
    assert str(caught.value).startswith(f"{where}: ") and message in str(caught.value)


def test_a_record_without_data_has_none():
    assert data_fingerprints({}, Path("run.json")) == {}
    assert data_fingerprints({"data": None}, Path("run.json")) == {}
    assert data_fingerprints({"data": {"c": GOOD}}, Path("run.json")) == {"c": GOOD}
