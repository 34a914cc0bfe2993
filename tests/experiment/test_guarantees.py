"""The kit's promises for this experiment, checked the way a user meets them: every run is
``python -m experiment.train ...`` started in a fresh interpreter, as from a shell.

Same config + same seed = the same bits: a second run, and a run with loader worker processes;
a run killed with SIGKILL (``kill -9``, from outside, as a preempted job dies) and resumed with
``train.resume=RUN_DIR`` ends with the bits of the uninterrupted run; ``python -m repro verify``
replays a run and says IDENTICAL; ``python -m experiment.evaluate run=RUN_DIR`` evaluates it.
A generated project keeps this module (renamed with its package): these are its guarantees.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import QUICK, Run, clean_env, run_main, run_module, verify_identical

pytestmark = pytest.mark.slow
#: Three short epochs of 8 steps, a checkpoint every 3 steps (and at each epoch end).
RUN = [*QUICK, "train.epochs=3", "train.checkpoint_every=3", "repro.num_workers=0"]
ENTRY = "experiment.train"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Run:
    """One uninterrupted run, shared by the module's tests."""
    run = run_main(tmp_path_factory.mktemp("reference") / "run", *RUN, module=ENTRY)
    assert run.manifest["status"] == "completed"
    return run


def assert_same_bits(run: Run, reference: Run) -> None:
    """The same final weights, the same fingerprint at every step, the same metrics."""
    assert run.manifest["status"] == "completed"
    assert run.manifest["weights_sha256"] == reference.manifest["weights_sha256"]
    assert run.weights == reference.weights
    assert run.fingerprints() == reference.fingerprints()
    assert run.metrics() == reference.metrics()


def test_a_second_run_gives_the_same_bits(tmp_path, reference):
    assert_same_bits(run_main(tmp_path / "again", *RUN, module=ENTRY), reference)


def test_loader_worker_processes_give_the_same_bits(tmp_path, reference):
    run = run_main(tmp_path / "workers", *RUN, "repro.num_workers=2", module=ENTRY)
    assert_same_bits(run, reference)


def kill_mid_run(run_dir, timeout: float = 120) -> None:
    """Start the run and SIGKILL it from outside once it has written a checkpoint: mid-run."""
    cmd = [sys.executable, "-m", ENTRY, f"hydra.run.dir={run_dir}", *RUN]
    with (run_dir.parent / "killed.log").open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=run_dir.parent, env=clean_env(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        checkpointed = False
        while not checkpointed and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            checkpointed = any((run_dir / "checkpoints").glob("step-*.ckpt"))
        log = (run_dir.parent / "killed.log").read_text()
        assert proc.poll() is None, f"the run ended before it was killed:\n{log[-2000:]}"
        assert checkpointed, f"no checkpoint after {timeout} s:\n{log[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_run_killed_mid_way_resumes_to_the_bits_of_an_uninterrupted_run(tmp_path, reference):
    run_dir = tmp_path / "run"
    kill_mid_run(run_dir)
    killed = json.loads((run_dir / "run.json").read_text())
    assert killed["status"] == "running"  # SIGKILL: nothing could record the end
    cmd = [sys.executable, "-m", ENTRY, f"train.resume={run_dir}"]
    resumed = Run(run_dir, run_module(cmd, cwd=tmp_path))
    assert resumed.proc.returncode == 0, resumed.proc.stdout + resumed.proc.stderr
    assert_same_bits(resumed, reference)
    (entry,) = resumed.manifest["resumes"]
    assert entry["from_step"] > 0 and resumed.manifest["resume_exact"] is True


def test_repro_verify_replays_the_run_and_says_identical(tmp_path, reference):
    verify_identical(reference.dir, tmp_path / "replay")


def test_evaluate_writes_the_metrics_of_the_final_weights(tmp_path, reference):
    cmd = [sys.executable, "-m", "experiment.evaluate", f"run={reference.dir}"]
    done = run_module(cmd, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads((reference.dir / "eval-val.json").read_text())
    assert out == json.loads(done.stdout.strip().splitlines()[-1])
    last_epoch = [r for r in reference.metrics() if r["split"] == "epoch"][-1]
    assert (out["val_acc"], out["val_loss"]) == (last_epoch["val_acc"], last_epoch["val_loss"])
    assert out["weights"] == "weights.pt" and out["which"] == "final"
