"""``--help`` of the main job: config groups without their schemas, every documented key with its
meaning; and the console script that makes Hydra's shell completion work."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

from repro.launch.helptext import field_descriptions, is_schema

REPO = Path(__file__).resolve().parents[2]
ENTRY = "experiment.train"
SCRIPT = "experiment-train"


@dataclasses.dataclass
class Base:
    #: Base field, documented.
    a: int = 1
    b: int = 2  # a trailing comment documents nothing

    def method(self) -> None:
        #: inside a method: not a field
        c: int = 3  # noqa: F841


@dataclasses.dataclass
class Child(Base):
    #: Two lines of comment,
    #: joined into one: see :class:`Determinism` and ``auto``.
    c: int = 3
    # a plain comment is not a description
    d: int = 4
    #: Overrides nothing; defined in the child.
    e: str = "x"


def run_entry(
    *args: str, argv0: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess:
    cmd = argv0 or [sys.executable, "-m", ENTRY]
    proc = subprocess.run(
        [*cmd, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd + list(args))} failed: {proc.stderr.strip()[-2000:]}"
    )
    return proc


def section(text: str, title: str) -> list[str]:
    """The non-empty lines of ``== title ==`` up to the next section or the footer."""
    body = text.split(f"== {title} ==", 1)[1].split("\n== ", 1)[0].split("Powered by Hydra", 1)[0]
    return [line for line in body.splitlines()[2:] if line.strip()]


def test_help_lists_groups_without_schemas_and_what_each_key_means():
    out = run_entry("--help").stdout
    groups = dict(line.split(": ", 1) for line in section(out, "Configuration groups"))
    for group, options in groups.items():
        assert not [o for o in options.split(", ") if is_schema(o)], (
            f"--help lists a schema: {group}"
        )
        want = sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))
        assert options.split(", ") == want, f"--help lists {group}: {options}, conf has {want}"
    assert {"data", "model", "train", "repro"} <= set(groups), f"groups in --help: {sorted(groups)}"
    keys = section(out, "Keys")
    assert "train.epochs: Passes over the training data." in keys, keys[:5]
    from experiment.config import TrainConfig

    for name, text in field_descriptions(TrainConfig).items():
        assert f"train.{name}: {text}" in keys, f"--help lacks train.{name}"
    assert any(line.startswith("repro.seed: ") for line in keys), "--help lacks repro.seed"
    assert "repro:\n  seed:" in out, "--help lacks the config ($CONFIG)"


def test_descriptions_come_from_the_comment_above_each_field():
    assert field_descriptions(Child) == {
        "a": "Base field, documented.",
        "c": "Two lines of comment, joined into one: see Determinism and auto.",
        "e": "Overrides nothing; defined in the child.",
    }


def test_the_console_script_runs_the_main_job_and_completes_keys(tmp_path):
    pyproject = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+
    scripts = pyproject.split("[project.scripts]", 1)[-1].split("\n[", 1)[0]
    target = re.search(rf'(?m)^{re.escape(SCRIPT)} = "([^"]*)"', scripts)
    assert target and target.group(1) == f"{ENTRY}:main", f"[project.scripts] lacks {SCRIPT}"
    # What pip writes for a console script: __main__ is a file, not the entry module.
    module, func = target.group(1).split(":")
    script = tmp_path / SCRIPT
    script.write_text(f"import sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    line = f"{SCRIPT} train.ep"
    done = run_entry("-sc", "query=bash", argv0=[sys.executable, str(script)], COMP_LINE=line)
    assert "train.epochs=" in done.stdout.split(), f"completing {line!r} gave {done.stdout!r}"
    install = run_entry("-sc", "install=bash", argv0=[sys.executable, str(script)]).stdout
    assert install.rstrip().endswith(f"-F hydra_bash_completion {SCRIPT}"), install[-300:]


def test_field_descriptions_handle_classes_without_source():
    Made = dataclasses.make_dataclass("Made", [("x", int, dataclasses.field(default=1))])
    assert field_descriptions(Made) == {}
