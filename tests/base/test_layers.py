"""The package's shape is a rule, not a comment: imports point down the phases of a run (no cycles), the
launch phase imports no torch, the kit never imports the example, and the top level stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import FIXTURE, imports_torch

KIT = Path(__file__).resolve().parents[2] / "src" / "repro"
TESTS = Path(__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(KIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    ".".join(
        p.relative_to(KIT.parent).with_suffix("").parts[:-1]
        if p.name == "__init__.py"
        else p.relative_to(KIT.parent).with_suffix("").parts
    )
    for p in KIT.rglob("*.py")
}


def module_level_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported: top-level statements, not TYPE_CHECKING blocks or
    imports inside functions (those run later, on demand)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.Try | ast.If) else [node]:
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                submodules = {f"{sub.module}.{a.name}" for a in sub.names} & MODULES
                found.update(
                    submodules
                )  # `from pkg import module` needs the module (and pkg, loading)
                if len(submodules) < len(sub.names):
                    found.add(sub.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in KIT.rglob("*.py")}
    return {
        name: {m for m in module_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_import_cycle_inside_the_kit():
    g = graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            if nxt == "repro":  # the package's own __init__ only loads names lazily
                continue
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(g):
        if start not in state:
            visit(start, [start])


def test_the_launch_phase_imports_no_torch_at_module_level():
    g = graph()
    seen, todo = set(), [m for m in g if m.startswith("repro.launch")]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(g[m])
    files = {module_name(p): p for p in KIT.rglob("*.py")}
    heavy = [
        m
        for m in seen
        if any(i == "torch" or i.startswith("torch.") for i in module_level_imports(files[m]))
    ]
    assert not heavy, f"the launch phase reaches torch through {heavy}"


@pytest.mark.parametrize(
    "args", [["--help"], ["--cfg", "job"], ["repro.seed=-1"], ["train.resume=/nonexistent"]]
)
def test_help_cfg_and_refused_command_lines_import_no_torch(args, tmp_path):
    assert not imports_torch(FIXTURE, *args, cwd=tmp_path)


def test_the_kit_never_imports_the_example():
    for path in [*KIT.rglob("*.py"), *(TESTS).rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n == "experiment" or n.startswith("experiment.") for n in names), path


def test_the_top_level_holds_a_handful_of_modules():
    top = sorted(p.name for p in KIT.glob("*.py"))
    assert len(top) <= 9, top
    assert {p.name for p in KIT.iterdir() if p.is_dir() and (p / "__init__.py").exists()} >= {
        "launch",
        "core",
        "run",
        "tools",
        "ops",
    }


def test_one_list_of_environment_variables():
    from repro.base.config import ENV_PINS, NUMERICS_ENV, RECORDED_ENV
    from repro.core.environment import RELEVANT_ENV
    from repro.tools.replay import REPLAYED_ENV

    assert set(ENV_PINS.values()) <= set(NUMERICS_ENV)  # every pin is recorded and replayed
    assert RELEVANT_ENV is RECORDED_ENV and REPLAYED_ENV is NUMERICS_ENV


def test_every_kit_module_imports():
    import importlib
    import pkgutil

    import repro

    for info in pkgutil.walk_packages(repro.__path__, "repro."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in repro.__all__:  # every public name resolves
        assert getattr(repro, name) is not None, name


#: Reaches into torch's or CPython's internals (docs/layout.md, "What we do not do"): a stand-in module
#: put in ``sys.modules``, a frozen heap, a function's code object or closure, objects found through the
#: garbage collector, a hook in the import system, a private attribute of torch's C module.
_INTERNALS = {
    "a stand-in in sys.modules": r"sys\.modules\[[^]]+\]\s*=|sys\.modules\.(setdefault|update)\(",
    "gc.freeze": r"gc\.(freeze|get_objects|get_referrers)\b",
    "a code object or closure": r"\b(__code__|co_consts|co_code|__closure__|__globals__)\b",
    "the import system": r"\bmeta_path\b|\bpath_hooks\b",
    "torch's C module": r"torch\._C\b",
}
#: The one private call allowed (gated to tested torch releases, checked against the public call in
#: tests/core/test_determinism.py).
_ALLOWED_INTERNAL = {("repro/core/determinism.py", "_set_deterministic_algorithms")}


def test_no_torch_or_cpython_internals_in_the_code():
    import re

    found = []
    for path in sorted(KIT.parent.rglob("*.py")):
        rel = path.relative_to(KIT.parent).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for what, pattern in _INTERNALS.items():
                match = re.search(pattern, code)
                if match is None:
                    continue
                if any(rel == f and allowed in code for f, allowed in _ALLOWED_INTERNAL):
                    continue
                found.append(f"{rel}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)
