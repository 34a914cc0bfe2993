"""More than one node, on this machine: two torchrun agents (``--nnodes 2``, one process each, the
c10d rendezvous on the loopback address, as docs/scale.md launches them on SLURM) give the bits of
one agent with two processes, under the default profile."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Run, clean_env, run_tool
from repro.core.threads import TORCHRUN_NOTE

pytestmark = pytest.mark.slow
#: The LM example: its bits move with the thread count (the image example's do not at this size).
LM = ["experiment=lm", "train.epochs=1", "data.train_chars=16000", "data.val_chars=2000"]
#: Seconds for a whole launch (a few seconds each here; generous for a loaded CI machine).
TIMEOUT = 600
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Process ids started by ``pid`` and their own, read from /proc (empty where there is none)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in map(int, (task / "children").read_text().split()):
                out += [child, *descendants(child)]
    return out


def stop(proc: subprocess.Popen) -> None:
    """End an agent still running, and the ranks it started (in sessions of their own), by their ids."""
    if proc.poll() is not None:
        return
    ranks = descendants(proc.pid)
    # torchrun stops its workers on SIGTERM
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def launch(cwd: Path, *agents: list[str]) -> list[subprocess.CompletedProcess]:
    """Start every agent at once (fresh interpreters, as users start them), wait for all of them.

    ``OMP_NUM_THREADS`` is left out of the environment, as a fresh shell has it: torchrun then sets
    it to 1 for a node with several processes only, the difference the kit must close.
    """
    env = clean_env("OMP_NUM_THREADS")
    logs = [(cwd / f"agent{i}.out", cwd / f"agent{i}.err") for i in range(len(agents))]
    procs = []
    try:
        for cmd, (out, err) in zip(agents, logs, strict=True):
            with open(out, "w") as o, open(err, "w") as e:
                procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=o, stderr=e))
        deadline = time.monotonic() + TIMEOUT
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            stop(proc)
    return [
        subprocess.CompletedProcess(p.args, p.returncode, out.read_text(), err.read_text())
        for p, (out, err) in zip(procs, logs, strict=True)
    ]


def check(done: list[subprocess.CompletedProcess]) -> None:
    for i, proc in enumerate(done):
        if proc.returncode != 0:
            raise AssertionError(
                f"agent {i} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )


def two_nodes(cwd: Path, *overrides: str) -> tuple[Run, list[subprocess.CompletedProcess]]:
    """2 nodes x 1 process: one agent per node, the job named by ``--rdzv_id`` (its run directory
    ``outputs/torchrun/<id>`` on the filesystem both nodes share), rank 0 writing."""
    cwd.mkdir(parents=True, exist_ok=True)
    job = f"job{os.getpid()}{cwd.name}"
    agent = [
        *TORCHRUN,
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{free_port()}",
        f"--rdzv_id={job}",
        "-m",
        "experiment.train",
        *overrides,
    ]
    done = launch(cwd, agent, agent)
    check(done)
    return Run(cwd / "outputs" / "torchrun" / job, done[0]), done


def one_node(cwd: Path, *overrides: str) -> Run:
    """1 node x 2 processes, as docs/scale.md starts it on one machine."""
    cwd.mkdir(parents=True, exist_ok=True)
    run_dir = cwd / "run"
    agent = [*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "experiment.train"]
    done = launch(cwd, [*agent, *overrides, f"hydra.run.dir={run_dir}"])
    check(done)
    return Run(run_dir, done[0])


def threads(run: Run) -> tuple[int, int, str]:
    m = run.manifest
    setting = m["determinism"]["settings"]["torch.num_threads"]
    return m["environment"]["cpu"]["num_threads"], setting["applied"], setting["note"]


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Run, list[subprocess.CompletedProcess]]:
    """The 2 nodes x 1 process run under the default profile, shared by the tests that compare with it."""
    return two_nodes(tmp_path_factory.mktemp("multinode") / "two", *LM)


def test_two_nodes_of_one_process_give_the_bits_of_one_node_of_two(two, tmp_path):
    two, agents = two
    one = one_node(tmp_path / "one", *LM)
    assert two.weights == one.weights
    assert two.fingerprints() == one.fingerprints()
    for run in (two, one):
        assert run.manifest["status"] == "completed"
        assert run.manifest["distributed"] == {"world_size": 2, "backend": "gloo"}
        assert threads(run) == (1, 1, TORCHRUN_NOTE)
    # what torchrun gave the two layouts did differ: the kit closed the gap
    assert "OMP_NUM_THREADS" not in two.manifest["environment"]["env_at_start"]
    assert one.manifest["environment"]["env_at_start"]["OMP_NUM_THREADS"] == "1"
    # one run directory, written by rank 0; the other node wrote nothing and said nothing
    assert [p.name for p in two.dir.parents[2].iterdir() if p.is_dir()] == ["outputs"]
    assert [p.name for p in two.dir.parent.iterdir()] == [two.dir.name]
    out = "".join(a.stdout + a.stderr for a in agents)
    assert out.count("weights sha256:") == 1
    assert out.count(TORCHRUN_NOTE) == 1


def test_the_thread_count_does_move_these_bits(two, tmp_path):
    """The control: 2 nodes x 1 process on 2 threads each (torch's own default on a 2-core node,
    before the kit pinned it) give other weights than on 1 thread each; an explicit pin wins."""
    pinned, _ = two_nodes(tmp_path / "two", *LM, "repro.threads=2")
    assert threads(pinned) == (2, 2, "")
    assert pinned.weights != two[0].weights


def test_repro_verify_replays_a_two_node_run_on_one_node(two, tmp_path):
    """The replay runs 1 node x 2 processes here: the same bits, by the thread rule."""
    run = two[0]
    out = run_tool("verify", run.dir, "--steps", 3, "--out", tmp_path / "replay", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IDENTICAL"
