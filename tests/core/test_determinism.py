"""setup_reproducibility: the report tells the truth, and pins that cannot hold are caught."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.utils.deterministic as tud

from conftest import clean_env
from repro import ConfigValueError, Determinism, ReproConfig, setup_reproducibility
from repro.core.setup import Repro


@pytest.fixture(autouse=True)
def restore_torch_flags():
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.get_num_threads(),
        tud.fill_uninitialized_memory,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    ) = saved[2:6]
    torch.set_float32_matmul_precision(saved[6])
    torch.set_num_threads(saved[7])
    tud.fill_uninitialized_memory = saved[8]


def quiet(**kw) -> ReproConfig:
    """A config without process-start pins, so it applies inside the test process."""
    return ReproConfig(**{"pythonhashseed": None, "cublas_workspace_config": None, **kw})


@pytest.mark.parametrize("mode", list(Determinism))
@pytest.mark.parametrize("tf32", [False, True])
def test_report_matches_torch_global_state(mode, tf32):
    bench = mode != Determinism.strict
    repro = setup_reproducibility(
        quiet(deterministic=mode, tf32=tf32, cudnn_benchmark=bench, threads=1)
    )
    s = repro.report.to_dict()["settings"]
    assert torch.are_deterministic_algorithms_enabled() is (mode != Determinism.off)
    assert torch.is_deterministic_algorithms_warn_only_enabled() is (mode == Determinism.warn)
    assert torch.backends.cudnn.deterministic is (mode != Determinism.off)
    assert torch.backends.cudnn.benchmark is bench
    assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
    assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
    assert torch.get_num_threads() == 1
    # ... and the report says exactly that.
    assert (
        s["torch.use_deterministic_algorithms"]["applied"]
        is torch.are_deterministic_algorithms_enabled()
    )
    assert (
        s["torch.deterministic_warn_only"]["applied"]
        is torch.is_deterministic_algorithms_warn_only_enabled()
    )
    assert s["torch.backends.cudnn.benchmark"]["applied"] is torch.backends.cudnn.benchmark
    assert s["torch.float32_matmul_precision"]["applied"] == torch.get_float32_matmul_precision()
    leaves = {k: v for k, v in s.items() if k.endswith(".fp32_precision")}
    assert leaves, "torch >= 2.9 has per-backend precision switches; the report must read them back"
    assert (
        leaves["torch.backends.cuda.matmul.fp32_precision"]["applied"]
        == ("tf32" if tf32 else "ieee")
        == torch.backends.cuda.matmul.fp32_precision
    )
    if not tf32:
        assert all(v["applied"] == "ieee" for v in leaves.values())
    assert s["torch.num_threads"]["applied"] == 1
    assert (
        s["torch.utils.deterministic.fill_uninitialized_memory"]["applied"]
        is tud.fill_uninitialized_memory
    )
    assert repro.report.mode == mode.value and not repro.report.failed


def test_tf32_off_also_overrides_a_backend_switched_on_elsewhere():
    torch.backends.mkldnn.conv.fp32_precision = "tf32"  # as some library might do
    try:
        repro = setup_reproducibility(quiet(tf32=False))
        setting = repro.report.get("torch.backends.mkldnn.conv.fp32_precision")
        assert torch.backends.mkldnn.conv.fp32_precision == "ieee" == setting.applied
        assert "forced" in setting.note
    finally:
        torch.backends.mkldnn.conv.fp32_precision = "none"


def test_null_threads_restore_the_process_default_after_a_pinned_job():
    from repro.core.determinism import _INITIAL_THREADS

    setup_reproducibility(quiet(threads=1))
    assert torch.get_num_threads() == 1
    repro = setup_reproducibility(quiet(threads=None))  # the next job of a sweep
    assert (
        torch.get_num_threads() == _INITIAL_THREADS == repro.report.get("torch.num_threads").applied
    )


def test_null_threads_under_torchrun_run_one_per_rank_and_say_so(monkeypatch):
    """Whatever the node layout (repro.core.threads); an explicit pin still wins."""
    from repro.core.determinism import DeterminismReport, apply_flags
    from repro.core.threads import TORCHRUN_NOTE

    for var, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(var, value)
    report = DeterminismReport(mode="strict")
    apply_flags(quiet(threads=None), report)
    s = report.get("torch.num_threads")
    assert torch.get_num_threads() == 1
    assert (s.requested, s.applied, s.took_effect, s.note) == (None, 1, True, TORCHRUN_NOTE)
    apply_flags(quiet(threads=2), report)
    assert torch.get_num_threads() == 2 == report.settings[-2].applied


def test_strict_raises_on_a_nondeterministic_op_and_warn_only_warns():
    def nondeterministic_op():  # put_ without accumulate has no deterministic kernel, on any device
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]), accumulate=False)

    setup_reproducibility(quiet(deterministic="strict"))
    with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
        nondeterministic_op()
    setup_reproducibility(quiet(deterministic="warn"))
    with pytest.warns(UserWarning, match="does not have a deterministic implementation"):
        nondeterministic_op()
    setup_reproducibility(quiet(deterministic="off"))
    nondeterministic_op()


def test_accepts_whole_config_node_mapping_and_dataclass():
    from omegaconf import OmegaConf

    whole = OmegaConf.create(
        {"repro": {"seed": 3, "pythonhashseed": None, "cublas_workspace_config": None}, "train": {}}
    )
    assert setup_reproducibility(whole).seed == 3
    assert setup_reproducibility(whole.repro).seed == 3
    assert (
        setup_reproducibility(
            {"seed": 4, "pythonhashseed": None, "cublas_workspace_config": None}
        ).seed
        == 4
    )
    assert setup_reproducibility(quiet(seed=5)).seed == 5


def test_null_seed_is_drawn_and_written_back():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"repro": {"seed": None, "pythonhashseed": None, "cublas_workspace_config": None}}
    )
    repro = setup_reproducibility(cfg)
    assert repro.seed_source == "entropy" and 0 <= repro.seed < 2**32
    assert cfg.repro.seed == repro.seed
    assert repro.to_dict()["config"]["seed"] == repro.seed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", -1),
        ("seed", 2**32),
        ("num_workers", -2),
        ("threads", 0),
        ("interop_threads", 0),
        ("pythonhashseed", -1),
    ],
)
def test_out_of_range_values_name_key_and_allowed(field, value):
    with pytest.raises(ConfigValueError) as info:
        setup_reproducibility(quiet(**{field: value}))
    assert info.value.key == f"repro.{field}"
    assert f"repro.{field}={value}" in str(info.value) and "expected" in str(info.value)


def test_global_rngs_are_seeded():
    import random

    import numpy as np

    draws = []
    for _ in range(2):
        setup_reproducibility(quiet(seed=11))
        draws.append((random.random(), float(np.random.rand()), torch.rand(2).tolist()))
    assert draws[0] == draws[1]
    setup_reproducibility(quiet(seed=12))
    assert (random.random(), float(np.random.rand()), torch.rand(2).tolist()) != draws[0]


def test_streams_are_independent_and_stable(tmp_path):
    repro: Repro = setup_reproducibility(quiet(seed=9))
    a = torch.rand(3, generator=repro.generator("model"))
    repro.generator("something-new")  # adding a stream never shifts another
    assert torch.equal(torch.rand(3, generator=repro.generator("model")), a)
    assert not torch.equal(torch.rand(3, generator=repro.generator("data")), a)
    # Stream seeds are the same in any process, whatever its hash seed.
    code = "from repro.core.seeding import derive_seed; print(derive_seed(9, 'model'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env=dict(os.environ, PYTHONHASHSEED=h),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in ("1", "2")
    }
    assert outs == {f"{repro.seed_for('model')}\n"}


def test_scope_is_independent_of_earlier_draws_and_restores_state():
    repro = setup_reproducibility(quiet(seed=9))
    with repro.scope("model"):
        first = torch.nn.Linear(4, 4).weight.detach().clone()
    after = torch.rand(2)
    repro = setup_reproducibility(quiet(seed=9))
    torch.rand(100)  # draws before the scope must not matter inside it
    with repro.scope("model"):
        assert torch.equal(torch.nn.Linear(4, 4).weight, first)
    setup_reproducibility(quiet(seed=9))
    with repro.scope("model"):
        torch.rand(5)
    assert torch.equal(torch.rand(2), after)  # the block did not shift the global stream


PIN_SCRIPT = textwrap.dedent("""
    import sys, warnings
    from repro import ReproConfig, setup_reproducibility, EnvironmentPinError
    mode = sys.argv[1]
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = setup_reproducibility(ReproConfig(deterministic=mode, pythonhashseed=0))
        s = r.report.get("env.PYTHONHASHSEED")
        print("took_effect" if s.took_effect else "not_in_effect", len([x for x in w if "PYTHONHASHSEED" in str(x.message)]), s.applied)
    except EnvironmentPinError as e:
        print("error", e)
""")


@pytest.mark.parametrize(
    ("shell_seed", "mode", "expected"),
    [
        ("123", "strict", "error"),
        (
            "123",
            "warn",
            "not_in_effect 1 123",
        ),  # the report says what is in effect, not what was written
        ("0", "strict", "took_effect 0 0"),
    ],
)
def test_pythonhashseed_set_too_late_is_caught(shell_seed, mode, expected):
    env = clean_env()
    env["PYTHONHASHSEED"] = shell_seed
    out = subprocess.run(
        [sys.executable, "-c", PIN_SCRIPT, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.startswith(expected), out
    if expected == "error":
        # says how to launch correctly
        assert "env.PYTHONHASHSEED" in out and "`PYTHONHASHSEED=0 " in out


@pytest.mark.slow
def test_main_job_relaunches_with_its_pins(fixture_run):
    """The shell's PYTHONHASHSEED differs from the profile's: the entry point re-executes with the pin."""
    run = fixture_run("r", "train.max_steps=2", env={"PYTHONHASHSEED": "123"})
    setting = run.manifest["determinism"]["settings"]["env.PYTHONHASHSEED"]
    assert setting == {"requested": "0", "applied": "0", "took_effect": True, "note": ""}


@pytest.mark.parametrize(("mode", "warn_only"), [(True, False), (True, True), (False, False)])
def test_fast_deterministic_switch_reads_back_and_skips_inductor(mode, warn_only):
    # In a fresh process: this one imported inductor already (the fixture's public call).
    code = textwrap.dedent(f"""
        import os, sys, torch
        from repro.core.determinism import private_switch_allowed, set_deterministic_algorithms
        assert private_switch_allowed(), (
            f"torch {{torch.__version__}} is not in PRIVATE_SWITCH_TESTED (or dropped "
            "torch._C._set_deterministic_algorithms): the kit takes the public call (about a second "
            "slower); add the release once this test passes on it")
        set_deterministic_algorithms({mode}, warn_only={warn_only})
        assert torch.are_deterministic_algorithms_enabled() is {mode}, "deterministic flag not set"
        assert torch.is_deterministic_algorithms_warn_only_enabled() is {warn_only}, "warn_only not set"
        assert "torch._inductor.config" not in sys.modules, "the fast path imported inductor"
        import torch._inductor.config as inductor_config
        assert inductor_config.deterministic is {mode}, "inductor does not see the flag when imported later"
        set_deterministic_algorithms(not {mode})  # inductor imported now: the public call keeps it in step
        assert torch.are_deterministic_algorithms_enabled() is (not {mode})
        assert inductor_config.deterministic is (not {mode})
        print("ok")
    """)
    env = clean_env()
    env.pop("TORCHINDUCTOR_DETERMINISTIC", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_untested_torch_release_takes_the_public_call(monkeypatch):
    """On a torch release the suite has not run the private switch on, the public call is used."""
    from repro.core import determinism

    assert determinism.private_switch_allowed(torch.__version__)
    assert not determinism.private_switch_allowed("2.99.0+cpu")
    assert not determinism.private_switch_allowed("3.13.0")
    calls = []
    monkeypatch.setattr(determinism, "PRIVATE_SWITCH_TESTED", ())
    monkeypatch.setattr(
        torch, "use_deterministic_algorithms", lambda m, **kw: calls.append((m, kw))
    )
    determinism.set_deterministic_algorithms(True, warn_only=True)
    assert calls == [(True, {"warn_only": True})]
