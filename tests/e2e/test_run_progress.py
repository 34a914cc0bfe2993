"""What a training run shows while it runs: plain per-epoch lines and no bar when stderr is not a
terminal (a pipe, a log file), and a live bar (steps, loss, samples/s, ETA) on a terminal that leaves
the run's bits as they were. The fixture experiment, each run a ``python -m`` process. (The progress of
the tools' replays: tests/tools/test_progress.py and tests/tools/test_cli.py; a sweep's progress lines:
tests/e2e/test_multirun.py.)"""

from __future__ import annotations

import re
import sys

import pytest

from conftest import FIXTURE, run_on_terminal

pytestmark = pytest.mark.slow
BAR_MARKS = ("\r", "%|", "step/s", "█")


def test_no_bar_when_stderr_is_not_a_terminal(default_fixture_run):
    output = default_fixture_run.proc.stdout + default_fixture_run.proc.stderr
    # the plain per-epoch lines
    assert "epoch 3/3  step 36" in output
    assert not [mark for mark in BAR_MARKS if mark in output]


def test_a_terminal_gets_a_live_bar_and_the_same_bits(default_fixture_run, tmp_path):
    """stderr on a pseudo-terminal: the bar is drawn (steps, loss, samples/s, ETA); the run's bits do
    not change, since the bar draws no random number."""
    cmd = [sys.executable, "-m", FIXTURE, f"hydra.run.dir={tmp_path / 'tty'}"]
    code, screen, _ = run_on_terminal(cmd, tmp_path)
    assert code == 0
    assert "epoch 1/3" in screen and "%|" in screen and "samples/s" in screen and "loss " in screen
    # steps done, elapsed<ETA, rate (tqdm writes s/step below one step a second, as on a busy machine)
    assert re.search(r"\d+/12 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step)", screen)
    assert (tmp_path / "tty" / "weights.pt").read_bytes() == default_fixture_run.weights
