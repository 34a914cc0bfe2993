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
     (one line "error: cannot replay: ..." on stderr with the replay's last error line; no verdict)

Run directories are data. The module a replay runs is the one --entry names,
else the one run.json records when it belongs to the project's own packages
([tool.repro] packages, else the package of [tool.repro] entry, in the nearest
pyproject.toml), else the project's entry; never another because a record
says so; a replay runs a sanitised copy of the run's config
(no hydra: section, no instantiation keys the project does not have); git
runs only in the project's own code directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from repro.base.errors import ReproError
from repro.tools.table import paint, print_diff, render

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE, EXIT_CANNOT_REPLAY = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


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
    print_diff("environment (recorded vs replay)", verdict.environment_diff, "recorded", "replay")
    print_diff("determinism flags (recorded vs replay)", verdict.flags_diff, "recorded", "replay")
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
    same = report.divergence is None and not report.config_diff and not report.data_diff
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return EXIT_OK if same else EXIT_DIFFERENT
    print(f"A: {report.run_a}\nB: {report.run_b}")
    for line in report.data_lines():
        print(paint(line, "red"))
    print_diff("config", report.config_diff, "A", "B")
    print_diff("environment", report.environment_diff, "A", "B")
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


def cmd_audit(args: argparse.Namespace) -> int:
    """Build the project's model and a batch from its config, and audit one strict step."""
    import importlib

    from hydra import compose, initialize_config_dir

    from repro.base.config import register_configs
    from repro.ops import audit

    register_configs()
    from repro.tools.runs import MODULE_NAME

    if not MODULE_NAME.fullmatch(args.entry):
        raise ReproError(f"--entry {args.entry!r}: not a module name; name a dotted module")
    try:
        module = importlib.import_module(args.entry)
    # The named module (or one it imports) is missing: one line naming it.
    except ImportError as exc:
        missing = getattr(exc, "name", None) or args.entry
        raise ReproError(
            f"--entry {args.entry}: cannot import it (no module named {missing}); name the "
            "project's entry module (e.g. experiment.train), installed in this environment"
        ) from None
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
        from repro.launch.compose_errors import describe_compose_error

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
        help="replay with this module (default: the recorded one when it belongs to the "
        "project's own packages, else [tool.repro] entry in the project's pyproject.toml; a run "
        "made by a module outside them is refused without this flag)",
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
        help="replay with this module (default: the recorded one when it belongs to the "
        "project's own packages, else [tool.repro] entry in the project's pyproject.toml; a run "
        "made by a module outside them is refused without this flag)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="show neither progress nor the re-runs' own output (stderr: errors only)",
    )
    p.set_defaults(func=cmd_diff)

    from repro.tools import env as env_cmd
    from repro.tools import report as report_cmd
    from repro.tools import selftest as selftest_cmd

    p = sub.add_parser(
        "env", help="print this environment's fingerprint, or compare it with a run's"
    )
    env_cmd.add_arguments(p)
    p.set_defaults(func=env_cmd.run)

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
        print(f"error: cannot replay: {exc}", file=sys.stderr)
        return EXIT_CANNOT_REPLAY
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
