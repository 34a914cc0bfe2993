"""The tools' progress (``repro.tools.progress``): what it reads from a replay's directory, and what it
writes where. End to end (a replay on a pipe and on a pseudo-terminal): tests/tools/test_cli.py."""

from __future__ import annotations

import io
import json
import os

from repro.tools.progress import ToolProgress, last_step


def rows(*steps: int) -> str:
    return "".join(json.dumps({"step": s, "loss": "3f800000"}) + "\n" for s in steps)


def test_the_last_complete_row_gives_the_step(tmp_path):
    path = tmp_path / "fingerprints.jsonl"
    assert last_step(path) is None  # not there yet
    path.write_text(rows(1, 2, 3))
    assert last_step(path) == 3
    path.write_text(rows(1, 2, 3) + '{"step": 4, "lo')  # a row still being written
    assert last_step(path) == 3
    path.write_text(rows(*range(1, 500)))  # longer than one read: only the tail is read
    assert last_step(path) == 499


def test_odd_files_give_no_step_and_no_error(tmp_path):
    path = tmp_path / "fingerprints.jsonl"
    for text in ("not json\n", "[1, 2]\n", '{"step": "7"}\n', '{"step": true}\n', "x" * 100_000):
        path.write_text(text)
        assert last_step(path) is None, text
    path.write_text(rows(1) + "y" * 100_000 + "\n")  # a last line longer than what is read
    assert last_step(path) is None
    target = tmp_path / "elsewhere.jsonl"
    target.write_text(rows(9))
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert last_step(link) is None  # never followed
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert last_step(fifo) is None  # not a regular file: not even opened for a blocking read
    assert last_step(tmp_path) is None


def test_off_a_terminal_a_phase_is_one_plain_line_and_no_bar(tmp_path):
    stream = io.StringIO()  # not a terminal
    progress = ToolProgress(stream)
    assert not progress.live and progress.echo is progress
    (tmp_path / "f.jsonl").write_text(rows(1, 2))
    with progress.phase(
        "replaying steps 1-2 of RUN", label="replay 1-2", total=2, watch=tmp_path / "f.jsonl"
    ):
        progress.write("    | a line of the replay\n")
    assert stream.getvalue() == "replaying steps 1-2 of RUN\n    | a line of the replay\n"


def test_no_stream_means_silence():
    progress = ToolProgress(None)
    assert progress.echo is None and not progress.live
    with progress.phase("anything", label="x", total=3):
        assert progress.write("text\n") == 0


def test_a_live_bar_counts_the_steps_after_the_start_and_lets_lines_through(tmp_path):
    stream = io.StringIO()
    progress = ToolProgress(stream, live=True)
    path = tmp_path / "f.jsonl"
    path.write_text(rows(1, 2, 3, 4, 5))  # a resumed replay: rows up to its checkpoint were copied
    with progress.phase("segment 1/1", label="segment 1/1", total=3, watch=path, after_step=5):
        progress.write("    | resuming\n")
        path.write_text(rows(1, 2, 3, 4, 5, 6, 7, 8))
    screen = stream.getvalue()
    assert screen.startswith("segment 1/1\n") and "    | resuming\n" in screen
    assert "segment 1/1:" in screen and "3/3 [" in screen and "%|" in screen
    assert "0/3 [" in screen and "4/3" not in screen and "8/3" not in screen
