"""The ``repro`` command: check that runs reproduce, and find where two runs part.

    repro verify RUN_DIR [--steps N | --spot K] [--out DIR] [--entry MODULE] [--json]
    repro diff RUN_A RUN_B [--no-localise | --deep] [--entry MODULE] [--json]
    repro env [RUN_DIR] [--json]
    repro audit [OVERRIDES ...] [--entry MODULE] [--json]
    repro report SWEEP_DIR [--out DIR] [--json] [--no-plot]
    repro selftest [--json] [--record]
    repro new DEST --name NAME

Exit status:
  0  the check passes (IDENTICAL, or no difference)
  1  it finds a difference (a verdict: DIVERGED, differing configs or environments)
  2  bad input: a bad argument, or a run directory that is missing, malformed or refused
     (one line "error: ..." on stderr naming the file, nothing written)
  3  cannot replay: the replay started but ended before recording its first step
     (one line "cannot replay: ..." on stderr with the replay's last error line; no verdict)

Run directories are data. The module a replay runs is the project's
([tool.repro] entry in the nearest pyproject.toml) or the one --entry names,
never the record's alone; a replay runs a sanitised copy of the run's config
(no hydra: section, no instantiation keys the project does not have); git
runs only in the project's own code directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from repro.base.errors import ReproError
from repro.tools.table import paint, render

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE, EXIT_CANNOT_REPLAY = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _print_diff(title: str, rows: list[tuple[str, Any, Any]], left: str, right: str) -> None:
    if not rows:
        print(f"{title}: no differences")
        return
    print(f"{title}: {len(rows)} difference{'s' if len(rows) != 1 else ''}")
    print(render(["key", left, right], rows))


def cmd_verify(args: argparse.Namespace) -> int:
    from repro.tools.progress import ToolProgress
    from repro.tools.verify import verify

    log = None if args.quiet else ToolProgress(sys.stderr)
    verdict = verify(
        args.run_dir,
        out_dir=args.out,
        steps=args.steps,
        spot=args.spot,
        segment=args.segment,
        entry=args.entry,
        log=log,
    )
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2, default=str))
        return EXIT_OK if verdict.identical else EXIT_DIFFERENT
    print(f"run:     {verdict.run_dir}")
    print(f"replay:  {verdict.replay_dir}  ({verdict.mode}, {verdict.replay_seconds:.1f} s)")
    if verdict.pinned:
        print(
            "pinned from the record: "
            + ", ".join(f"{k}={v}" for k, v in sorted(verdict.pinned.items()))
        )
    _print_diff("environment (recorded vs replay)", verdict.environment_diff, "recorded", "replay")
    _print_diff("determinism flags (recorded vs replay)", verdict.flags_diff, "recorded", "replay")
    if verdict.segments:
        print(
            render(
                ["checkpoint", "steps", "result", "seconds"],
                [
                    (
                        s["checkpoint"],
                        f"{s['from_step'] + 1}..{s['to_step']}",
                        "identical" if s["identical"] else "DIVERGED",
                        s["seconds"],
                    )
                    for s in verdict.segments
                ],
            )
        )
    print(f"fingerprints compared: {verdict.steps_compared} steps")
    if verdict.weights:
        print(f"weights sha256: recorded {verdict.weights['recorded']}")
        print(f"                replay   {verdict.weights['replayed']}")
    colour = "green" if verdict.identical else "red"
    print(paint(verdict.headline, colour))
    return EXIT_OK if verdict.identical else EXIT_DIFFERENT


def cmd_diff(args: argparse.Namespace) -> int:
    from repro.tools.diff import diff_runs
    from repro.tools.progress import ToolProgress

    report = diff_runs(
        args.run_a,
        args.run_b,
        localise=not args.no_localise,
        deep=args.deep,
        entry=args.entry,
        log=None if args.quiet else ToolProgress(sys.stderr),
    )
    same = report.divergence is None and not report.config_diff
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return EXIT_OK if same else EXIT_DIFFERENT
    print(f"A: {report.run_a}\nB: {report.run_b}")
    _print_diff("config", report.config_diff, "A", "B")
    _print_diff("environment", report.environment_diff, "A", "B")
    if report.divergence is None:
        print(paint(f"fingerprints: identical over {report.steps_compared} steps", "green"))
        return EXIT_OK if same else EXIT_DIFFERENT
    d = report.divergence
    print(
        paint(
            f"fingerprints part at step {d['step']}: {d['quantity']} (A {d['a']}, B {d['b']})",
            "red",
        )
    )
    loc = report.localisation
    if report.explanation:
        print(paint(report.explanation, "yellow"))
    elif loc is not None and "skipped" in loc:
        print(paint(f"not localised: {loc['skipped']}", "yellow"))
    elif loc is not None:
        print(
            f"re-ran step {loc['step']} of A from {loc['replayed_from']['a']} and of B from "
            f"{loc['replayed_from']['b']}, capturing {loc['tensors_compared']} tensors"
        )
        if loc["first"] is None:
            print(
                paint(
                    "every captured tensor is identical when both re-run here: the difference comes from "
                    "where they ran (see the environment above) or from outside the watched model",
                    "yellow",
                )
            )
        else:
            print(paint(f"first tensor that differs: {loc['first']['description']}", "red"))
            if len(loc["differing"]) > 1:
                print(f"({len(loc['differing']) - 1} later tensors differ too)")
    return EXIT_DIFFERENT


def cmd_env(args: argparse.Namespace) -> int:
    from repro.base.config import diff_trees, flatten
    from repro.core.environment import environment_fingerprint
    from repro.tools.runs import VOLATILE_ENV_KEYS, load_run

    if args.run_dir is None:
        env = environment_fingerprint(_code_dir())
        if args.json:
            print(json.dumps(env, indent=2, default=str))
        else:
            print(render(["key", "value"], sorted(flatten(env).items())))
        return EXIT_OK
    run = load_run(args.run_dir, require_completed=False)
    now = _environment_under_pins(run)
    rows = diff_trees(run.manifest.get("environment") or {}, now, ignore=VOLATILE_ENV_KEYS)
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": str(run.dir),
                    "differences": [{"key": k, "recorded": a, "now": b} for k, a, b in rows],
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(f"run: {run.dir} (the current environment is read under the run's pins)")
        _print_diff("environment (recorded vs now)", rows, "recorded", "now")
    return EXIT_OK if not rows else EXIT_DIFFERENT


def cmd_audit(args: argparse.Namespace) -> int:
    """Build the project's model and a batch from its config, and audit one strict step."""
    import importlib

    from hydra import compose, initialize_config_dir

    from repro.base.config import register_configs
    from repro.ops import audit

    register_configs()
    module = importlib.import_module(args.entry)
    build = getattr(module, "audit_target", None)
    conf_dir = getattr(module, "CONF_DIR", None)
    if build is None or conf_dir is None:
        raise ReproError(
            f"--entry {args.entry}: the module needs CONF_DIR and audit_target(cfg) to be audited"
        )
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name="config", overrides=args.overrides)
    except Exception as exc:  # a bad override: the user's input
        from repro.launch.entry import describe_compose_error

        raise ReproError(describe_compose_error(exc)) from None
    model, batch, loss_fn = build(cfg)
    report = audit(model, batch, loss_fn)
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.format())
    return EXIT_OK if report.clean else EXIT_DIFFERENT


def _default_entry() -> str:
    """The project's entry module for ``repro audit``: [tool.repro] entry of the project, else experiment.train."""
    from repro.core.environment import find_project

    project = find_project()
    return project.entry if project is not None and project.entry else "experiment.train"


def _code_dir() -> Path:
    """The project's code directory (where its pyproject.toml with [tool.repro] is), else the cwd."""
    from repro.core.environment import find_project

    project = find_project()
    return project.root if project is not None else Path.cwd()


#: Run in a fresh interpreter that does not import from its working directory; arguments come in argv.
_FINGERPRINT_CODE = """
import json, sys, torch
from repro.core.environment import environment_fingerprint
threads, interop, code_dir = sys.argv[1:4]
if threads:
    torch.set_num_threads(int(threads))
if interop:
    torch.set_num_interop_threads(int(interop))
print(json.dumps(environment_fingerprint(code_dir), default=str))
"""


def _environment_under_pins(run: Any) -> dict[str, Any]:
    """This machine's fingerprint, read in a process started with the pins a replay of ``run`` would use.

    The git state is the project's own code directory's, never a directory the record names.
    """
    import subprocess
    import tempfile

    from repro.tools.replay import replay_environment

    env, _ = replay_environment(run)
    repro_cfg = run.config.get("repro") or {}
    threads, interop = repro_cfg.get("threads"), repro_cfg.get("interop_threads")
    for key, value in (("repro.threads", threads), ("repro.interop_threads", interop)):
        if value is not None and not 1 <= value <= 1 << 16:
            raise ReproError(
                f"{run.dir / 'config.yaml'}: {key} is {value}; expected an int in [1, 65536] or null"
            )
    argv = [str(threads or ""), str(interop or ""), str(_code_dir())]
    with tempfile.TemporaryDirectory(prefix="repro-env-") as cwd:
        out = subprocess.run(
            [sys.executable, "-c", _FINGERPRINT_CODE, *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
        )
    if out.returncode != 0:
        last = ([line for line in out.stderr.splitlines() if line.strip()] or ["no output"])[-1]
        raise ReproError(
            f"reading this environment under the pins of {run.dir} failed "
            f"(exit status {out.returncode}): {last[:200]}"
        )
    return json.loads(out.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="repro", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verify", help="replay a run and check it gives the same bits")
    p.add_argument("run_dir")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, help="replay only the first N steps")
    group.add_argument(
        "--spot", type=int, metavar="K", help="replay K short segments from saved checkpoints"
    )
    p.add_argument("--segment", type=int, default=3, help="steps per --spot segment (default 3)")
    p.add_argument("--out", help="directory for the replay (default outputs/verify/<run>-<time>)")
    p.add_argument(
        "--entry",
        metavar="MODULE",
        help="replay with this module (default: [tool.repro] entry in "
        "the project's pyproject.toml; a run made by another module is refused without this flag)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="show neither progress nor the replay's own output (stderr: errors only)",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("diff", help="compare two runs and find the first tensor that differs")
    p.add_argument("run_a")
    p.add_argument("run_b")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--no-localise", action="store_true", help="skip re-running the first differing step"
    )
    how.add_argument(
        "--deep",
        action="store_true",
        help="re-run the first differing step even when the configs "
        "differ in keys that explain the divergence",
    )
    p.add_argument(
        "--entry",
        metavar="MODULE",
        help="replay with this module (default: [tool.repro] entry in "
        "the project's pyproject.toml; a run made by another module is refused without this flag)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="show neither progress nor the re-runs' own output (stderr: errors only)",
    )
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "env", help="print this environment's fingerprint, or compare it with a run's"
    )
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_env)

    from repro.tools import report as report_cmd
    from repro.tools import selftest as selftest_cmd

    p = sub.add_parser(
        "report", help="summarise a sweep: a figure, tables per swept key, statistics"
    )
    report_cmd.add_arguments(p)
    p.set_defaults(func=report_cmd.run)

    p = sub.add_parser(
        "selftest", help="does this machine give the reference bits of its torch build?"
    )
    selftest_cmd.add_arguments(p)
    p.set_defaults(func=selftest_cmd.run)

    p = sub.add_parser(
        "audit", help="run one strict step of the project's model and list ops that refuse it"
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides for the project's config")
    p.add_argument(
        "--entry",
        default=None,
        help="the project's entry module (default: [tool.repro] entry in "
        "pyproject.toml, else experiment.train)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)

    import importlib.util

    if importlib.util.find_spec("template_tools") is not None:  # the template's own tooling
        from template_tools.scaffold import add_parser as add_new_parser

        add_new_parser(sub)
    else:  # a generated project does not carry the template's tooling

        def new_elsewhere(_: argparse.Namespace) -> int:
            print(
                "error: repro new is available in the template repository, not in a generated "
                "project: run it from a clone of the template",
                file=sys.stderr,
            )
            return EXIT_USAGE

        p = sub.add_parser("new", help="start a new project (in the template repository only)")
        p.add_argument("dest", nargs="?", metavar="DEST")
        p.add_argument("--name", metavar="NAME")
        p.add_argument("--template", metavar="DIR")
        p.set_defaults(func=new_elsewhere)
    return parser


def main(argv: list[str] | None = None) -> int:
    from repro.tools.replay import ReplayFailed

    for stream in (
        sys.stdout,
        sys.stderr,
    ):  # a path that is not valid UTF-8 must not end in a traceback
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "audit" and args.entry is None:
        args.entry = _default_entry()
    try:
        return args.func(args)
    except ReplayFailed as exc:
        print(f"cannot replay: {exc}", file=sys.stderr)
        return EXIT_CANNOT_REPLAY
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
