"""Deferring ``torch._dynamo`` (``repro.core.lazy_dynamo``): an eager training loop never imports it,
the bits are those of the normal import, anything that uses dynamo gets the real package (compiling
included, with torch's "not to be compiled" marks in force), a submodule imported through the
stand-in runs once, and the entry point defers it unless ``REPRO_IMPORT_DYNAMO=1``.

Every case is a fresh interpreter: the test process has imported dynamo long ago. The first test is
also the guard on torch's internals: it fails when a torch upgrade changes what the deferral reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import FIXTURE, clean_env, run_python

# An eager loop that touches every optimizer path torch marks or that imports dynamo: construction
# (add_param_group), step, zero_grad, state_dict / load_state_dict, a scheduler, a save and a load.
_LOOP = """
import hashlib, io, json, sys
import torch
from repro.core import lazy_dynamo

deferred = lazy_dynamo.defer_dynamo_import()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.AdamW(model.parameters(), lr=0.01)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for _ in range(5):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    sched.step()
buf = io.BytesIO()
torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
opt.load_state_dict(state["opt"])
sched.load_state_dict(state["sched"])
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
print(json.dumps({
    "deferred": deferred,
    "still": lazy_dynamo.deferred(),
    "module": type(sys.modules.get("torch._dynamo")).__name__,
    "digest": digest.hexdigest(),
}))
"""


def _count_runs(*endings: str) -> str:
    """Program text to put first: it records, in ``runs``, the file name of every module body run
    whose path ends with one of ``endings`` (an audit hook on ``exec``)."""
    return textwrap.dedent(f"""
        import sys
        runs = []
        def _audit(event, args, _endings={endings!r}):
            name = getattr(args[0], "co_filename", "") if event == "exec" else ""
            if name.endswith(_endings):
                runs.append(name.rsplit("/", 1)[1])
        sys.addaudithook(_audit)
    """)


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_eager_loop_never_imports_dynamo_and_gives_the_same_bits(tmp_path: Path) -> None:
    deferred = _last_json(run_python(tmp_path, _LOOP))
    assert deferred["deferred"], (
        "nothing deferred: has torch changed its lazy mark? (lazy_dynamo.py)"
    )
    assert deferred["still"] and deferred["module"] == "_StandIn", (
        "the eager loop imported torch._dynamo: has torch changed what its optimizers call?"
    )
    normal = _last_json(run_python(tmp_path, _LOOP, REPRO_IMPORT_DYNAMO="1"))
    assert not normal["deferred"] and normal["module"] == "module"
    assert deferred["digest"] == normal["digest"]


def test_compiling_after_deferring_gets_the_real_dynamo(tmp_path: Path) -> None:
    program = """
    import json, sys, types
    import torch
    from repro.core import lazy_dynamo

    assert lazy_dynamo.defer_dynamo_import()
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # its add_param_group took the shortcut
    mark = torch.optim.Optimizer.zero_grad
    fn = mark.__closure__[mark.__code__.co_freevars.index("fn")].cell_contents
    took_shortcut = fn.__dict__.get("__dynamo_disable") is fn

    calls = []
    @torch.compile(backend="eager")
    def f(x):
        calls.append(1)          # a side effect: dynamo traces this frame once
        opt.zero_grad()          # marked "not to be compiled": a graph break, run eagerly
        return x * 2 + 1

    out = [f(torch.ones(3)).tolist() for _ in range(3)]
    wrapper = fn.__dict__.get("__dynamo_disable")
    print(json.dumps({
        "took_shortcut": took_shortcut,
        "out": out,
        "module": type(sys.modules["torch._dynamo"]).__name__,
        "is_real": sys.modules["torch._dynamo"] is torch._dynamo,
        "mark_restored": wrapper is not fn,
        "still": lazy_dynamo.deferred(),
        "meta_path_clean": not any(type(f).__name__ == "_Reuse" for f in sys.meta_path),
    }))
    """
    got = _last_json(run_python(tmp_path, program))
    assert got["took_shortcut"]
    assert got["out"] == [[3.0, 3.0, 3.0]] * 3
    assert got["module"] == "module" and got["is_real"] and not got["still"]
    assert got["mark_restored"], "after dynamo came in, the mark still skips dynamo's own wrapper"
    assert got["meta_path_clean"]


def test_a_submodule_imported_through_the_stand_in_runs_once(tmp_path: Path) -> None:
    """``import torch._dynamo.config`` reads the stand-in's ``__path__``, which imports the real
    package (and with it ``config``); the import then must not run ``config.py`` a second time.
    (Reaching dynamo by an attribute or a from-import is covered by the tests around this one.)"""
    use = "import torch._dynamo.config as c"
    program = f"""
    import json, sys
    import torch
    from repro.core import lazy_dynamo

    assert lazy_dynamo.defer_dynamo_import()
    {use}
    import torch._dynamo
    torch._dynamo.my_flag = 5   # set through whatever object the caller holds: lands in the real one
    real = sys.modules["torch._dynamo"]
    print(json.dumps({{
        "runs": sorted(runs),
        "same": c is sys.modules["torch._dynamo.config"] is real.config,
        "flag": getattr(real, "my_flag", None),
        "spec_name": c.__spec__.name,
        "loader": type(c.__spec__.loader).__name__,
        "meta_path_clean": not any(type(f).__name__ == "_Reuse" for f in sys.meta_path),
    }}))
    """
    count = _count_runs("_dynamo/config.py", "_dynamo/__init__.py")
    got = _last_json(run_python(tmp_path, count + textwrap.dedent(program)))
    assert got["runs"] == ["__init__.py", "config.py"], got["runs"]
    assert got["same"] and got["flag"] == 5
    assert got["spec_name"] == "torch._dynamo.config" and got["loader"] == "SourceFileLoader"
    assert got["meta_path_clean"]


# Runs after the kit's own exit handler has done its work: reports what torch._dynamo was.
_REPORT = """
import atexit, os, sys
def _report():
    with open(os.environ["DYNAMO_REPORT"], "w") as f:
        f.write(type(sys.modules.get("torch._dynamo")).__name__)
atexit.register(_report)
"""


def test_the_entry_point_defers_it(tmp_path: Path) -> None:
    """A run through the entry point ends with the stand-in in place (``REPRO_IMPORT_DYNAMO=1`` is
    read by ``defer_dynamo_import`` itself: the first test runs it both ways)."""
    launcher = (
        "import runpy, sys\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    )
    report = tmp_path / "report"
    proc = run_python(
        tmp_path,
        launcher,
        FIXTURE,
        f"hydra.run.dir={tmp_path / 'run'}",
        "train.max_steps=3",
        sitecustomize=_REPORT,
        DYNAMO_REPORT=str(report),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report.read_text() == "_StandIn"


def test_modules_that_scan_sys_modules_import_as_usual(tmp_path: Path) -> None:
    """``torch.library.custom_op`` (DTensor, FSDP, ``assert_close``) reads ``__file__`` of every
    module in ``sys.modules`` while it is imported: the stand-in answers without importing dynamo
    in the middle of that import (which failed with a circular import)."""
    program = """
    import json, sys
    import torch
    from repro.core import lazy_dynamo

    assert lazy_dynamo.defer_dynamo_import()
    import torch.distributed.tensor
    from torch.distributed.fsdp import fully_shard
    torch.testing.assert_close(torch.ones(3), torch.ones(3))
    traced = torch.jit.trace(torch.nn.Linear(2, 2), torch.ones(1, 2))
    print(json.dumps({"still": lazy_dynamo.deferred(), "traced": type(traced).__name__}))
    """
    got = _last_json(run_python(tmp_path, program))
    assert got["still"] and got["traced"] == "TopLevelTracedModule"


def test_graph_break_taken_while_deferred_is_the_real_one_once_compiling(tmp_path: Path) -> None:
    """``from torch._dynamo import graph_break`` and a held ``torch._dynamo`` give dynamo's own
    ``graph_break`` to compiled code: ``fullgraph=True`` refuses it, as without the deferral."""
    program = """
    import json
    import torch
    from repro.core import lazy_dynamo

    assert lazy_dynamo.defer_dynamo_import()
    import torch._dynamo as held      # the stand-in, held before anything uses dynamo
    held.graph_break()                # a no-op while deferred, as dynamo's own is outside tracing
    from torch._dynamo import graph_break

    refused = []
    for brk in (graph_break, lambda: held.graph_break()):
        def f(x, brk=brk):
            x = x + 1
            brk()
            return x * 2
        try:
            torch.compile(f, backend="eager", fullgraph=True)(torch.ones(2))
            refused.append(False)
        except Exception as exc:
            refused.append(type(exc).__name__)
    print(json.dumps({"refused": refused}))
    """
    got = _last_json(run_python(tmp_path, program))
    assert got["refused"] == ["Unsupported", "Unsupported"], got


def test_the_import_system_is_left_as_it_was(tmp_path: Path) -> None:
    """After dynamo comes in through the stand-in: a finder after the kit's on ``sys.meta_path`` is
    still asked (the kit's finder does not remove itself from the list being searched), a reload
    runs the module's code again, and the kit's finder is gone."""
    program = """
    import importlib, importlib.abc, importlib.util, json, sys
    import torch
    from repro.core import lazy_dynamo

    class Virtual(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            return importlib.util.spec_from_loader(name, self) if name == "virtual_mod" else None
        def create_module(self, spec):
            return None
        def exec_module(self, module):
            module.x = 42

    assert lazy_dynamo.defer_dynamo_import()
    sys.meta_path.insert(1, Virtual())   # right after the kit's finder
    from torch._dynamo import graph_break  # reads __path__: the real package comes in
    import virtual_mod
    importlib.reload(sys.modules["torch._dynamo.exc"])
    print(json.dumps({
        "virtual": virtual_mod.x,
        "exc_runs": len(runs),
        "kit_finder_left": any(type(f).__name__ == "_Reuse" for f in sys.meta_path),
    }))
    """
    count = _count_runs("_dynamo/exc.py")
    got = _last_json(run_python(tmp_path, count + textwrap.dedent(program)))
    assert got == {"virtual": 42, "exc_runs": 2, "kit_finder_left": False}, got


def test_what_plain_pytorch_gets_from_an_early_dynamo_import_still_holds(tmp_path: Path) -> None:
    """Plain PyTorch has imported dynamo by the time a training loop runs, and code relies on
    that: a saved nested jagged tensor loads with ``weights_only`` (dynamo's import allow-lists a
    class it holds); a ``graph_break`` kept in a variable breaks compiled code's graph; code that
    holds ``torch._dynamo`` can be pickled by reference (cloudpickle, joblib)."""
    saved = tmp_path / "njt.pt"
    save = (
        "import sys, torch\n"
        "nt = torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged)\n"
        "torch.save({'nt': nt}, sys.argv[1])\n"
    )
    subprocess.run(
        [sys.executable, "-c", save, str(saved)],
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    program = f"""
    import json, pickle, sys
    import torch
    from repro.core import lazy_dynamo

    assert lazy_dynamo.defer_dynamo_import()
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    import torch._dynamo as held
    kept = held.graph_break
    pickled = type(pickle.loads(pickle.dumps(held))).__name__
    loaded = torch.load({str(saved)!r})["nt"]

    def f(x):
        x = x + 1
        kept()
        return x * 2
    try:
        torch.compile(f, backend="eager", fullgraph=True)(torch.ones(2))
        refused = False
    except Exception as exc:
        refused = type(exc).__name__
    print(json.dumps({{
        "pickled": pickled,
        "loaded": [type(loaded).__name__, loaded.size(0)],
        "refused": refused,
    }}))
    """
    got = _last_json(run_python(tmp_path, program))
    assert got["pickled"] in ("_StandIn", "module")
    assert got["loaded"] == ["NestedTensor", 2]
    assert got["refused"] == "Unsupported"


def test_two_threads_reaching_dynamo_at_once_run_its_config_once(tmp_path: Path) -> None:
    """One thread imports ``torch._dynamo.config`` through the stand-in while another touches a
    held stand-in during that import: ``config.py`` still runs once, and the config a user sets is
    the one dynamo reads."""
    program = """
    import json, sys, threading, time
    import torch
    from repro.core import lazy_dynamo

    assert lazy_dynamo.defer_dynamo_import()
    import torch._dynamo as held
    out = {}

    def first():
        import torch._dynamo.config as c
        out["first"] = c

    def second():  # waits until the first thread's import of the real package has begun
        while type(sys.modules.get("torch._dynamo")).__name__ != "module":
            time.sleep(0.001)
        out["second"] = held.config

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import torch._dynamo.convert_frame as convert_frame
    print(json.dumps({
        "config_runs": len(runs),
        "same": out["first"] is out["second"] is sys.modules["torch._dynamo.config"],
        "dynamo_reads_it": convert_frame.config is torch._dynamo.config,
    }))
    """
    count = _count_runs("_dynamo/config.py")
    got = _last_json(run_python(tmp_path, count + textwrap.dedent(program)))
    assert got == {"config_runs": 1, "same": True, "dynamo_reads_it": True}, got
