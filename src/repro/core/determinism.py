"""Backend flags and process-environment pins, applied and read back.

Every setting is applied, then read back from torch or the process, so the
report states what actually holds rather than what was asked for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from repro.base import startup
from repro.base.config import Determinism, ReproConfig
from repro.base.envvars import ENV_PINS, wanted_environment
from repro.base.errors import EnvironmentPinError
from repro.core.threads import intra_op_threads


@dataclass
class Setting:
    """One flag or variable: what was asked, what holds now, and whether it took effect."""

    name: str
    requested: Any
    applied: Any
    took_effect: bool
    note: str = ""


@dataclass
class DeterminismReport:
    """What :func:`apply` did, flag by flag."""

    mode: str
    settings: list[Setting] = field(default_factory=list)
    #: Started in a running interpreter (notebook, script) without the entry point's relaunch.
    in_process: bool = False

    def add(
        self,
        name: str,
        requested: Any,
        applied: Any,
        took_effect: bool | None = None,
        note: str = "",
    ) -> None:
        ok = (requested == applied) if took_effect is None else took_effect
        self.settings.append(Setting(name, requested, applied, ok, note))

    @property
    def failed(self) -> list[Setting]:
        return [s for s in self.settings if not s.took_effect]

    def get(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "all_took_effect": not self.failed,
            "in_process": self.in_process,
            "settings": {
                s.name: {k: v for k, v in asdict(s).items() if k != "name"} for s in self.settings
            },
        }


def _hash_seed_holds(want: int) -> bool:
    """Whether this interpreter hashes str/bytes with PYTHONHASHSEED=want."""
    if want == 0:
        return sys.flags.hash_randomization == 0
    probe = "repro-hash-probe"
    env = dict(os.environ, PYTHONHASHSEED=str(want))
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"print(hash({probe!r}))"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return out.stdout.strip() == str(hash(probe))


def apply_environment(rc: ReproConfig, report: DeterminismReport) -> None:
    """Set the pinned environment variables and record what is actually in effect for each."""
    cuda_started = torch.cuda.is_available() and torch.cuda.is_initialized()
    for key, var in ENV_PINS.items():
        value = getattr(rc, key)
        at_start = startup.ENVIRON.get(var)
        if value is None:
            report.add(
                f"env.{var}", None, at_start, True, "not pinned: left as the process started"
            )
            continue
        want = wanted_environment(rc)[var]
        before = os.environ.get(var)
        os.environ[var] = want
        if var == "PYTHONHASHSEED":
            ok = _hash_seed_holds(int(want))
            applied = want if ok else (at_start if at_start is not None else "random")
            note = (
                ""
                if ok
                else "the interpreter started with another hash seed; it is fixed at process start"
            )
        elif var == "CUBLAS_WORKSPACE_CONFIG":
            ok = not (cuda_started and before != want)
            applied = want if ok else before
            note = (
                "CUDA was initialised before it was set"
                if not ok
                else ""
                if torch.cuda.is_available()
                else "no CUDA device: nothing to configure"
            )
        elif var == "ATEN_CPU_CAPABILITY":
            # torch warns about a value it ignores; the report says more
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                applied = torch.backends.cpu.get_cpu_capability().lower()
            ok = applied == want
            if ok:
                note = ""
            elif at_start == want:
                # it was there from the start: the CPU (or this build) cannot do it
                note = (
                    f"this CPU or torch build cannot run {want} kernels (ATen uses {applied}); "
                    f"pin a capability it has, e.g. repro.cpu_capability={applied}"
                )
            else:
                note = "a CPU kernel ran before it was set; it is read once"
        else:  # MKL_CBWR, ONEDNN_MAX_CPU_ISA: read once, when the library starts
            ok = at_start == want
            applied = at_start
            lib = "MKL" if var == "MKL_CBWR" else "oneDNN"
            note = (
                ""
                if ok
                else f"{lib} reads it when it starts; it was not in the environment at process start"
            )
        report.add(f"env.{var}", want, applied, ok, note)


_INITIAL_THREADS = torch.get_num_threads()
#: torch's CPU convolution backends as the process started: a null pin restores them, so a
#: previous job of a sweep cannot leak its setting.
_INITIAL_MKLDNN = bool(torch.backends.mkldnn.enabled)


def nnpack_enabled(value: bool) -> bool:
    """Set NNPACK's switch to ``value`` and read it back (``set_flags`` returns what was set before)."""
    torch.backends.nnpack.set_flags(value)
    return bool(torch.backends.nnpack.set_flags(value)[0])


_INITIAL_NNPACK = bool(torch.backends.nnpack.set_flags(True)[0])
torch.backends.nnpack.set_flags(_INITIAL_NNPACK)


def apply_cpu_backends(rc: ReproConfig, report: DeterminismReport) -> None:
    """Switch oneDNN and NNPACK (CPU kernels that pick their blocking from the CPU) on or off.

    Both are runtime switches: they hold from here on in this process, and each is read back.
    """
    mkldnn = rc.mkldnn if rc.mkldnn is not None else _INITIAL_MKLDNN
    torch.backends.mkldnn.enabled = mkldnn
    applied = bool(torch.backends.mkldnn.enabled)
    report.add(
        "torch.backends.mkldnn.enabled",
        rc.mkldnn,
        applied,
        applied == mkldnn,
        "" if rc.mkldnn is not None else "not pinned: as torch starts",
    )
    nnpack = rc.nnpack if rc.nnpack is not None else _INITIAL_NNPACK
    applied = nnpack_enabled(nnpack)
    note = "" if rc.nnpack is not None else "not pinned: as torch starts"
    if not torch.backends.nnpack.is_available():
        note = (note + "; " if note else "") + "NNPACK is not in this build or CPU: never used"
    report.add("torch.backends.nnpack.enabled", rc.nnpack, applied, applied == nnpack, note)


#: The reduced-precision fp32 switches of torch >= 2.9, by backend and operation.
_FP32_PRECISION = (
    "cuda.matmul",
    "cudnn.conv",
    "cudnn.rnn",
    "mkldnn.matmul",
    "mkldnn.conv",
    "mkldnn.rnn",
)


def _effective_precision(backend: str, op: str) -> str:
    """A new-API precision switch with "none" resolved through its backend and the global default."""
    value = getattr(getattr(torch.backends, backend), op).fp32_precision
    for parent in (getattr(torch.backends, backend), torch.backends):
        if value != "none":
            break
        value = getattr(parent, "fp32_precision", "none")
    return "ieee" if value == "none" else value


def _apply_fp32_precision(tf32: bool, report: DeterminismReport) -> None:
    """Allow or forbid TF32-style fp32 math, and read back every backend's switch.

    The legacy switches keep torch's getters consistent (mixing the old and new
    APIs makes ``torch.get_float32_matmul_precision()`` raise); the new
    per-backend switches (torch >= 2.9) are read back, and one that something
    else set to a reduced precision is forced to ``ieee`` when TF32 is off.
    """
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    report.add(
        "torch.float32_matmul_precision",
        "high" if tf32 else "highest",
        torch.get_float32_matmul_precision(),
    )
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch < 2.9
        report.add(
            "torch.backends.cuda.matmul.allow_tf32", tf32, torch.backends.cuda.matmul.allow_tf32
        )
        report.add("torch.backends.cudnn.allow_tf32", tf32, torch.backends.cudnn.allow_tf32)
        return
    for path in _FP32_PRECISION:
        backend, op = path.split(".")
        if not hasattr(getattr(getattr(torch.backends, backend), op, None), "fp32_precision"):
            continue
        value, note = _effective_precision(backend, op), ""
        if not tf32 and value != "ieee":
            getattr(getattr(torch.backends, backend), op).fp32_precision = "ieee"
            note = f"was {value} (set elsewhere); forced to ieee"
            value = _effective_precision(backend, op)
        if tf32:
            report.add(
                f"torch.backends.{path}.fp32_precision",
                None,
                value,
                True,
                "reduced precision allowed",
            )
        else:
            report.add(f"torch.backends.{path}.fp32_precision", "ieee", value, note=note)


#: Read by ``torch._inductor.config`` when it is imported: its ``deterministic`` default.
_INDUCTOR_ENV = "TORCHINDUCTOR_DETERMINISTIC"
#: torch releases (major.minor) the test suite has run the private switch on; any other release
#: takes the public call. Add a release here only after ``tests/core/test_determinism.py`` passed on it.
PRIVATE_SWITCH_TESTED = ("2.13",)


def private_switch_allowed(version: str | None = None) -> bool:
    """Whether this torch release (``version``, default the one imported) is one the private
    deterministic switch was tested on (:data:`PRIVATE_SWITCH_TESTED`)."""
    release = (version or torch.__version__).split("+")[0]
    return ".".join(release.split(".")[:2]) in PRIVATE_SWITCH_TESTED and hasattr(
        torch._C, "_set_deterministic_algorithms"
    )


def set_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=...)`` without importing inductor.

    The public call imports ``torch._inductor.config`` (about a second) only to
    mirror the flag into inductor's ``deterministic`` setting. On the torch
    releases the suite has run this on (:data:`PRIVATE_SWITCH_TESTED`), while
    inductor is not imported yet, this sets the flag through the C++ switch the
    public call uses and leaves the mirror to ``TORCHINDUCTOR_DETERMINISTIC``,
    which inductor reads when it is first imported (``torch.compile`` later in
    this process, or in a child process, sees the same setting). Otherwise the
    public call is used. The caller reads the flags back;
    ``tests/core/test_determinism.py`` fails if the private switch stops doing
    what the public call does.
    """
    if not private_switch_allowed() or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)
    if mode:
        os.environ[_INDUCTOR_ENV] = "1"
    elif os.environ.get(_INDUCTOR_ENV) == "1":
        # what the public call would leave inductor with
        os.environ[_INDUCTOR_ENV] = "0"


def apply_flags(rc: ReproConfig, report: DeterminismReport) -> None:
    """Set torch's determinism, cuDNN, TF32 and thread settings, then read each back."""
    mode = Determinism(rc.deterministic)
    on = mode != Determinism.off
    set_deterministic_algorithms(on, warn_only=mode == Determinism.warn)
    report.add(
        "torch.use_deterministic_algorithms", on, torch.are_deterministic_algorithms_enabled()
    )
    report.add(
        "torch.deterministic_warn_only",
        mode == Determinism.warn,
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    import torch.utils.deterministic as tud

    tud.fill_uninitialized_memory = True
    report.add(
        "torch.utils.deterministic.fill_uninitialized_memory",
        True,
        bool(tud.fill_uninitialized_memory),
        note="" if on else "inactive: it only acts while deterministic algorithms are on",
    )

    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = rc.cudnn_benchmark
    report.add("torch.backends.cudnn.deterministic", on, torch.backends.cudnn.deterministic)
    report.add("torch.backends.cudnn.benchmark", rc.cudnn_benchmark, torch.backends.cudnn.benchmark)
    _apply_fp32_precision(rc.tf32, report)
    apply_cpu_backends(rc, report)

    # null: as the process started (a sweep's previous job must not leak its pin); torchrun: see threads.py
    threads, note = intra_op_threads(rc.threads, _INITIAL_THREADS, startup.ENVIRON)
    torch.set_num_threads(threads)
    applied = torch.get_num_threads()
    report.add("torch.num_threads", rc.threads, applied, applied == threads, note)
    if rc.interop_threads is not None and torch.get_num_interop_threads() != rc.interop_threads:
        try:
            torch.set_num_interop_threads(rc.interop_threads)
            note = ""
        except RuntimeError:
            note = "inter-op threads can only be set before parallel work starts"
    else:
        note = "" if rc.interop_threads is not None else "not pinned: left as is"
    report.add(
        "torch.num_interop_threads",
        rc.interop_threads,
        torch.get_num_interop_threads(),
        rc.interop_threads is None or torch.get_num_interop_threads() == rc.interop_threads,
        note,
    )


def apply(rc: ReproConfig, *, in_process: bool = False) -> DeterminismReport:
    """Apply every flag and pin in ``rc``; raise or warn about those that could not take effect.

    Under ``strict`` a pin that cannot hold raises :class:`EnvironmentPinError`
    with the way to launch correctly; under ``warn`` and ``off`` it warns and
    the report records it.
    """
    report = DeterminismReport(mode=Determinism(rc.deterministic).value)
    apply_environment(rc, report)
    apply_flags(rc, report)
    if report.failed:
        lines = "; ".join(
            f"{s.name}={s.requested!r} did not take effect ({s.note})" for s in report.failed
        )
        env = " ".join(f"{k}={v}" for k, v in wanted_environment(rc).items())
        late = [
            s
            for s in report.failed
            if s.name.startswith("env.") and startup.ENVIRON.get(s.name[4:]) != s.requested
        ]
        hint = (
            (
                f". Fix: launch through repro.entrypoint (python -m <your project>.train does this), or set "
                f"the environment before Python starts: `{env} python ...`, or null the pin in the repro config"
            )
            if late
            else ""
        )
        if in_process:
            # a notebook or script: nothing can relaunch it; the record says what did not hold
            for s in report.failed:
                s.note = f"in-process run (no relaunch): {s.note}"
            report.in_process = True
            warnings.warn(
                f"in-process run: these pins are not in effect: {lines}",
                RuntimeWarning,
                stacklevel=3,
            )
            return report
        if report.mode == Determinism.strict.value:
            raise EnvironmentPinError(f"{lines}{hint}")
        warnings.warn(
            f"reproducibility pins not in effect: {lines}{hint}", RuntimeWarning, stacklevel=3
        )
    return report
