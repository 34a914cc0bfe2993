"""``train.strategy=fsdp``: the example sharded with FSDP2 over 2 CPU ranks (gloo), checkpoints written by
every rank through DCP. Two runs give the same bits; a SIGKILL + resume gives the bits of an
uninterrupted run; ``repro verify`` says IDENTICAL; ``repro diff`` of a DDP and an FSDP run compares
like with like (fingerprints digest the whole parameters); a checkpoint whose shards are incomplete is
skipped; the shards reshard to one process through DCP; another world size is refused on resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import QUICK, run_tool, torchrun, verify_identical

pytestmark = pytest.mark.slow
RUN = [*QUICK, "train.epochs=2", "train.checkpoint_every=5", "train.strategy=fsdp"]


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    return torchrun(tmp_path_factory.mktemp("fsdp") / "run", *RUN)


def same_bits(a, b):
    assert a.weights == b.weights
    assert a.fingerprints() == b.fingerprints()


def test_two_fsdp_runs_give_the_same_bits(fsdp, tmp_path):
    same_bits(fsdp, torchrun(tmp_path / "again", *RUN))
    assert fsdp.manifest["distributed"]["world_size"] == 2
    # every checkpoint: the kit's file (rank 0) and a folder of every rank's shards (DCP)
    ckpts = sorted(p.name for p in (fsdp.dir / "checkpoints").iterdir())
    assert "step-000000016.ckpt" in ckpts and "step-000000016.shards" in ckpts
    shards = fsdp.dir / "checkpoints" / "step-000000016.shards"
    assert (shards / ".metadata").is_file() and len(list(shards.glob("*.distcp"))) == 2


def test_sigkill_then_resume_is_exact_and_only_with_the_same_world_size(fsdp, tmp_path):
    run_dir = tmp_path / "run"
    killed = torchrun(run_dir, *RUN, check=False, env={"REPRO_FAULT_KILL_AT_STEP": "7"})
    assert killed.proc.returncode != 0
    # another world size: refused before anything is written (the per-rank state would not map)
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    one = torchrun(run_dir, *RUN, "train.resume=auto", nproc=1, check=False)
    assert one.proc.returncode != 0
    assert "its checkpoints were written by 2 rank(s), this launch has 1" in one.proc.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
    resumed = torchrun(run_dir, *RUN, "train.resume=auto")
    same_bits(fsdp, resumed)
    assert resumed.manifest["resume_exact"] is True


def test_checkpoints_with_incomplete_or_changed_shards_are_skipped(fsdp, tmp_path):
    """Two damaged checkpoints, as a SIGKILL during the shard write and a changed file leave them: the
    newest one's shards lack DCP's metadata (written last), the one before has a shard file with one
    byte flipped (no longer the sha256 it recorded). The resume skips both, names them, continues from
    the checkpoint before them, and is exact."""
    run_dir = shutil.copytree(fsdp.dir, tmp_path / "run")
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["status"] = "running"
    (run_dir / "run.json").write_text(json.dumps(manifest))
    (run_dir / "weights.pt").unlink()
    (run_dir / "checkpoints" / "step-000000016.shards" / ".metadata").unlink()
    shard = next((run_dir / "checkpoints" / "step-000000015.shards").glob("*.distcp"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    resumed = torchrun(run_dir, *RUN, "train.resume=auto")
    assert resumed.manifest["resumes"][-1]["from_step"] == 10
    out = resumed.proc.stdout + resumed.proc.stderr
    assert "step-000000016.ckpt is sharded and its shards" in out
    assert "not the files it recorded" in out
    same_bits(fsdp, resumed)


def test_verify_says_identical(fsdp, tmp_path):
    verify_identical(fsdp.dir, tmp_path / "replay")


def test_diff_of_a_ddp_and_an_fsdp_run_compares_like_with_like(fsdp, tmp_path):
    ddp = torchrun(tmp_path / "ddp", *[o for o in RUN if not o.startswith("train.strategy")])
    out = run_tool("diff", ddp.dir, fsdp.dir, "--quiet", cwd=tmp_path)
    assert "train.strategy  ddp  fsdp" in out.stdout
    # the fingerprints digest whole parameters on both sides: either they agree step by step, or the
    # first step that differs is named
    assert "fingerprints: identical over 16 steps" in out.stdout or "first differs" in out.stdout


def test_the_shards_load_into_one_process_through_dcp(fsdp):
    """Resharding 2 ranks -> 1 through DCP: the last checkpoint's model shards, loaded into the whole
    model in one plain process, are the final weights bit for bit."""
    code = f"""
import torch, torch.distributed.checkpoint as dcp
weights = torch.load({str(fsdp.dir / "weights.pt")!r}, weights_only=True)
state = {{"model": {{k: torch.empty_like(v) for k, v in weights.items()}}}}
dcp.load(state, checkpoint_id={str(fsdp.dir / "checkpoints" / "step-000000016.shards")!r}, no_dist=True)
print(all(torch.equal(state["model"][k], v) for k, v in weights.items()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr


def test_evaluate_loads_the_whole_weights_of_an_fsdp_run(fsdp, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiment.evaluate", f"run={fsdp.dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["val_acc"] == fsdp.manifest["result"]["val_acc"]


def test_the_language_model_sharded_one_unit_per_block_trains_and_checkpoints(tmp_path):
    """TinyGPT declares ``fsdp_units()`` (its blocks): each block is its own FSDP2 unit, its shards
    are checkpointed and its whole weights written. (Rerunning to the same bits under fsdp is the
    quick example's test above; the LM under torchrun reruns identically in test_multinode.py.)"""
    lm = ["experiment=lm", "train.epochs=1", "data.train_chars=8000", "data.val_chars=1000"]
    run = torchrun(tmp_path / "a", *lm, "train.strategy=fsdp")
    assert "val_ppl" in run.manifest["result"] and run.manifest["weights_sha256"]
    assert list((run.dir / "checkpoints").glob("step-*.shards/.metadata"))
