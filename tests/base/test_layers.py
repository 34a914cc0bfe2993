"""The package's shape is a rule, not a comment: every import, inside functions too, points down the
layers (base <- core, ops <- run <- launch <- tools; the ``repro`` façade on top), there is no cycle, the
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


#: The layers, bottom first (docs/layout.md). A module may import its own layer and the ones below;
#: core and ops sit side by side and do not import each other. The façade (``repro/__init__.py``,
#: ``repro/__main__.py``) sits on top: it may import any layer, and no layer imports it.
LAYERS = {"base": 0, "core": 1, "ops": 1, "run": 2, "launch": 3, "tools": 4}


def imports_anywhere(path: Path, kit: Path) -> list[tuple[int, str]]:
    """Every ``repro`` module ``path`` imports, wherever the statement is (module level, functions,
    ``TYPE_CHECKING`` blocks), with its line: ``from pkg import name`` counts as ``pkg.name`` when that is
    a module of the kit, relative imports are resolved."""
    here = module_name_in(path, kit).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    modules = {module_name_in(p, kit) for p in kit.rglob("*.py")}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                name = f"{base}.{a.name}"
                found.append((node.lineno, name if name in modules else base))
    return [(line, name) for line, name in found if name == "repro" or name.startswith("repro.")]


def module_name_in(path: Path, kit: Path) -> str:
    parts = path.relative_to(kit.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def upward_imports(kit: Path) -> list[str]:
    """``file:line: importer -> imported`` for every import that points up the layers, sideways
    between core and ops, or at the façade from inside a layer."""
    bad = []
    for path in sorted(kit.rglob("*.py")):
        me = module_name_in(path, kit)
        layer = me.split(".")[1] if "." in me else None
        if layer not in LAYERS:
            continue
        for line, name in imports_anywhere(path, kit):
            other = name.split(".")[1] if "." in name else None
            sideways = other != layer and LAYERS.get(other) == LAYERS[layer] and other is not None
            if other not in LAYERS or LAYERS[other] > LAYERS[layer] or sideways:
                rel = path.relative_to(kit.parent).as_posix()
                bad.append(f"{rel}:{line}: {me} -> {name}")
    return bad


def test_every_import_points_down_the_layers():
    bad = upward_imports(KIT)
    assert not bad, "imports that point up the layers (docs/layout.md):\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "planted", "caught"),
    [
        (
            "core/seeding.py",
            "    from repro.tools import cli\n",
            "repro.core.seeding -> repro.tools.cli",
        ),
        ("run/lock.py", "    import repro\n", "repro.run.lock -> repro"),
        ("base/files.py", "    from ..run import record\n", "repro.base.files -> repro.run.record"),
        ("core/seeding.py", "    from repro.ops import audit\n", "repro.core.seeding -> repro.ops"),
    ],
)
def test_the_layer_check_catches_an_import_planted_inside_a_function(
    module, planted, caught, tmp_path
):
    import shutil

    kit = tmp_path / "repro"
    shutil.copytree(KIT, kit, ignore=shutil.ignore_patterns("__pycache__"))
    target = kit / module
    target.write_text(target.read_text() + "\n\ndef _planted():\n" + planted)
    assert upward_imports(kit) == [
        f"repro/{module}:{len(target.read_text().splitlines())}: {caught}"
    ]


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


def test_the_top_level_is_the_facade_and_the_layer_packages():
    top = sorted(p.name for p in KIT.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], top
    packages = {p.name for p in KIT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), packages


def test_one_list_of_environment_variables():
    from repro.base.envvars import ENV_PINS, NUMERICS_ENV, RECORDED_ENV
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
#: garbage collector, a hook in the import system, a private attribute of torch's C module, a private torch
#: module imported (``torch._inductor.config``: ``torch.compile(options=...)`` is the public way).
_INTERNALS = {
    "a stand-in in sys.modules": r"sys\.modules\[[^]]+\]\s*=|sys\.modules\.(setdefault|update)\(",
    "gc.freeze": r"gc\.(freeze|get_objects|get_referrers)\b",
    "a code object or closure": r"\b(__code__|co_consts|co_code|__closure__|__globals__)\b",
    "the import system": r"\bmeta_path\b|\bpath_hooks\b",
    "torch's C module": r"torch\._C\b",
    "a private torch module": r"\b(import|from)\s+torch\._\w+",
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


def test_the_public_api_is_the_type_checking_block_of_the_facade():
    """``repro/__init__.py`` lists each public name once, as a ``TYPE_CHECKING`` import; a line the run-time
    reader would miss (no ``as Name`` alias, two names on one line) fails here instead of vanishing."""
    import repro

    tree = ast.parse((KIT / "__init__.py").read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n)
    )
    listed = {(a.name, node.module) for node in block.body for a in node.names}
    assert listed == {(name, module) for name, module in repro._EXPORTS.items()}
    assert sorted(name for name, _ in listed) == repro.__all__


def test_no_module_of_the_kit_holds_two_jobs_by_size():
    """A file past 400 lines holds two jobs (docs/layout.md): split it where the jobs part."""
    sizes = {
        p.relative_to(KIT).as_posix(): len(p.read_text().splitlines()) for p in KIT.rglob("*.py")
    }
    long = {name: n for name, n in sizes.items() if n > 400}
    assert not long, long


def test_every_test_file_has_a_name_of_its_own():
    """pytest imports test files by their names (no packages): two of one name break collection."""
    names = [p.name for p in TESTS.parent.rglob("*.py") if "fixture" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []
