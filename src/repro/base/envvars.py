"""The environment variables that change numerics: the pins a profile sets and the lists every run records.

One list each (a test checks the recorder and the replay use these very tuples).
"""

from __future__ import annotations

from typing import Any

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


def wanted_environment(rc: Any) -> dict[str, str]:
    """The environment variables the :class:`repro.ReproConfig` ``rc`` pins (those left null are absent)."""
    env = {}
    for key, var in ENV_PINS.items():
        value = getattr(rc, key)
        if value is not None:
            text = str(value)
            if key == "cpu_capability":
                # ATen compares lower case
                text = text.lower()
            elif key in ("mkl_cbwr", "onednn_max_cpu_isa"):
                text = text.upper()
            env[var] = text
    return env
