"""The `repro` command on real runs of the kit's fixture experiment: verify, diff, env, and bad arguments."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import FIXTURE, run_fixture, run_on_terminal, run_tool

pytestmark = pytest.mark.slow
#: The fixture's config: 3 epochs of 12 steps, a checkpoint every 5 steps, 20 kept.
#: Kit fault injection: noise from OS entropy on one weight after step 12 (never in the config).
PERTURB = {"REPRO_FAULT_PERTURB": "3.weight@12"}


def repro(*args, cwd, env=None):
    """The tools on fixture runs: replays run the fixture's entry module, named as a user would."""
    entry = ["--entry", FIXTURE] if args and args[0] in ("verify", "diff") else []
    return run_tool(*args, *entry, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def runs(default_fixture_run, tmp_path_factory):
    """The fixture's default run (shared with the other modules' tests, never written into) and the
    same config with noise on one weight after step 12."""
    noisy = run_fixture(tmp_path_factory.mktemp("runs") / "noisy", env=PERTURB)
    return default_fixture_run, noisy


def test_verify_of_a_normal_run_is_identical(runs, tmp_path):
    """The tool and its replay, each in a fresh interpreter."""
    clean, _ = runs
    replay = tmp_path / "replay"
    out = repro("verify", clean.dir, "--out", replay, "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IDENTICAL"
    assert "fingerprints compared: 36 steps" in out.stdout
    assert (tmp_path / "replay" / "run.json").exists()


#: What a live bar writes; none of it may reach a file or a pipe.
BAR_MARKS = ("\r", "%|", "step/s", "\u2588", "\x1b[")


def test_verify_json_and_steps(runs, tmp_path):
    """With progress on (no --quiet) and stderr not a terminal: stdout is the JSON alone, stderr has
    the phase line and the replay's own lines, and no bar."""
    clean, _ = runs
    before = {p.name: p.stat().st_mtime_ns for p in clean.dir.iterdir()}
    out = repro(
        "verify", clean.dir, "--steps", "4", "--json", "--out", tmp_path / "r", cwd=tmp_path
    )
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["verdict"] == "IDENTICAL" and data["steps_compared"] == 4
    assert f"replaying steps 1-4 of {clean.dir} into {tmp_path / 'r'}" in out.stderr.splitlines()
    assert "    | " in out.stderr  # the replay's own output, echoed
    assert not [mark for mark in BAR_MARKS if mark in out.stderr], out.stderr
    assert {
        p.name: p.stat().st_mtime_ns for p in clean.dir.iterdir()
    } == before  # the original is untouched


def test_verify_spot_checks_segments_from_checkpoints(runs, tmp_path):
    clean, _ = runs
    out = repro(
        "verify",
        clean.dir,
        "--spot",
        "2",
        "--json",
        "--out",
        tmp_path / "spot",
        cwd=tmp_path,
    )
    data = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert data["verdict"] == "IDENTICAL" and len(data["segments"]) == 2
    phases = [line for line in out.stderr.splitlines() if line.startswith("segment ")]
    assert [p.split(":")[0] for p in phases] == ["segment 1/2", "segment 2/2"], out.stderr
    first = data["segments"][0]
    assert (
        f"replaying steps {first['from_step'] + 1}-{first['to_step']} of {clean.dir}" in phases[0]
    )
    assert not [mark for mark in BAR_MARKS if mark in out.stderr]
    assert all(s["identical"] for s in data["segments"]) and data["steps_compared"] >= 2


def test_verify_on_a_terminal_draws_a_bar_and_keeps_stdout_json(runs, tmp_path):
    """stderr on a pseudo-terminal: a bar over the replayed steps; stdout (a pipe) is the JSON alone."""
    clean, _ = runs
    cmd = [sys.executable, "-m", "repro", "verify", str(clean.dir), "--steps", "6", "--json"]
    code, screen, stdout = run_on_terminal(
        [*cmd, "--out", str(tmp_path / "r"), "--entry", FIXTURE], tmp_path
    )
    assert code == 0
    assert f"replaying steps 1-6 of {clean.dir}" in screen
    assert "replay 1-6:" in screen and "%|" in screen and "6/6 [" in screen, screen
    data = json.loads(stdout)
    assert data["verdict"] == "IDENTICAL" and data["steps_compared"] == 6


def test_verify_finds_the_step_where_a_run_diverges(runs, tmp_path):
    _, noisy = runs
    out = repro("verify", noisy.dir, "--out", tmp_path / "r", "--quiet", cwd=tmp_path)
    assert out.returncode == 1
    assert "DIVERGED at step 12: params differs" in out.stdout


def test_diff_names_the_perturbed_parameter_and_no_earlier_tensor(
    runs, tmp_path, monkeypatch, capsys
):
    clean, noisy = runs
    # The configs are the same (the fault came from the environment). Without the fault, both re-runs agree:
    plain = repro("diff", clean.dir, noisy.dir, "--quiet", cwd=tmp_path)
    assert (
        plain.returncode == 1
        and "every captured tensor is identical when both re-run here" in plain.stdout
    )
    # With it set for the tool (a nondeterministic kernel in this environment), the re-runs localise it.
    out = repro("diff", clean.dir, noisy.dir, "--json", cwd=tmp_path, env=PERTURB)
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)  # progress on: stdout is still the JSON alone
    phases = [line for line in out.stderr.splitlines() if line.startswith("capturing ")]
    assert phases == [
        f"capturing step 12 of run {x} ({d}), replaying from checkpoint step-000000010.ckpt"
        for x, d in (("A", clean.dir), ("B", noisy.dir))
    ], out.stderr
    assert not [mark for mark in BAR_MARKS if mark in out.stderr]
    assert data["config_diff"] == []  # the fault came from the environment, not the config
    assert data["divergence"]["step"] == 12 and data["divergence"]["quantity"] == "params"
    loc = data["localisation"]
    assert loc["replayed_from"] == {
        "a": "checkpoint step-000000010.ckpt",
        "b": "checkpoint step-000000010.ckpt",
    }
    assert loc["first"]["phase"] == "update" and loc["first"]["name"] == "3.weight"
    assert loc["differing"] == ["update:3.weight"]  # nothing before it, nothing else
    assert 0 < loc["first"]["max_abs"] < 0.1
    assert list(tmp_path.iterdir()) == []  # diff's re-runs left nothing behind
    # The same report as text (rendered in this process from the report the tool just gave: the
    # re-runs are the slow part, and the JSON above holds everything the text says).
    from repro.tools import cli
    from repro.tools.diff import DiffReport

    report = DiffReport(
        run_a=data["run_a"],
        run_b=data["run_b"],
        environment_diff=[(e["key"], e["a"], e["b"]) for e in data["environment_diff"]],
        divergence=data["divergence"],
        steps_compared=data["steps_compared"],
        localisation=loc,
    )
    monkeypatch.setattr("repro.tools.diff.diff_runs", lambda *a, **k: report)
    assert cli.main(["diff", str(clean.dir), str(noisy.dir), "--quiet"]) == 1
    text = capsys.readouterr().out
    assert "fingerprints part at step 12: params" in text
    assert "re-ran step 12 of A from checkpoint step-000000010.ckpt" in text
    assert "first tensor that differs: 3.weight (parameter after the update)" in text
    assert "later tensors differ" not in text


def crafted(src, dest, *, config=None, environment=None, manifest=None):
    shutil.copytree(src.dir, dest)
    if config:
        text = (dest / "config.yaml").read_text()
        for old, new in config.items():
            text = text.replace(old, new)
        (dest / "config.yaml").write_text(text)
    m = json.loads((dest / "run.json").read_text())
    for key, value in (environment or {}).items():
        section, leaf = key.split(".")
        m["environment"][section][leaf] = value
    m.update(manifest or {})
    (dest / "run.json").write_text(json.dumps(m))
    return dest


def test_config_and_environment_diffs_on_crafted_runs(runs, tmp_path):
    clean, _ = runs
    other = crafted(
        clean,
        tmp_path / "other",
        config={"lr: 0.2": "lr: 0.3"},
        environment={"torch.version": "9.9.9", "cpu.aten_capability": "CRAFTED"},
    )
    out = repro("diff", clean.dir, other, "--no-localise", "--json", cwd=tmp_path)
    data = json.loads(out.stdout)
    assert out.returncode == 1
    assert [(r["key"], r["a"], r["b"]) for r in data["config_diff"]] == [("train.lr", 0.2, 0.3)]
    env_keys = {r["key"] for r in data["environment_diff"]}
    assert {"torch.version", "cpu.aten_capability"} <= env_keys
    assert data["divergence"] is None
    env = repro("env", other, "--json", cwd=tmp_path)
    diff = {r["key"]: (r["recorded"], r["now"]) for r in json.loads(env.stdout)["differences"]}
    assert env.returncode == 1 and diff["torch.version"][0] == "9.9.9"
    plain = repro("env", cwd=tmp_path)
    assert plain.returncode == 0 and "torch.version" in plain.stdout


@pytest.mark.parametrize("case", ["missing", "not_a_run", "running", "failed", "other_experiment"])
def test_bad_arguments_give_one_line_errors_and_write_nothing(runs, tmp_path, case):
    clean, _ = runs
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / case
    if case == "not_a_run":
        target.mkdir()
    elif case in ("running", "failed"):
        crafted(
            clean, target, manifest={"status": case, "error": "boom" if case == "failed" else None}
        )
    elif case == "other_experiment":
        crafted(clean, target, manifest={"entry": {"module": "someone_else.train"}})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    commands = [("verify", target, "--out", work / "replay"), ("diff", clean.dir, target)]
    for args in commands if case != "other_experiment" else commands[1:]:
        out = repro(*args, cwd=work)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
