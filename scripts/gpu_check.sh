#!/usr/bin/env bash
# One prepared run of every GPU check, for a session that is lent a GPU machine
# (the `device` tool). Results go to $OUT (or ./gpu-results when OUT is unset):
#   gpu_tests.log    the tests marked `gpu` (strict CUDA training reproduces itself,
#                    CUDA RNG seeding, cuBLAS pin detection, repro.ops bitwise over 50 repeats)
#   bench_ops.txt    repro.ops vs stock ops on CUDA: time and peak-memory ratios
#   bench_fp.txt     fingerprint cost vs the example's step on CUDA
#   audit.txt        `repro audit` of the example on CUDA
# The device image has torch; this script installs only the project's light
# dependencies it may lack, without touching torch.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=python3
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; $PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } > "$OUT/device.txt" 2>&1
# hydra-core/omegaconf may be missing on the device image: install from wheels carried in .whl if present.
if ! $PY -c "import hydra, omegaconf" 2>/dev/null && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
timeout 300 $PY -m pytest -q -p no:cacheprovider -m gpu tests > "$OUT/gpu_tests.log" 2>&1
timeout 200 $PY scripts/bench_ops.py --device cuda > "$OUT/bench_ops.txt" 2>&1
timeout 60 $PY scripts/bench_fingerprint.py --device cuda > "$OUT/bench_fp.txt" 2>&1
timeout 60 $PY -m repro audit train.device=cuda > "$OUT/audit.txt" 2>&1
tail -3 "$OUT/gpu_tests.log"
