"""Run directories are untrusted data: hostile and broken ones give one line, never a traceback or a write.

One real run (module fixture) is copied and altered per test. The table of bad inputs calls the
command in this process (fast, and an escaping exception fails the test); the tests that need a
real replay or a real process (planted modules, ``hydra:`` sections, git hooks, exit status 3)
start ``python -m repro``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import QUICK, REPO, clean_env, run_main, run_tool
from repro.tools.cli import main as repro_main

pytestmark = pytest.mark.slow
Build = Callable[[Path, Path], list[str]]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed run of 8 steps with checkpoints at steps 4 and 8."""
    folder = tmp_path_factory.mktemp("base")
    run = run_main(folder / "run", *QUICK, "train.epochs=1", "train.checkpoint_every=4")
    assert len(run.fingerprints()) == 8
    return run.dir


def repro(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_tool(*args, cwd=cwd)


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` (links not followed) with its mtime: a snapshot to compare."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            out[str(path.relative_to(root))] = path.lstat().st_mtime_ns
    return out


def copy_run(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest, symlinks=True)
    return dest


def edit_json(run: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((run / "run.json").read_text())
    change(manifest)
    (run / "run.json").write_text(json.dumps(manifest))


def with_manifest(change: Callable[[dict], object]) -> Build:
    def build(tmp: Path, base: Path) -> list[str]:
        run = copy_run(base, tmp / "run")
        edit_json(run, change)
        return ["verify", run]

    return build


def with_file(name: str, content: str | bytes, command: str = "verify") -> Build:
    def build(tmp: Path, base: Path) -> list[str]:
        run = copy_run(base, tmp / "run")
        path = run / name
        path.unlink()
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return [command, run] if command != "diff" else ["diff", base, run]

    return build


def with_config_tail(text: str, command: str = "verify") -> Build:
    def build(tmp: Path, base: Path) -> list[str]:
        run = copy_run(base, tmp / "run")
        with open(run / "config.yaml", "a") as f:
            f.write(text)
        return [command, run]

    return build


def replaced_by(kind: str, name: str = "run.json") -> Build:
    """``name`` in a copy of the run replaced by a symlink loop, a directory or a FIFO."""

    def build(tmp: Path, base: Path) -> list[str]:
        run = copy_run(base, tmp / "run")
        path = run / name
        path.unlink()
        if kind == "loop":
            path.symlink_to(path.name)
        elif kind == "dir":
            path.mkdir()
        else:
            os.mkfifo(path)
        return ["verify", run]

    return build


def plain(*args: str) -> Build:
    return lambda tmp, base: [
        a.replace("{base}", str(base)).replace("{tmp}", str(tmp)) for a in args
    ]


def loop_dir(tmp: Path, base: Path) -> list[str]:
    (tmp / "loop").symlink_to("loop")
    return ["verify", tmp / "loop"]


def a_file(tmp: Path, base: Path) -> list[str]:
    (tmp / "file").write_text("x")
    return ["verify", tmp / "file"]


def empty_sweep(tmp: Path, base: Path) -> list[str]:
    (tmp / "sweep" / "job").mkdir(parents=True)
    return ["report", tmp / "sweep", "--no-plot"]


def bad_checkpoint(tmp: Path, base: Path) -> list[str]:
    run = copy_run(base, tmp / "run")
    (run / "checkpoints" / "step-000000004.ckpt").write_bytes(b"garbage")
    return ["verify", run, "--spot", "1"]


def no_checkpoints(tmp: Path, base: Path) -> list[str]:
    run = copy_run(base, tmp / "run")
    shutil.rmtree(run / "checkpoints")
    return ["verify", run, "--spot", "1"]


def out_exists(tmp: Path, base: Path) -> list[str]:
    (tmp / "out").mkdir()
    return ["verify", base, "--out", tmp / "out"]


def out_under_file(tmp: Path, base: Path) -> list[str]:
    (tmp / "f").write_text("x")
    return ["verify", base, "--out", tmp / "f" / "replay"]


def cfg_value(old: str, new: str, command: str = "env") -> Build:
    def build(tmp: Path, base: Path) -> list[str]:
        run = copy_run(base, tmp / "run")
        path = run / "config.yaml"
        path.write_text(path.read_text().replace(old, new, 1))
        return [command, run]

    return build


def set_env(key: str, value: object) -> Callable[[dict], None]:
    return lambda m: m["environment"]["env"].__setitem__(key, value)


ROWS = '{"step":1,"loss":"a"}\n'
CASES: dict[str, tuple[Build, str]] = {
    # the run directory itself
    "missing": (plain("verify", "{tmp}/nope"), "no such directory"),
    "not-ascii-missing": (plain("verify", "{tmp}/rün ü/nope"), "no such directory"),
    "not-utf8-missing": (plain("verify", "{tmp}/bad\udcffname"), "no such directory"),
    "a-file": (a_file, "not a directory"),
    "dir-symlink-loop": (loop_dir, "symlink loop"),
    "empty-dir": (plain("verify", "{tmp}"), "not a run directory"),
    # run.json
    "run.json-loop": (replaced_by("loop"), "symlink loop"),
    "run.json-dir": (replaced_by("dir"), "not a regular file"),
    "run.json-fifo": (replaced_by("fifo"), "not a regular file"),
    "run.json-garbage": (with_file("run.json", "{not json"), "run.json: not valid JSON"),
    "run.json-list": (
        with_file("run.json", "[1, 2]"),
        "run.json: holds a JSON list; expected an object",
    ),
    "run.json-string": (with_file("run.json", '"completed"'), "holds a JSON str"),
    "run.json-latin1": (with_file("run.json", b'{"status": "\xe9"}'), "run.json: not UTF-8"),
    "run.json-deep": (with_file("run.json", "[" * 100000), "run.json: "),
    "status-number": (
        with_manifest(lambda m: m.update(status=5)),
        "status is 5; expected a string",
    ),
    "status-running": (with_manifest(lambda m: m.update(status="running")), "still running"),
    "status-failed": (
        with_manifest(lambda m: m.update(status="failed", error="x" * 5000)),
        "the run failed",
    ),
    "entry-list": (
        with_manifest(lambda m: m.update(entry=["x"])),
        "entry is ['x']; expected an object",
    ),
    "entry-module-shell": (
        with_manifest(lambda m: m["entry"].update(module="os; rm -rf ~")),
        "entry.module",
    ),
    "entry-module-other": (
        with_manifest(lambda m: m["entry"].update(module="json.tool")),
        "pass --entry json.tool",
    ),
    "env-list": (
        with_manifest(lambda m: m["environment"].update(env=["A"])),
        "environment.env is ['A']",
    ),
    "env-value-int": (
        with_manifest(set_env("PYTHONHASHSEED", 0)),
        "environment.env.PYTHONHASHSEED is 0",
    ),
    "env-value-nul": (with_manifest(set_env("MKL_CBWR", "A\0B")), "environment.env.MKL_CBWR"),
    "env-pin-threads": (
        with_manifest(set_env("OMP_NUM_THREADS", "99999999")),
        "OMP_NUM_THREADS is '99999999'",
    ),
    "env-pin-odd": (with_manifest(set_env("MKL_CBWR", "$(touch pwn)")), "environment.env.MKL_CBWR"),
    "world-size-text": (
        with_manifest(lambda m: m["distributed"].update(world_size="2")),
        "distributed.world_size",
    ),
    "world-size-zero": (
        with_manifest(lambda m: m["distributed"].update(world_size=0)),
        "int in [1, 65536]",
    ),
    "threads-huge": (
        with_manifest(lambda m: m["environment"]["cpu"].update(num_threads=10**9)),
        "num_threads",
    ),
    "settings-text": (
        with_manifest(lambda m: m["determinism"]["settings"].update(x="on")),
        "settings.x",
    ),
    # config.yaml
    "config-garbage": (
        with_file("config.yaml", "a: [1\nb: }"),
        "config.yaml: not valid YAML at line",
    ),
    "config-list": (with_file("config.yaml", "- 1\n- 2\n"), "config.yaml: holds list"),
    "config-scalar": (with_file("config.yaml", "just text\n"), "config.yaml: "),
    "config-python-tag": (
        with_file("config.yaml", "x: !!python/object/apply:os.system [touch pwn]\n"),
        "config.yaml: not valid YAML",
    ),
    "config-alias-loop": (with_file("config.yaml", "a: &x [*x]\n"), "config.yaml: "),
    "config-latin1": (with_file("config.yaml", b"a: \xe9\n"), "config.yaml: not UTF-8"),
    "config-interpolation": (
        with_config_tail("leak: ${oc.env:HOME}\n"),
        "leak is '${oc.env:HOME}', an interp",
    ),
    "config-failing-interp": (
        with_config_tail("x:\n  y: ${nope.nothing}\n"),
        "x.y is '${nope.nothing}'",
    ),
    "config-target": (
        with_config_tail("evil:\n  _target_: os.system\n  command: touch pwn\n"),
        "evil._target_='os.system' is refused",
    ),
    "config-target-in-list": (
        with_config_tail("cb:\n  - _target_: builtins.exec\n"),
        "cb[0]._target_",
    ),
    "config-defaults": (
        with_config_tail("defaults:\n  - override hydra/launcher: basic\n"),
        "'defaults' list",
    ),
    "config-threads-text": (
        cfg_value("threads: null", "threads: many", "verify"),
        "repro.threads is 'many'",
    ),
    "config-threads-zero": (cfg_value("threads: null", "threads: 0", "env"), "repro.threads is 0"),
    # fingerprints.jsonl
    "fp-garbage": (
        with_file("fingerprints.jsonl", ROWS + "garbage\n"),
        "fingerprints.jsonl: line 2 is not JSON",
    ),
    "fp-no-step": (
        with_file("fingerprints.jsonl", ROWS + '{"loss":"b"}\n'),
        "line 2 has step None",
    ),
    "fp-step-text": (with_file("fingerprints.jsonl", '{"step":"1"}\n'), "line 1 has step '1'"),
    "fp-list-row": (
        with_file("fingerprints.jsonl", "[1]\n"),
        "line 1 holds [1]; expected an object",
    ),
    "fp-repeated": (with_file("fingerprints.jsonl", ROWS + ROWS), "line 2 has step 1 after step 1"),
    "fp-empty": (with_file("fingerprints.jsonl", ""), "the run recorded no step"),
    "fp-loop": (replaced_by("loop", "fingerprints.jsonl"), "fingerprints.jsonl: a symlink loop"),
    "fp-garbage-diff": (
        with_file("fingerprints.jsonl", "\x00\x01\n", "diff"),
        "line 1 is not JSON",
    ),
    # checkpoints for --spot
    "spot-bad-checkpoint": (bad_checkpoint, "step-000000004.ckpt: refused"),
    "spot-no-checkpoint": (no_checkpoints, "the run kept no checkpoint"),
    # arguments
    "steps-zero": (plain("verify", "{base}", "--steps", "0"), "--steps 0: expected an int >= 1"),
    "steps-text": (plain("verify", "{base}", "--steps", "abc"), "invalid int value: 'abc'"),
    "steps-and-spot": (
        plain("verify", "{base}", "--steps", "1", "--spot", "1"),
        "not allowed with argument",
    ),
    "segment-zero": (plain("verify", "{base}", "--spot", "1", "--segment", "0"), "--segment 0"),
    "out-exists": (out_exists, "already exists"),
    "out-under-file": (out_under_file, "cannot be created"),
    "out-interpolation": (
        plain("verify", "{base}", "--out", "{tmp}/${oc.env:HOME}"),
        "may not contain",
    ),
    "entry-not-a-name": (
        plain("verify", "{base}", "--entry", "not a module!"),
        "not a module name",
    ),
    "entry-missing": (
        plain("verify", "{base}", "--entry", "no_such_module_xyz"),
        "cannot be imported",
    ),
    "entry-not-an-entry": (plain("verify", "{base}", "--entry", "json"), "no function decorated"),
    "diff-same-run": (plain("diff", "{base}", "{base}"), "are the same run"),
    "diff-deep-and-no-localise": (
        plain("diff", "{base}", "{base}", "--deep", "--no-localise"),
        "not allowed",
    ),
    "diff-missing": (plain("diff", "{base}", "{tmp}/nope"), "no such directory"),
    "no-command": (plain(), "the following arguments are required"),
    "unknown-command": (plain("explode"), "invalid choice"),
    "env-missing": (plain("env", "{tmp}/nope"), "no such directory"),
    "env-run.json-list": (with_file("run.json", "[]", "env"), "holds a JSON list"),
    "report-missing": (plain("report", "{tmp}/nope", "--no-plot"), "no such directory"),
    "report-file": (plain("report", "{base}/run.json", "--no-plot"), "no such directory"),
    "report-not-a-sweep": (empty_sweep, "not a sweep directory"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_writes_nothing(base, tmp_path, monkeypatch, capsys, case):
    build, expected = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [str(a) for a in build(tmp_path, base)]
    before_tmp, before_base = tree(tmp_path), tree(base)
    try:
        code = repro_main(args)
    except SystemExit as exc:  # argparse's way out
        code = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (args, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert expected in lines[0], (expected, lines[0])
    assert len(lines[0]) < 400 and "Traceback" not in err and out == ""
    assert (
        tree(tmp_path) == before_tmp and tree(base) == before_base
    )  # nothing written, nothing touched
    assert not (work / "pwn").exists()


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


def test_a_real_process_prints_one_line_for_a_broken_record(base, tmp_path):
    """The same contract outside pytest's process: exit status, one line, no traceback."""
    run = copy_run(base, tmp_path / "run")
    (run / "config.yaml").write_text("- not\n- a mapping\n")
    out = repro("verify", run, cwd=tmp_path)
    assert (
        out.returncode == 2
        and out.stderr.strip()
        == f"error: {run / 'config.yaml'}: holds list; expected a mapping of config keys"
    ), out.stderr


# ------------------------------------------------------------------ hostile runs, real processes

PLANT = "from pathlib import Path\nPath({marker!r}).touch()\n"


def test_a_module_planted_next_to_the_run_is_not_imported(base, tmp_path):
    marker = tmp_path / "imported"
    run = copy_run(base, tmp_path / "bundle" / "run")
    edit_json(run, lambda m: m["entry"].update(module="evil_entry"))
    for folder in (run, run.parent):
        (folder / "evil_entry.py").write_text(PLANT.format(marker=str(marker)))
    refused = repro("verify", run, "--steps", "1", cwd=run.parent)
    assert refused.returncode == 2, refused.stderr
    assert (
        "made by entry module 'evil_entry', which is not in this project's own packages: "
        "experiment" in refused.stderr
    )
    assert "pass --entry evil_entry" in refused.stderr
    typed = repro("verify", run, "--steps", "1", "--entry", "evil_entry", cwd=run.parent)
    assert (
        typed.returncode == 2 and "entry module 'evil_entry' cannot be imported" in typed.stderr
    ), typed.stderr
    assert not marker.exists()
    assert not (run.parent / "outputs").exists()


def test_a_package_shadowing_the_project_in_the_cwd_is_not_imported(base, tmp_path):
    """The old replay ran ``python -m experiment.train`` from the cwd: a planted package there won."""
    marker = tmp_path / "imported"
    work = tmp_path / "work"
    (work / "experiment").mkdir(parents=True)
    (work / "experiment" / "__init__.py").write_text(PLANT.format(marker=str(marker)))
    (work / "experiment" / "train.py").write_text(PLANT.format(marker=str(marker)))
    out = repro("verify", base, "--steps", "1", "--out", tmp_path / "replay", "--quiet", cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IDENTICAL"
    assert not marker.exists()


def test_a_hydra_section_in_config_yaml_does_nothing(base, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    elsewhere = tmp_path / "elsewhere"
    run = copy_run(base, tmp_path / "hostile rün, it's")
    with open(run / "config.yaml", "a") as f:
        f.write(
            f"hydra:\n  callbacks:\n    wipe:\n      _target_: builtins.open\n      file: {victim}\n"
            f"      mode: w\n  output_subdir: {elsewhere / 'sub'}\n  run:\n    dir: {elsewhere / 'run'}\n"
            f"  searchpath: [file://{tmp_path}]\n"
        )
    out_dir = tmp_path / "répl'ay, 1"
    before = tree(tmp_path)
    out = repro("verify", run, "--steps", "2", "--out", out_dir, "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IDENTICAL"
    assert victim.read_text() == "keep me" and not elsewhere.exists()
    replayed = (out_dir / ".replay-config" / "config.yaml").read_text()
    assert "hydra" not in replayed and "builtins" not in replayed
    assert (out_dir / "run.json").exists() and (out_dir / ".hydra").is_dir()
    written = {p for p in set(tree(tmp_path)) - set(before) if not p.startswith(out_dir.name)}
    assert written == set(), written  # nothing outside the replay's own directory


def test_git_is_never_run_in_a_directory_the_record_names(base, tmp_path):
    trap = tmp_path / "trap"
    marker = tmp_path / "fsmonitor-ran"
    subprocess.run(["git", "init", "-q", str(trap)], check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=trap,
        check=True,
    )  # with a commit, the state is read past `git rev-parse HEAD`
    with open(trap / ".git" / "config", "a") as f:
        f.write(f'[core]\n\tfsmonitor = "touch {marker}; false"\n')
    (trap / "file").write_text("x")
    # The trap works: a plain git status in that directory runs the command.
    subprocess.run(["git", "status", "--porcelain"], cwd=trap, capture_output=True, check=False)
    if not marker.exists():
        pytest.skip("this git does not run core.fsmonitor hooks")
    marker.unlink()
    run = copy_run(base, tmp_path / "run")
    edit_json(run, lambda m: m["environment"].update(code_dir=str(trap)))
    shutil.copytree(
        trap / ".git", run / ".git"
    )  # and the run directory itself is a trapped repository
    out = repro("env", run, "--json", cwd=run)
    assert out.returncode in (0, 1), out.stderr
    assert not marker.exists()
    from repro.core.environment import git_state

    git_state(trap)  # hardened even when pointed at the trap itself
    assert not marker.exists()


def test_env_names_the_projects_code_directory(tmp_path):
    """Not the console script's folder (.venv/bin), not the cwd: the project's root."""
    script = Path(sys.executable).with_name("repro")
    if not script.exists():
        pytest.skip("no repro console script next to this interpreter")
    out = subprocess.run(
        [str(script), "env", "--json"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["code_dir"] == str(REPO)


# ------------------------------------------------------------------ a replay that never started


def mangle_config_hash(checkpoint: Path) -> None:
    """Keep the checkpoint's envelope intact but say it was written under another config."""
    raw = checkpoint.read_bytes()
    magic_end = raw.index(b"\n") + 1
    header_end = raw.index(b"\n", magic_end)
    header = json.loads(raw[magic_end:header_end])
    header["config_sha256"] = "0" * 64
    checkpoint.write_bytes(raw[:magic_end] + json.dumps(header).encode() + raw[header_end:])


def test_a_replay_that_cannot_start_is_an_error_not_a_verdict(base, tmp_path):
    run = copy_run(base, tmp_path / "run")
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("lr: 0.02", "lr: -1.0", 1))
    out = repro("verify", run, "--out", tmp_path / "replay", "--quiet", cwd=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot replay: the replay of "), (
        out.stderr
    )
    assert "before recording a step: error: optimizer.lr=-1.0 is not allowed" in lines[0]
    assert "DIVERGED" not in out.stdout and not (tmp_path / "replay").exists()


def test_a_refused_checkpoint_under_spot_is_an_error_not_a_verdict(base, tmp_path):
    run = copy_run(base, tmp_path / "run")
    mangle_config_hash(run / "checkpoints" / "step-000000004.ckpt")
    out = repro("verify", run, "--spot", "1", "--out", tmp_path / "spot", "--quiet", cwd=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    assert (
        out.stderr.startswith("error: cannot replay: the replay of ")
        and "from step-000000004.ckpt" in out.stderr
    )
    assert len(out.stderr.strip().splitlines()) == 1 and "DIVERGED" not in out.stdout


# ------------------------------------------------------------------ diff stops at the config


def test_diff_stops_at_a_result_changing_config_difference(base, tmp_path, monkeypatch, capsys):
    other = copy_run(base, tmp_path / "seed")
    cfg = other / "config.yaml"
    cfg.write_text(
        cfg.read_text()
        .replace("seed: 1234", "seed: 99", 1)
        .replace("log_every: 10", "log_every: 5")
    )
    rows = (other / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    rows[0] = rows[0].replace('"params":"', '"params":"f')
    (other / "fingerprints.jsonl").write_text("".join(rows))
    monkeypatch.chdir(tmp_path)
    assert repro_main(["diff", str(base), str(other)]) == 1
    text = capsys.readouterr().out
    assert "fingerprints part at step 1: params" in text
    # train.log_every differs too, but it is not among the project's keys that never change the bits
    assert (
        "the configs differ in repro.seed, train.log_every; that explains the divergence (use --deep "
        "to localise anyway)" in text
    )
    assert "re-ran" not in text and not any(
        p.name.startswith("outputs") for p in tmp_path.iterdir()
    )
    assert repro_main(["diff", str(base), str(other), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (
        data["explained_by"] == ["repro.seed", "train.log_every"] and data["localisation"] is None
    )


def test_only_result_changing_keys_explain_a_divergence():
    from repro.tools.diff import RESULT_NEUTRAL_KEYS, explaining_keys

    rows = [("repro.num_workers", 0, 2), ("train.keep_checkpoints", 3, 4), ("train.lr", 0.02, 0.03)]
    assert explaining_keys(rows, (*RESULT_NEUTRAL_KEYS, "train.keep_checkpoints")) == ["train.lr"]
    assert explaining_keys(rows[:2], (*RESULT_NEUTRAL_KEYS, "train.keep_checkpoints")) == []
    assert explaining_keys([("train.lr.x", 1, 2)], ("train.lr",)) == []


def test_a_diff_whose_re_run_fails_is_an_error_not_a_verdict(base, tmp_path):
    other = copy_run(base, tmp_path / "other")
    rows = (other / "fingerprints.jsonl").read_text().splitlines(keepends=True)
    rows[5] = rows[5].replace('"params":"', '"params":"f')
    (other / "fingerprints.jsonl").write_text("".join(rows))
    mangle_config_hash(other / "checkpoints" / "step-000000004.ckpt")
    out = repro("diff", other, base, "--quiet", cwd=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: cannot replay: re-running step 6 of run A"
    ), out.stderr
    assert "captured nothing (exit status 2): error: " in lines[0] and out.stdout == ""


# ------------------------------------------------------------------ the sanitised config, in this process


def test_instantiation_keys_are_allowed_only_as_the_project_has_them(tmp_path):
    from repro.base.errors import RunDirectoryError
    from repro.tools.replay import EntrySettings, sanitise_config
    from repro.tools.runs import Run

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(
        "model:\n  _target_: torch.nn.Linear\n  in_features: 2\ntrain:\n  resume: null\n"
    )
    entry = EntrySettings("proj.train", conf, "config", "train.resume", ())

    def sanitised(config: dict) -> tuple[dict, list[str]]:
        return sanitise_config(Run(tmp_path, {}, config), entry)

    same = {
        "model": {"_target_": "torch.nn.Linear", "in_features": 3},
        "train": {"resume": "/victim/run"},
        "hydra": {"callbacks": {"x": {"_target_": "builtins.open"}}},
    }
    config, dropped = sanitised(same)
    assert dropped == ["hydra"] and "hydra" not in config
    assert config["model"]["_target_"] == "torch.nn.Linear"
    assert (
        config["train"]["resume"] is None
    )  # a replay never continues (and writes into) another run
    with pytest.raises(
        RunDirectoryError, match=r"model\._target_='os\.system' is refused.*has 'torch\.nn\.Linear'"
    ):
        sanitised({"model": {"_target_": "os.system"}})
    with pytest.raises(
        RunDirectoryError, match=r"model\._partial_=True is refused.*has no such key"
    ):
        sanitised({"model": {"_target_": "torch.nn.Linear", "_partial_": True}})
    no_conf = EntrySettings("proj.train", None, "config", None, ())
    with pytest.raises(
        RunDirectoryError, match="_target_"
    ):  # nothing to compare with: nothing allowed
        sanitise_config(Run(tmp_path, {}, same), no_conf)


def test_a_pyproject_planted_in_the_run_directory_is_not_the_project(base, tmp_path):
    from repro.base.project import find_project

    run = copy_run(base, tmp_path / "run")
    (run / "pyproject.toml").write_text('[tool.repro]\nentry = "evil_entry"\n')
    assert find_project(run).entry == "evil_entry"  # a directory the user chose is taken as is
    project = find_project(run, not_inside=(run,))
    assert project is not None and project.root == REPO and project.entry == "experiment.train"
