"""The structured schema of the ``repro`` config group.

The dataclass below is stored in Hydra's ConfigStore as ``repro/schema``;
every profile in ``conf/repro/`` lists it first in its defaults, so a value
of the wrong type or an unknown key fails when Hydra composes the config,
before any run directory exists. Ranges that a type cannot express (a seed
in [0, 2**32-1], workers >= 0) are checked by :func:`validate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

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


class Determinism(str, Enum):
    """How strictly torch must use deterministic kernels."""

    strict = "strict"  # torch.use_deterministic_algorithms(True): raise on a nondeterministic op
    warn = "warn"  # (True, warn_only=True): warn on a nondeterministic op, run it anyway
    off = "off"  # (False): torch picks the fastest kernels


@dataclass
class ReproConfig:
    """Everything that decides whether a rerun gives the same bits.

    Fields left ``None`` are left as the process has them, and the report
    says so.
    """

    #: Master seed in [0, 2**32-1]; ``None`` draws one from OS entropy and records it.
    seed: int | None = 1234
    #: strict / warn / off, see :class:`Determinism`.
    deterministic: Determinism = Determinism.strict
    #: cuDNN autotuning picks kernels by timing: nondeterministic. Refused under strict.
    cudnn_benchmark: bool = False
    #: Allow TF32 (reduced-precision fp32) matmuls and convolutions on GPUs that have it.
    tf32: bool = False
    #: DataLoader worker processes. Results never depend on it.
    num_workers: int = 0
    #: Keep DataLoader workers alive between epochs. Results never depend on it.
    persistent_workers: bool = False
    #: torch intra-op threads (CPU float results depend on it); ``None``: leave as is.
    threads: int | None = None
    #: torch inter-op threads; ``None``: leave as is.
    interop_threads: int | None = None
    #: CUBLAS_WORKSPACE_CONFIG, needed for deterministic cuBLAS (":4096:8" or ":16:8").
    cublas_workspace_config: str | None = ":4096:8"
    #: PYTHONHASHSEED (str/bytes hash order, e.g. set iteration); takes effect at process start.
    pythonhashseed: int | None = DEFAULT_PYTHONHASHSEED
    #: ATEN_CPU_CAPABILITY: which SIMD kernels ATen uses on CPU (default, avx2, avx512, ...).
    cpu_capability: str | None = None
    #: MKL_CBWR: MKL's conditional numerical reproducibility branch (COMPATIBLE, AVX2, ...).
    mkl_cbwr: str | None = None
    #: ONEDNN_MAX_CPU_ISA: the newest instruction set oneDNN (CPU convolutions) may use (AVX2, ...).
    onednn_max_cpu_isa: str | None = None
    #: Process-group backend under torchrun: auto (nccl with CUDA, else gloo), gloo or nccl.
    dist_backend: str = "auto"


@dataclass
class RunConfig:
    """The settings the kit's run object reads (the ``train`` node by default).

    A project's own training schema extends it (``class TrainConfig(RunConfig)``)
    and adds its own keys (batch size, ...). Every field keeps its meaning for
    any experiment.
    """

    #: Passes over the training data.
    epochs: int = 1
    #: Stop after this many optimizer steps (null: run all epochs).
    max_steps: int | None = None
    #: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.
    device: str = "auto"
    #: Write a metrics row of the step metrics every this many steps.
    log_every: int = 10
    #: Write a checkpoint every this many optimizer steps (null: only at the end of each epoch).
    checkpoint_every: int | None = 50
    #: Keep the newest this many checkpoints.
    keep_checkpoints: int = 3
    #: Continue a run: its directory, or ``auto`` (resume hydra.run.dir if it holds a checkpoint, else start).
    resume: str | None = None
    #: Micro-batches whose gradients add up to one optimizer step (1: a step per batch). An epoch's
    #: last window may be shorter; its loss is averaged over the micro-batches it has.
    accumulate_grad_batches: int = 1
    #: Clip the global gradient norm to this value before each optimizer step (null: no clipping).
    gradient_clip_val: float | None = None
    #: Lightning's names: 32-true (float32), bf16-mixed or 16-mixed (autocast in run.autocast(); a
    #: gradient scaler for 16-mixed, saved in checkpoints).
    precision: str = "32-true"
    #: torch.compile the model in run.prepare (inductor, eager random ops; deterministic under strict/warn).
    compile: bool = False
    #: A metric of the epoch rows (e.g. val_acc, train_loss) to keep the best weights by
    #: (checkpoints/best.pt); null: none.
    monitor: str | None = None
    #: min or max: which way train.monitor improves.
    monitor_mode: str = "min"
    #: Stop after this many epochs in a row without an improvement of train.monitor (null: never).
    early_stopping_patience: int | None = None


@dataclass
class CsvLoggerConfig:
    """``logger=csv``: every metrics row as a line of a CSV file (no extra package)."""

    #: The CSV file; a relative path is under the run directory.
    path: str = "logs/metrics.csv"


@dataclass
class TensorBoardLoggerConfig:
    """``logger=tensorboard``: scalars in TensorBoard event files (``pip install -e ".[tensorboard]"``)."""

    #: The event files' directory; a relative path is under the run directory.
    log_dir: str = "logs/tensorboard"


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
    mode: str = "offline"
    #: The W&B project; null: W&B's default. The API key comes from WANDB_API_KEY or ``wandb login``.
    project: str | None = None
    #: The W&B entity (user or team); null: W&B's default.
    entity: str | None = None
    #: The W&B run's name; null: the run directory's name.
    name: str | None = None
    #: Where W&B writes its files; a relative path is under the run directory.
    dir: str = "logs"


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
WANDB_MODES = ("offline", "online", "disabled")
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
        out[str(name)] = typed
    wandb = out.get("wandb")
    if wandb is not None and wandb.mode not in WANDB_MODES:
        raise ConfigValueError("logger.wandb.mode", wandb.mode, ", ".join(WANDB_MODES))
    return out


#: train.precision values (Lightning's names).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")

#: RunConfig keys that may differ when a run is resumed: they change speed or bookkeeping, never the bits.
RUN_RESUME_SAFE_KEYS = ("checkpoint_every", "keep_checkpoints", "resume")
#: repro keys that may differ on resume.
REPRO_RESUME_SAFE_KEYS = ("repro.num_workers", "repro.persistent_workers")
#: The loggers may differ on resume (and are ignored by a config's hash): they copy metrics, never
#: change the bits.
LOGGER_RESUME_SAFE_KEYS = ("logger",)


def split_override(arg: str) -> tuple[str, str]:
    """The one parser of a ``key=value`` override: the key without ``+``/``++``/``~``, and the value."""
    key, _, value = arg.partition("=")
    return key.lstrip("+~"), value


def override_key(arg: str) -> str:
    """The key an override sets (``+train.x=1`` -> ``train.x``)."""
    return split_override(arg)[0]


def resume_safe_keys(node: str = "train", extra: Any = ()) -> tuple[str, ...]:
    """Keys that may differ when a run is resumed: the kit's own plus a project's ``extra``."""
    return (
        *REPRO_RESUME_SAFE_KEYS,
        *LOGGER_RESUME_SAFE_KEYS,
        *(f"{node}.{k}" for k in RUN_RESUME_SAFE_KEYS),
        *extra,
    )


def validate_run_config(node: Any, prefix: str = "train") -> RunConfig:
    """The kit's run settings from ``node`` (typed), with ranges checked; raises ConfigValueError."""
    import math
    import re

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
    checks = [
        ("epochs", rc.epochs >= 1, "an int >= 1"),
        ("max_steps", rc.max_steps is None or rc.max_steps >= 1, "an int >= 1 or null"),
        ("log_every", rc.log_every >= 1, "an int >= 1"),
        (
            "checkpoint_every",
            rc.checkpoint_every is None or rc.checkpoint_every >= 1,
            "an int >= 1 or null",
        ),
        ("keep_checkpoints", rc.keep_checkpoints >= 1, "an int >= 1"),
        (
            "accumulate_grad_batches",
            1 <= rc.accumulate_grad_batches <= 1_000_000,
            "an int in [1, 1000000]",
        ),
        (
            "gradient_clip_val",
            rc.gradient_clip_val is None
            or (math.isfinite(rc.gradient_clip_val) and rc.gradient_clip_val > 0),
            "a finite float > 0 or null",
        ),
        ("precision", rc.precision in PRECISIONS, ", ".join(PRECISIONS)),
        ("monitor_mode", rc.monitor_mode in ("min", "max"), "min or max"),
        (
            "early_stopping_patience",
            rc.early_stopping_patience is None or rc.early_stopping_patience >= 1,
            "an int >= 1 or null",
        ),
        (
            "early_stopping_patience",
            rc.early_stopping_patience is None or bool(rc.monitor),
            f"null while {prefix}.monitor is null (set {prefix}.monitor to the metric to watch)",
        ),
        (
            "device",
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", rc.device) is not None,
            "auto, cpu, cuda or cuda:N",
        ),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise ConfigValueError(f"{prefix}.{key}", getattr(rc, key), allowed)
    return rc


#: Config key -> environment variable, for the pins that must be in place before
#: the process (or CUDA, or the first CPU kernel) starts.
ENV_PINS: dict[str, str] = {
    "pythonhashseed": "PYTHONHASHSEED",
    "cublas_workspace_config": "CUBLAS_WORKSPACE_CONFIG",
    "cpu_capability": "ATEN_CPU_CAPABILITY",
    "mkl_cbwr": "MKL_CBWR",
    "onednn_max_cpu_isa": "ONEDNN_MAX_CPU_ISA",
}


#: Environment variables that change numerics: recorded with every run, and re-applied by a replay.
NUMERICS_ENV = (
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "KMP_DETERMINISTIC_REDUCTION",
    "NVIDIA_TF32_OVERRIDE",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
)
#: Variables that say where and how a run ran: recorded, never re-applied (they belong to the machine).
PLACEMENT_ENV = (
    "OPENBLAS_CORETYPE",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "CUDNN_DETERMINISTIC",
    "TORCH_CUDNN_V8_API_DISABLED",
    "PYTORCH_CUDA_ALLOC_CONF",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
)
#: Everything the environment fingerprint records.
RECORDED_ENV = NUMERICS_ENV + PLACEMENT_ENV


def wanted_environment(rc: ReproConfig) -> dict[str, str]:
    """The environment variables ``rc`` pins (those left null are absent)."""
    env = {}
    for key, var in ENV_PINS.items():
        value = getattr(rc, key)
        if value is not None:
            text = str(value)
            if key == "cpu_capability":
                text = text.lower()  # ATen compares lower case
            elif key in ("mkl_cbwr", "onednn_max_cpu_isa"):
                text = text.upper()
            env[var] = text
    return env


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore: ``repro/schema``, and ``logger/<name>_schema`` for each
    logger (a project's ``conf/logger/csv.yaml`` lists ``csv_schema@csv`` first). Idempotent."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(group="repro", name="schema", node=ReproConfig)
    for name, schema in LOGGER_SCHEMAS.items():
        cs.store(group="logger", name=f"{name}_schema", node=schema)


def to_repro_config(cfg: Any) -> ReproConfig:
    """Turn the whole config, its ``repro`` node, a mapping or a ReproConfig into a ReproConfig.

    Type errors raise :class:`ConfigValueError` naming the key.
    """
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
        field = next((f for f in dataclasses.fields(ReproConfig) if f.name == key), None)
        why = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigValueError(
            f"repro.{key}" if key else "repro",
            cfg.get(key) if key else cfg,
            f"{field.type}" + f" ({why})" if field is not None else why,
        ) from None
    assert isinstance(typed, ReproConfig)
    return typed


def max_parallelism() -> int:
    """The most loader workers or threads a config may ask for: a few times the CPU count."""
    import os

    return max(8, 4 * (os.cpu_count() or 1))


def validate(rc: ReproConfig) -> ReproConfig:
    """Check ranges a type cannot express. Returns ``rc``; raises ConfigValueError."""
    if rc.seed is not None and not (isinstance(rc.seed, int) and 0 <= rc.seed <= SEED_MAX):
        raise ConfigValueError("repro.seed", rc.seed, f"an int in [0, {SEED_MAX}] or null")
    limit = max_parallelism()
    if not 0 <= rc.num_workers <= limit:
        raise ConfigValueError(
            "repro.num_workers",
            rc.num_workers,
            f"an int in [0, {limit}] (4 per CPU of this machine, at least 8)",
        )
    for key in ("threads", "interop_threads"):
        value = getattr(rc, key)
        if value is not None and not 1 <= value <= limit:
            raise ConfigValueError(
                f"repro.{key}",
                value,
                f"an int in [1, {limit}] (4 per CPU of this machine, at least 8) or null",
            )
    if rc.cudnn_benchmark and rc.deterministic == Determinism.strict:
        raise ConfigValueError(
            "repro.cudnn_benchmark",
            True,
            "false under repro.deterministic=strict (benchmarking picks kernels by timing); "
            "use repro.deterministic=warn or off to allow it",
        )
    if rc.pythonhashseed is not None and not (0 <= rc.pythonhashseed <= SEED_MAX):
        raise ConfigValueError(
            "repro.pythonhashseed", rc.pythonhashseed, f"an int in [0, {SEED_MAX}] or null"
        )
    if rc.cpu_capability is not None and rc.cpu_capability.lower() not in CPU_CAPABILITIES:
        raise ConfigValueError(
            "repro.cpu_capability", rc.cpu_capability, f"null or one of {list(CPU_CAPABILITIES)}"
        )
    if (
        rc.mkl_cbwr is not None
        and rc.mkl_cbwr.upper().removesuffix(",STRICT") not in MKL_CBWR_BRANCHES
    ):
        raise ConfigValueError(
            "repro.mkl_cbwr",
            rc.mkl_cbwr,
            f"null or one of {list(MKL_CBWR_BRANCHES)}, optionally with ',STRICT'",
        )
    if rc.onednn_max_cpu_isa is not None and rc.onednn_max_cpu_isa.upper() not in ONEDNN_ISAS:
        raise ConfigValueError(
            "repro.onednn_max_cpu_isa", rc.onednn_max_cpu_isa, f"null or one of {list(ONEDNN_ISAS)}"
        )
    if rc.dist_backend not in ("auto", "gloo", "nccl"):
        raise ConfigValueError("repro.dist_backend", rc.dist_backend, "auto, gloo or nccl")
    if rc.cublas_workspace_config is not None and rc.cublas_workspace_config not in (
        ":4096:8",
        ":16:8",
    ):
        raise ConfigValueError(
            "repro.cublas_workspace_config",
            rc.cublas_workspace_config,
            "null, ':4096:8' or ':16:8'",
        )
    return rc


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {"a.b.c": leaf}; lists are leaves."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def diff_trees(a: Any, b: Any, ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every leaf that differs; '<absent>' marks a missing key."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if any(key == i or key.startswith(f"{i}.") for i in ignore):
            continue
        va, vb = fa.get(key, "<absent>"), fb.get(key, "<absent>")
        if va != vb:
            out.append((key, va, vb))
    return out
