"""The schemas of the kit's own config groups: ``repro``, the run settings (``train``) and the loggers.

The dataclasses below are stored in Hydra's ConfigStore (``repro/schema``, ``logger/<name>_schema``);
every profile in ``conf/repro/`` lists its schema first in its defaults, so a value of the wrong type
or an unknown key fails when Hydra composes the config, before any run directory exists. Ranges and
choices a type cannot express (a seed in [0, 2**32-1], workers >= 0) are declared next to each field
with ``Annotated[..., Range(...)]`` / ``OneOf(...)`` and checked by the one validator,
:mod:`repro.base.checks`. Checks that join two fields stay here (:func:`validate`,
:func:`validate_run_config`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from repro.base.checks import InsideRun, OneOf, Range, check_fields, describe
from repro.base.errors import ConfigValueError, MissingPackageError
from repro.base.hashseed import DEFAULT_PYTHONHASHSEED

SEED_MAX = 2**32 - 1
#: Values ATen reads from ATEN_CPU_CAPABILITY (x86: default/avx2/avx512; arm: sve256; power: vsx; s390: zvector).
CPU_CAPABILITIES = ("default", "avx2", "avx512", "sve256", "vsx", "zvector")
#: MKL's conditional numerical reproducibility branches (MKL_CBWR), each optionally with ",STRICT".
MKL_CBWR_BRANCHES = (
    "AUTO",
    "COMPATIBLE",
    "SSE2",
    "SSSE3",
    "SSE4_1",
    "SSE4_2",
    "AVX",
    "AVX2",
    "AVX512",
    "AVX512_E1",
    "AVX512_MIC",
    "AVX512_MIC_E1",
)
#: oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA), oldest first.
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
    "DEFAULT",
)


#: train.precision values (Lightning's names).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
WANDB_MODES = ("offline", "online", "disabled")
#: Said after the range of workers and threads.
_PER_CPU = "4 per CPU of this machine, at least 8"


def max_parallelism() -> int:
    """The most loader workers or threads a config may ask for: a few times the CPU count."""
    return max(8, 4 * (os.cpu_count() or 1))


def _mkl_branch(text: str) -> str:
    return text.upper().removesuffix(",STRICT")


def _device_kind(text: str) -> str:
    return re.sub(r"^cuda:\d+$", "cuda:N", text)


class Determinism(str, Enum):
    """How strictly torch must use deterministic kernels."""

    # torch.use_deterministic_algorithms(True): raise on a nondeterministic op
    strict = "strict"
    # (True, warn_only=True): warn on a nondeterministic op, run it anyway
    warn = "warn"
    # (False): torch picks the fastest kernels
    off = "off"


@dataclass
class ReproConfig:
    """Everything that decides whether a rerun gives the same bits.

    Fields left ``None`` are left as the process has them, and the report
    says so.
    """

    #: Master seed in [0, 2**32-1]; ``None`` draws one from OS entropy and records it.
    seed: Annotated[int | None, Range(0, SEED_MAX)] = 1234
    #: strict / warn / off, see :class:`Determinism`.
    deterministic: Determinism = Determinism.strict
    #: cuDNN autotuning picks kernels by timing: nondeterministic. Refused under strict.
    cudnn_benchmark: bool = False
    #: Allow TF32 (reduced-precision fp32) matmuls and convolutions on GPUs that have it.
    tf32: bool = False
    #: DataLoader worker processes. Results never depend on it.
    num_workers: Annotated[int, Range(0, max_parallelism, note=_PER_CPU)] = 0
    #: Keep DataLoader workers alive between epochs. Results never depend on it.
    persistent_workers: bool = False
    #: torch intra-op threads (CPU float results depend on it); ``None``: leave as is (torchrun: 1 per rank).
    threads: Annotated[int | None, Range(1, max_parallelism, note=_PER_CPU)] = None
    #: torch inter-op threads; ``None``: leave as is.
    interop_threads: Annotated[int | None, Range(1, max_parallelism, note=_PER_CPU)] = None
    #: CUBLAS_WORKSPACE_CONFIG, needed for deterministic cuBLAS (":4096:8" or ":16:8").
    cublas_workspace_config: Annotated[str | None, OneOf(":4096:8", ":16:8")] = ":4096:8"
    #: PYTHONHASHSEED (str/bytes hash order, e.g. set iteration); takes effect at process start.
    pythonhashseed: Annotated[int | None, Range(0, SEED_MAX)] = DEFAULT_PYTHONHASHSEED
    #: ATEN_CPU_CAPABILITY: which SIMD kernels ATen uses on CPU (default, avx2, avx512, ...).
    cpu_capability: Annotated[str | None, OneOf(*CPU_CAPABILITIES, normalize=str.lower)] = None
    #: MKL_CBWR: MKL's conditional numerical reproducibility branch (COMPATIBLE, AVX2, ...).
    mkl_cbwr: Annotated[
        str | None,
        OneOf(*MKL_CBWR_BRANCHES, normalize=_mkl_branch, note="optionally with ',STRICT'"),
    ] = None
    #: ONEDNN_MAX_CPU_ISA: the newest instruction set oneDNN (CPU convolutions) may use (AVX2, ...).
    onednn_max_cpu_isa: Annotated[str | None, OneOf(*ONEDNN_ISAS, normalize=str.upper)] = None
    #: torch.backends.mkldnn.enabled: oneDNN's CPU convolutions (and reduced-precision matmuls);
    #: false runs ATen's own (im2col + BLAS GEMM). ``None``: as torch has it (on).
    mkldnn: bool | None = None
    #: NNPACK's CPU convolutions (forward passes on batches of 16 or more; tiles sized from the
    #: CPU's caches); false runs ATen's own. ``None``: as torch has it (on where built).
    nnpack: bool | None = None
    #: Process-group backend under torchrun: auto (nccl with CUDA, else gloo), gloo or nccl.
    dist_backend: Annotated[str, OneOf("auto", "gloo", "nccl")] = "auto"


@dataclass
class RunConfig:
    """The settings the kit's run object reads (the ``train`` node by default).

    A project's own training schema extends it (``class TrainConfig(RunConfig)``)
    and adds its own keys (batch size, ...). Every field keeps its meaning for
    any experiment.
    """

    #: Passes over the training data.
    epochs: Annotated[int, Range(1)] = 1
    #: Stop after this many optimizer steps (null: run all epochs).
    max_steps: Annotated[int | None, Range(1)] = None
    #: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.
    device: Annotated[str, OneOf("auto", "cpu", "cuda", "cuda:N", normalize=_device_kind)] = "auto"
    #: Write a metrics row of the step metrics every this many steps.
    log_every: Annotated[int, Range(1)] = 10
    #: Write a checkpoint every this many optimizer steps (null: only at the end of each epoch).
    checkpoint_every: Annotated[int | None, Range(1)] = 50
    #: Keep the newest this many checkpoints.
    keep_checkpoints: Annotated[int, Range(1)] = 3
    #: Continue a run: its directory, or ``auto`` (resume hydra.run.dir if it holds a checkpoint, else start).
    resume: str | None = None
    #: Micro-batches whose gradients add up to one optimizer step (1: a step per batch). An epoch's
    #: last window may be shorter; its loss is averaged over the micro-batches it has.
    accumulate_grad_batches: Annotated[int, Range(1, 1_000_000)] = 1
    #: Clip the global gradient norm to this value before each optimizer step (null: no clipping).
    gradient_clip_val: Annotated[float | None, Range(gt=0)] = None
    #: Lightning's names: 32-true (float32), bf16-mixed or 16-mixed (autocast in run.autocast(); a
    #: gradient scaler for 16-mixed, saved in checkpoints).
    precision: Annotated[str, OneOf(*PRECISIONS)] = "32-true"
    #: torch.compile the model in run.prepare (inductor, eager random ops; deterministic under strict/warn).
    compile: bool = False
    #: ddp (whole replicas) or fsdp (FSDP2: parameters, gradients and optimizer state sharded across
    #: ranks, checkpoints written by every rank through DCP); one process runs unsharded either way.
    strategy: Annotated[str, OneOf("ddp", "fsdp")] = "ddp"
    #: A metric of the epoch rows (e.g. val_acc, train_loss) to keep the best weights by
    #: (checkpoints/best.pt); null: none.
    monitor: str | None = None
    #: min or max: which way train.monitor improves.
    monitor_mode: Annotated[str, OneOf("min", "max")] = "min"
    #: Stop after this many epochs in a row without an improvement of train.monitor (null: never).
    early_stopping_patience: Annotated[int | None, Range(1)] = None
    #: Exit 0 when a resume's self-check finds it not exact (the run still completes and records
    #: resume_exact: false); false: such a resume fails the command after the run is recorded.
    accept_inexact_resume: bool = False


@dataclass
class CsvLoggerConfig:
    """``logger=csv``: every metrics row as a line of a CSV file (no extra package)."""

    #: The CSV file, inside the run directory (a relative path without '..').
    path: Annotated[str, InsideRun()] = "logs/metrics.csv"


@dataclass
class TensorBoardLoggerConfig:
    """``logger=tensorboard``: scalars in TensorBoard event files (``pip install -e ".[tensorboard]"``)."""

    #: The event files' directory, inside the run directory (a relative path without '..').
    log_dir: Annotated[str, InsideRun()] = "logs/tensorboard"


@dataclass
class MLflowLoggerConfig:
    """``logger=mlflow``: metrics in an MLflow run (``pip install -e ".[mlflow]"``)."""

    #: An MLflow tracking URI (http://..., databricks, ...); null: a file store in the run directory
    #: (logs/mlflow). Credentials belong in MLFLOW_TRACKING_USERNAME/PASSWORD, not here.
    tracking_uri: str | None = None
    #: The MLflow experiment the run goes to (created when missing).
    experiment_name: str = "repro"
    #: The MLflow run's name; null: the run directory's name.
    run_name: str | None = None


@dataclass
class WandbLoggerConfig:
    """``logger=wandb``: metrics in a Weights & Biases run (``pip install -e ".[wandb]"``)."""

    #: offline (files under the run directory, ``wandb sync`` later), online or disabled.
    mode: Annotated[str, OneOf(*WANDB_MODES)] = "offline"
    #: The W&B project; null: W&B's default. The API key comes from WANDB_API_KEY or ``wandb login``.
    project: str | None = None
    #: The W&B entity (user or team); null: W&B's default.
    entity: str | None = None
    #: The W&B run's name; null: the run directory's name.
    name: str | None = None
    #: Where W&B writes its files, inside the run directory (a relative path without '..').
    dir: Annotated[str, InsideRun()] = "logs"


#: The loggers the kit has (``logger=NAME``), with their schemas.
LOGGER_SCHEMAS: dict[str, type] = {
    "csv": CsvLoggerConfig,
    "tensorboard": TensorBoardLoggerConfig,
    "mlflow": MLflowLoggerConfig,
    "wandb": WandbLoggerConfig,
}
#: Config groups of which a command line may select several options at once (``logger=[csv,mlflow]``):
#: each option writes its own key, so nothing is merged over anything else.
MULTI_OPTION_GROUPS = ("logger",)
#: logger -> (the module it imports, the pip extra that installs it); csv needs nothing.
LOGGER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


def check_logger_packages(names: Any) -> None:
    """Raise MissingPackageError, naming ``logger=NAME``, the package and the extra, for a logger whose
    package is not installed. Imports nothing (``find_spec``), so it runs before any file is written."""
    import importlib.util

    for name in names:
        module, extra = LOGGER_PACKAGES.get(name, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            raise MissingPackageError(
                f"logger={name} needs the {module} package, which is not installed: "
                f'pip install -e ".[{extra}]" (or choose another logger, e.g. logger=csv)'
            )


def logger_configs(node: Any) -> dict[str, Any]:
    """The typed settings of each logger in the ``logger`` node (``{}``/null: none), in config order.

    Raises ConfigValueError naming the key for an unknown logger or a bad value."""
    from omegaconf import DictConfig, OmegaConf

    if node is None:
        return {}
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(plain, dict):
        raise ConfigValueError("logger", plain, "a mapping of logger names to their settings")
    out: dict[str, Any] = {}
    for name, values in plain.items():
        schema = LOGGER_SCHEMAS.get(str(name))
        if schema is None:
            raise ConfigValueError(f"logger.{name}", values, f"one of {', '.join(LOGGER_SCHEMAS)}")
        try:
            typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values or {}))
        except Exception as exc:
            key = str(getattr(exc, "full_key", "") or "").split(".")[-1]
            why = str(getattr(exc, "msg", exc)).splitlines()[0]
            where = f"logger.{name}.{key}" if key else f"logger.{name}"
            raise ConfigValueError(
                where, (values or {}).get(key), f"a valid value ({why})"
            ) from None
        check_fields(typed, schema, f"logger.{name}")
        out[str(name)] = typed
    return out


def validate_run_config(node: Any, prefix: str = "train") -> RunConfig:
    """The kit's run settings from ``node`` (typed), with ranges checked; raises ConfigValueError."""
    from omegaconf import DictConfig, OmegaConf

    known = {f.name for f in dataclasses.fields(RunConfig)}
    plain = (
        OmegaConf.to_container(node, resolve=True)
        if isinstance(node, DictConfig)
        else dict(node or {})
    )
    values = {k: v for k, v in plain.items() if k in known}
    try:
        rc = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), values))
    except Exception as exc:
        key = str(getattr(exc, "full_key", "") or "").split(".")[-1]
        why = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigValueError(
            f"{prefix}.{key}" if key else prefix, values.get(key), f"a valid value ({why})"
        ) from None
    assert isinstance(rc, RunConfig)
    check_fields(rc, RunConfig, prefix)
    if rc.early_stopping_patience is not None and not rc.monitor:
        raise ConfigValueError(
            f"{prefix}.early_stopping_patience",
            rc.early_stopping_patience,
            f"null while {prefix}.monitor is null (set {prefix}.monitor to the metric to watch)",
        )
    return rc


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore: ``repro/schema``, and ``logger/<name>_schema`` for each
    logger (a project's ``conf/logger/csv.yaml`` lists ``csv_schema@csv`` first). Idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="repro", name="schema", node=ReproConfig)
    for name, schema in LOGGER_SCHEMAS.items():
        cs.store(group="logger", name=f"{name}_schema", node=schema)


#: ReproConfig's annotations, markers included (to say what a field allows).
_HINTS: dict[str, Any] = {}


def to_repro_config(cfg: Any) -> ReproConfig:
    """Turn the whole config, its ``repro`` node, a mapping or a ReproConfig into a ReproConfig.

    Type errors raise :class:`ConfigValueError` naming the key.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, ReproConfig):  # re-check the types a dataclass does not enforce
        cfg = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(ReproConfig)}
        if isinstance(cfg["deterministic"], Determinism):
            cfg["deterministic"] = cfg["deterministic"].value
    if isinstance(cfg, DictConfig | dict) and "repro" in cfg:
        cfg = cfg["repro"]
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, dict):
        raise ConfigValueError("repro", cfg, "a config holding a 'repro' node, or that node")
    known = {f.name for f in dataclasses.fields(ReproConfig)}
    for key in cfg:
        if key not in known:
            raise ConfigValueError(f"repro.{key}", cfg[key], f"one of the keys {sorted(known)}")
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ReproConfig), cfg))
    except Exception as exc:  # omegaconf.ValidationError and friends
        key = str(getattr(exc, "full_key", "") or "").split(".")[-1]
        hint = _HINTS.get(key) if key else None
        why = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigValueError(
            f"repro.{key}" if key else "repro",
            cfg.get(key) if key else cfg,
            f"{describe(hint)} ({why})" if hint is not None else why,
        ) from None
    assert isinstance(typed, ReproConfig)
    return typed


_HINTS.update(typing.get_type_hints(ReproConfig, include_extras=True))


def validate(rc: ReproConfig) -> ReproConfig:
    """Check the ranges and choices declared on :class:`ReproConfig`'s fields, and the rules that
    join two of them. Returns ``rc``; raises ConfigValueError."""
    check_fields(rc, ReproConfig, "repro")
    if rc.persistent_workers and rc.num_workers == 0:
        raise ConfigValueError(
            "repro.persistent_workers",
            True,
            "false while repro.num_workers=0 (there are no workers to keep alive); set "
            "repro.num_workers to 1 or more, or repro.persistent_workers=false",
        )
    if rc.cudnn_benchmark and rc.deterministic == Determinism.strict:
        raise ConfigValueError(
            "repro.cudnn_benchmark",
            True,
            "false under repro.deterministic=strict (benchmarking picks kernels by timing); "
            "use repro.deterministic=warn or off to allow it",
        )
    return rc
