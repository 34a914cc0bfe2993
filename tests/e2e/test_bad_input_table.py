"""Bad input, as a table: each case is a real command in a fresh interpreter, in a sandbox folder.

Every case asserts the same contract, whatever the kind of bad input (a secret on the command line, a
path that leaves the run, a damaged record, an override a resume would ignore, a command line that does
not parse):

* the exit status the case names (2: bad input; 3: a run that cannot be replayed; 0 where the input is
  accepted and only its secret or path handling is checked);
* on failure, exactly one line on stderr, ``error: ...``, with the words the case names, no traceback;
* no secret of the case in any file under the sandbox (run and sweep directories, Hydra's files, logs),
  nor on stdout or stderr;
* nothing written outside the places the case allows (by default: nothing new at all).

The sandbox is ``tmp_path``: the command runs in ``tmp_path / "work"``; ``tmp_path / "outside"`` is a
folder no case may write into. A case's ``setup`` prepares files (a copy of a real run, then damaged)
before the snapshot that "nothing written" compares with.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import QUICK, run_main, run_module

pytestmark = pytest.mark.slow

#: A password and a token as a user would type them; neither may reach any file or stream.
PASSWORD = "Pw-s3cr3t-4242"
TOKEN = "tok-5ca1ab1e-7777"


@dataclass
class Case:
    """One bad input. ``argv`` follows ``python``; ``{work}``, ``{run}`` (``work/run``), ``{base}`` (a
    copy of a completed run, made by ``setup=copy_base``) and ``{outside}`` are filled in."""

    id: str
    argv: list[str]
    code: int = 2
    #: Words the one stderr line must hold (the key, the value, what to do).
    says: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    #: Folders (relative to work) where new files are allowed; nothing else may appear.
    writes_in: tuple[str, ...] = ()
    setup: Callable[[Path, Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def train(*overrides: str) -> list[str]:
    return ["-m", "experiment.train", *overrides]


def tool(*args: str) -> list[str]:
    return ["-m", "repro", *args]


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed quick run (4 steps, checkpoints at 2 and 4), copied by cases that damage it."""
    run = run_main(
        tmp_path_factory.mktemp("table") / "run",
        *QUICK,
        "train.max_steps=4",
        "train.checkpoint_every=2",
    )
    return run.dir


def copy_base(completed: Path, work: Path) -> None:
    shutil.copytree(completed, work / "base", symlinks=True)


# The cases, by kind. Each list is one kind of the table; add cases to the list of their kind.

#: Values the schema refuses: the baseline the other kinds build on.
VALUE_CASES = [
    Case(
        "a model width of the wrong type", train("model.channels1=abc"), says=("model.channels1",)
    ),
    Case("a seed out of range", train("repro.seed=-1"), says=("repro.seed", "-1")),
]

#: A tracking server that refuses at once: its client gives up without retrying.
NO_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def fixture(*overrides: str) -> list[str]:
    """The kit's fixture experiment: its schema has a secret key (``service.api_key``) and a URL."""
    return ["-m", "repro_fixture.train", *overrides]


#: Secrets: by key and by URL userinfo, in any spelling Hydra writes (sweeps escape ``:`` as ``\\:``).
SECRET_CASES: list[Case] = [
    Case(
        "a URL password in a sweep's logger value (Hydra escapes ':')",
        train(
            "-m",
            "hydra.sweep.dir={work}/multirun",
            *QUICK,
            "train.max_steps=2",
            "logger=mlflow",
            f"logger.mlflow.run_name=https://user:{PASSWORD}@host/x",
        ),
        code=0,
        secrets=(PASSWORD,),
        writes_in=("multirun",),
    ),
    Case(
        "a secret key and a URL password in a sweep",
        fixture(
            "-m",
            "hydra.sweep.dir={work}/multirun",
            "train.max_steps=2",
            f"service.api_key={TOKEN}",
            f"service.url=postgres://user:{PASSWORD}@db/x",
        ),
        code=0,
        secrets=(PASSWORD, TOKEN),
        writes_in=("multirun",),
    ),
    Case(
        "a secret key's value in a single run, after other overrides",
        fixture(
            "hydra.run.dir={run}", "data.size=96", "train.max_steps=2", f"service.api_key={TOKEN}"
        ),
        code=0,
        secrets=(TOKEN,),
        writes_in=("run",),
    ),
    Case(
        "an unreachable tracking server's URL with a password, quoted by its error",
        train(
            "hydra.run.dir={run}",
            *QUICK,
            "train.max_steps=2",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri=http://user:{PASSWORD}@127.0.0.1:9/",
        ),
        says=("logger=mlflow", "127.0.0.1"),
        secrets=(PASSWORD,),
        writes_in=("run",),
        env=NO_RETRIES,
    ),
    Case(
        "a logger run name holding a token, quoted",
        train(
            "hydra.run.dir={run}",
            *QUICK,
            "train.max_steps=2",
            "logger=mlflow",
            f"logger.mlflow.run_name='api_key={TOKEN}'",
        ),
        code=0,
        secrets=(TOKEN,),
        writes_in=("run",),
    ),
]


def sweep_with_linked_report(completed: Path, work: Path) -> None:
    """A sweep directory whose ``report`` folder is a link to the folder no case may write into."""
    shutil.copytree(completed, work / "sweep" / "0", symlinks=True)
    (work / "sweep" / "report").symlink_to(work.parent / "outside", target_is_directory=True)


#: Paths from the config that would leave the run directory; tools that would write through a link.
PATH_CASES: list[Case] = [
    Case(
        "a CSV logger path that leaves the run",
        train("hydra.run.dir={run}", *QUICK, "logger=csv", "logger.csv.path=../escape.csv"),
        says=("logger.csv.path", "../escape.csv", "inside the run directory"),
    ),
    Case(
        "an absolute CSV logger path",
        train("hydra.run.dir={run}", *QUICK, "logger=csv", "logger.csv.path={outside}/m.csv"),
        says=("logger.csv.path", "inside the run directory"),
    ),
    Case(
        "a TensorBoard directory that leaves the run",
        train(
            "hydra.run.dir={run}",
            *QUICK,
            "logger=tensorboard",
            "logger.tensorboard.log_dir=a/../../tb",
        ),
        says=("logger.tensorboard.log_dir", "inside the run directory"),
    ),
    Case(
        "repro report through a linked output folder",
        tool("report", "{work}/sweep", "--no-plot"),
        says=("report", "link"),
        setup=sweep_with_linked_report,
    ),
]


def damaged(rel: str, content: str | bytes, *, status: str | None = None) -> Callable:
    """A setup: the completed run, with ``rel`` (under ``base``) replaced by ``content``; ``status``
    rewrites run.json's status (a completed run resumes nothing, so config damage needs another)."""

    def setup(completed: Path, work: Path) -> None:
        import json

        copy_base(completed, work)
        target = work / "base" / rel
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        if status is not None:
            manifest = json.loads((work / "base/run.json").read_text())
            (work / "base/run.json").write_text(json.dumps({**manifest, "status": status}))

    return setup


def config_edit(old: str, new: str, *, status: str | None = "failed") -> Callable:
    """A setup: the completed run's config.yaml with ``old`` replaced by ``new``."""

    def setup(completed: Path, work: Path) -> None:
        text = (completed / "config.yaml").read_text()
        assert old in text, old
        damaged("config.yaml", text.replace(old, new), status=status)(completed, work)

    return setup


def rewritten_checkpoints(
    payload: Callable[[], bytes] | None, *, size: int | None = None
) -> Callable:
    """A setup: a failed copy of the run whose every checkpoint is cut to ``size`` bytes, or keeps an
    intact envelope (header, size, sha256) around ``payload()``: a file this kit did not write."""

    def setup(completed: Path, work: Path) -> None:
        import hashlib
        import json

        from repro.base.layout import MAGIC

        damaged("run.json", (completed / "run.json").read_text(), status="failed")(completed, work)
        for path in sorted((work / "base/checkpoints").glob("step-*.ckpt")):
            raw = path.read_bytes()
            if size is not None:
                path.write_bytes(raw[:size])
                continue
            end = raw.index(b"\n", len(MAGIC))
            header = json.loads(raw[len(MAGIC) : end])
            data = payload()
            header.update(payload_size=len(data), payload_sha256=hashlib.sha256(data).hexdigest())
            path.write_bytes(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + data)

    return setup


def _code_pickle() -> bytes:
    """A pickle that would run a command when loaded without weights_only."""
    import os
    import pickle

    class Hostile:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch pwned",))

    return pickle.dumps({"kit": Hostile()}, protocol=2)


def foreign_weights(rel: str, *, drop_sha: bool = False) -> Callable:
    """A setup: ``rel`` holds the weights of another model (a state dict with other names and shapes)."""

    def setup(completed: Path, work: Path) -> None:
        import io
        import json

        import torch

        buffer = io.BytesIO()
        torch.save({"layer.weight": torch.zeros(3, 5)}, buffer)
        damaged(rel, buffer.getvalue())(completed, work)
        if drop_sha:
            manifest = json.loads((work / "base/run.json").read_text())
            manifest.pop("weights_sha256", None)
            (work / "base/run.json").write_text(json.dumps(manifest))

    return setup


def evaluate(*args: str) -> list[str]:
    return ["-m", "experiment.evaluate", "run={base}", *args]


def links(*pairs: tuple[str, str]) -> Callable:
    """A setup: symbolic links ``name -> target`` in the work folder (the target may not exist)."""

    def setup(completed: Path, work: Path) -> None:
        for name, target in pairs:
            (work / name).symlink_to(work / target)

    return setup


RESUME = train("train.resume={base}")

#: Damaged or hostile records read back (resume, load_run, evaluate, verify): one line, exit 2 or 3.
DAMAGED_CASES: list[Case] = [
    Case(
        "resume: run.json is not JSON",
        RESUME,
        says=("run.json", "not valid JSON", "restore"),
        setup=damaged("run.json", "{oops"),
    ),
    Case(
        "resume: run.json is a list",
        RESUME,
        says=("run.json", "list"),
        setup=damaged("run.json", "[1, 2]"),
    ),
    Case(
        "resume: run.json is null",
        RESUME,
        says=("run.json", "null"),
        setup=damaged("run.json", "null"),
    ),
    Case(
        "resume: config.yaml does not parse",
        RESUME,
        says=("config.yaml", "not valid YAML"),
        setup=damaged("config.yaml", "a: [\n", status="failed"),
    ),
    Case(
        "resume: config.yaml is a list",
        RESUME,
        says=("config.yaml", "list"),
        setup=damaged("config.yaml", "- 1\n- 2\n", status="failed"),
    ),
    Case(
        "resume: config.yaml has a failing interpolation",
        RESUME,
        says=("config.yaml", "oops"),
        setup=config_edit("seed: 1234", "seed: ${oops}"),
    ),
    Case(
        "resume: every checkpoint truncated",
        RESUME,
        says=("checkpoint", "truncated"),
        setup=rewritten_checkpoints(None, size=1000),
    ),
    Case(
        "resume: checkpoints whose payload would run code (never suggest weights_only=False)",
        RESUME,
        says=("no usable checkpoint",),
        # Torch's advice to load without weights_only must reach no stream nor file.
        secrets=("will likely succeed",),
        # The attempt is recorded as failed in the run's own log.
        writes_in=("base",),
        setup=rewritten_checkpoints(_code_pickle),
    ),
    Case(
        "evaluate: run.json is not JSON",
        evaluate(),
        says=("run.json", "not valid JSON"),
        setup=damaged("run.json", "{oops"),
    ),
    Case(
        "evaluate: run.json is null",
        evaluate(),
        says=("run.json", "null"),
        setup=damaged("run.json", "null"),
    ),
    Case(
        "evaluate: config.yaml does not parse",
        evaluate(),
        says=("config.yaml", "not valid YAML"),
        setup=damaged("config.yaml", "a: [\n"),
    ),
    Case(
        "evaluate: config.yaml is a list",
        evaluate(),
        says=("config.yaml", "list"),
        setup=damaged("config.yaml", "- 1\n"),
    ),
    Case(
        "evaluate: config.yaml has a failing interpolation",
        evaluate(),
        says=("config.yaml", "oops"),
        setup=config_edit("seed: 1234", "seed: ${oops}", status=None),
    ),
    Case(
        "evaluate: weights.pt of another model",
        evaluate(),
        says=("weights.pt", "does not fit"),
        setup=foreign_weights("weights.pt", drop_sha=True),
    ),
    Case(
        "evaluate: best.pt of another model",
        evaluate("which=best"),
        says=("best.pt", "does not fit"),
        setup=foreign_weights("checkpoints/best.pt"),
    ),
    Case(
        "evaluate: a truncated best.pt",
        evaluate("which=best"),
        says=("best.pt", "damaged"),
        setup=damaged("checkpoints/best.pt", b"PK\x03\x04" + b"\0" * 100),
    ),
    Case(
        "evaluate: the model's arguments in config.yaml do not fit its class",
        evaluate(),
        says=("model", "config.yaml"),
        setup=config_edit("channels1: 16", "channels1: abc", status=None),
    ),
    Case(
        "evaluate: the data's arguments in config.yaml are of the wrong type",
        evaluate(),
        says=("config.yaml", "data"),
        setup=config_edit("train_size: 256", "train_size: abc", status=None),
    ),
    Case(
        "evaluate: config.yaml names a device that does not exist",
        evaluate(),
        says=("config.yaml", "tpu9"),
        setup=config_edit("device: auto", "device: tpu9", status=None),
    ),
    Case(
        "repro audit --entry naming a missing module",
        tool("audit", "--entry", "no_such_module.train"),
        says=("--entry", "no_such_module"),
    ),
    Case(
        "repro new with a name too long for the file system",
        tool("new", "{work}/proj", "--name", "a" * 300),
        says=("too long", "--name"),
    ),
    Case(
        "repro new with a destination that cannot be written (/proc)",
        tool("new", "/proc/repro-new-project", "--name", "okname"),
        says=("cannot create the project",),
    ),
    Case(
        "hydra.run.dir under /proc",
        train("hydra.run.dir=/proc/repro-table/run", *QUICK),
        says=("hydra.run.dir", "/proc"),
    ),
    Case(
        "hydra.run.dir through a dangling symlink",
        train("hydra.run.dir={work}/dangling/run", *QUICK),
        says=("hydra.run.dir", "dangling symlink"),
        setup=links(("dangling", "nowhere")),
    ),
    Case(
        "hydra.run.dir through a symlink loop",
        train("hydra.run.dir={work}/loop-a/run", *QUICK),
        says=("hydra.run.dir", "symlink loop"),
        setup=links(("loop-a", "loop-b"), ("loop-b", "loop-a")),
    ),
    Case(
        "hydra.sweep.dir under /proc",
        train("-m", "hydra.sweep.dir=/proc/repro-table/sweep", *QUICK),
        says=("hydra.sweep.dir", "/proc"),
    ),
    Case(
        "repro verify of a run whose config.yaml no longer passes its checks",
        tool("verify", "{base}", "--out", "{work}/replay", "--quiet"),
        code=3,
        says=("cannot replay", "optimizer.lr=-1.0"),
        setup=config_edit("lr: 0.02", "lr: -1.0", status=None),
    ),
    Case(
        "a classification task on the regression experiment",
        train("hydra.run.dir={run}", "experiment=regress", "task=classify", "train.max_steps=2"),
        says=("task", "Classification", "experiment="),
        # The run started: its record says how it failed.
        writes_in=("run",),
    ),
    Case(
        "a regression task on the classification data",
        train("hydra.run.dir={run}", *QUICK, "task=regress", "train.max_steps=2"),
        says=("task", "Regression", "experiment="),
        writes_in=("run",),
    ),
]

#: Input that used to be accepted silently or ignored (a resume with overrides, an inexact resume).
SILENT_CASES: list[Case] = [
    Case(
        "a resume of a completed run with an override it would ignore",
        train("train.resume={base}", "optimizer.lr=1"),
        says=("optimizer.lr", "completed run", "would be ignored"),
        setup=copy_base,
    ),
    Case(
        "a resume of a completed run asking for more steps",
        train("train.resume={base}", "train.max_steps=8"),
        says=("train.max_steps", "completed run", "start a new run"),
        setup=copy_base,
    ),
    Case(
        "train.resume=auto on a completed run with a changed override",
        train("train.resume=auto", "hydra.run.dir={base}", *QUICK, "repro.seed=7"),
        says=("repro.seed", "would be ignored"),
        setup=copy_base,
    ),
    Case(
        "persistent loader workers without workers",
        train(*QUICK, "repro.persistent_workers=true"),
        says=("repro.persistent_workers", "repro.num_workers"),
    ),
]

#: Command lines the entry points cannot parse: one line that says how to fix them.
COMMAND_LINE_CASES: list[Case] = [
    Case(
        "-m after the overrides",
        train(*QUICK, "-m", "repro.seed=1,2"),
        says=("-m goes before the overrides", "-m experiment=quick repro.seed=1,2"),
    ),
    Case("an unknown --flag", train("--bogus"), says=("unknown option --bogus", "--help")),
    Case(
        "an unquoted non-ASCII value",
        train("train.monitor=vál_acc"),
        says=("train.monitor=vál_acc", "quote the value", "train.monitor='\"vál_acc\"'"),
    ),
    Case(
        "an unquoted value with a space (split by the shell)",
        train("train.monitor=val", "acc"),
        says=("'acc' is not an override", "quote"),
    ),
    Case(
        "an override Hydra's grammar cannot parse",
        train("train.monitor=val_acc)"),
        says=("train.monitor=val_acc)", "quote the value"),
    ),
]

CASES = [
    *VALUE_CASES,
    *SECRET_CASES,
    *PATH_CASES,
    *DAMAGED_CASES,
    *SILENT_CASES,
    *COMMAND_LINE_CASES,
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and link below ``root``: its path and (size, mtime_ns)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


def files_holding(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            # Hydra's sweep files escape ':' and '=' with a backslash: look for those spellings too.
            spellings = {needle, needle.replace(":", "\\:"), needle.replace("=", "\\=")}
            if any(s.encode() in data for s in spellings):
                hits.append(path.relative_to(root).as_posix())
    return hits


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, completed_run: Path, tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    if case.setup is not None:
        case.setup(completed_run, work)
    names = {"work": work, "run": work / "run", "base": work / "base", "outside": outside}
    argv = [a.format(**names) for a in case.argv]
    before = snapshot(tmp_path)
    proc = run_module([sys.executable, *argv], cwd=work, env=case.env, timeout=300)
    out = proc.stdout + proc.stderr

    assert proc.returncode == case.code, f"exit {proc.returncode}, wanted {case.code}\n{out}"
    assert "Traceback" not in out, out
    if case.code != 0:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        for words in case.says:
            assert words in lines[0], f"{words!r} not in: {lines[0]}"
    for secret in case.secrets:
        assert secret not in out, f"the secret reached the output:\n{out}"
        assert not files_holding(tmp_path, secret), files_holding(tmp_path, secret)
    after = snapshot(tmp_path)
    new = sorted(
        p
        for p, stat in after.items()
        if before.get(p) != stat
        and not any(p.startswith(f"work/{d.rstrip('/')}/") for d in case.writes_in)
    )
    assert not new, f"written outside what the case allows ({case.writes_in}): {new}"
