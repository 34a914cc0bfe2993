#!/usr/bin/env bash
# One prepared run of every GPU check, for a session that is lent a GPU machine (the `device` tool).
# It answers on CUDA what the CPU tests answer here. Results go to $OUT (or ./gpu-results):
#   summary.txt      one line per check: PASS/FAIL and the figures (read this first)
#   device.txt       GPU name, driver, torch and CUDA versions
#   gpu_tests.log    tests marked `gpu`: strict CUDA rerun of the fixture, CUDA RNG seeding, cuBLAS pin
#                    detection, repro.ops replacements bitwise over repeats (and the stock op where it
#                    no longer refuses strict mode), the OpInfo samples on CUDA run twice and compared
#   opinfo_cuda.md   the measured agreement table of repro.ops on CUDA
#   runs.log         the example runs behind summary.txt (rerun, workers, SIGKILL + resume, strict vs off;
#                    bf16-mixed, 16-mixed and compile reruns, 16-mixed SIGKILL + resume; FSDP2 on 2 GPUs)
#   bench_ops.txt    repro.ops vs stock on CUDA: time and peak-memory ratios
# The device image has torch. hydra-core, omegaconf and expecttest may be missing: carry their wheels
# in .whl (see the device tool's README) and they are installed to /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NO_COLOR=1
PY=python3
if ! $PY -c "import hydra, omegaconf, expecttest" 2>/dev/null && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD/tests/fixture:${PYTHONPATH:-}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } \
  > "$OUT/device.txt" 2>&1

# The examples on CUDA (GPU_CHECK_DEVICE=cpu tries it here): rerun, workers 0/2, SIGKILL + resume (the classifier,
# the regression and the language model), strict vs off (about 3 minutes).
timeout 420 $PY - > "$OUT/summary.txt" 2> "$OUT/runs.log" <<'EOF'
import json, os, subprocess, sys, tempfile
from pathlib import Path

root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
device = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # cpu: to try this script without a GPU

def run(name, *overrides, extra_env=None):
    d = root / name
    p = subprocess.run([sys.executable, "-m", "experiment.train", f"hydra.run.dir={d}", f"train.device={device}",
                        *overrides], env={**env, **(extra_env or {})}, capture_output=True, text=True)
    sys.stderr.write(f"== {name} rc={p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}\n")
    return d, p.returncode

def manifest(d):
    return json.loads((d / "run.json").read_text())

def fps(d):
    return (d / "fingerprints.jsonl").read_text()

def check(label, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {label}  {detail}".rstrip(), flush=True)

SMALL = {"quick": [], "regress": ["data.train_size=512"],
         # the language model: embedding backward and causal attention on CUDA under strict
         "lm": ["data.train_chars=40000", "data.val_chars=4000"]}
for exp in ("quick", "regress", "lm"):
    base = [f"experiment={exp}", "train.epochs=2"] + SMALL[exp]
    a, _ = run(f"{exp}-a", *base)
    b, _ = run(f"{exp}-b", *base)
    w, _ = run(f"{exp}-workers2", *base, "repro.num_workers=2")
    ma = manifest(a)
    check(f"{exp}: rerun identical under strict", fps(a) == fps(b) and ma["weights_sha256"] == manifest(b)["weights_sha256"],
          ma["weights_sha256"][:16])
    check(f"{exp}: workers 0 and 2 identical", fps(a) == fps(w))
    k, rc = run(f"{exp}-killed", *base, "train.checkpoint_every=5", extra_env={"REPRO_FAULT_KILL_AT_STEP": "7"})
    r, rc2 = run(f"{exp}-killed", *base, "train.checkpoint_every=5", "train.resume=auto")
    mk = manifest(k)
    check(f"{exp}: SIGKILL + resume identical", rc == -9 and rc2 == 0 and mk["weights_sha256"] == ma["weights_sha256"]
          and mk.get("resume_exact") is True, f"kill rc={rc}, resume rc={rc2}, resume_exact={mk.get('resume_exact')}")

# Throughput: the default example, strict vs nondeterministic kernels (same data and model).
times = {}
for mode in ("strict", "off", "strict", "off"):
    d, _ = run(f"speed-{mode}-{len(times)}", "train.epochs=4", f"repro.deterministic={mode}", "repro.cudnn_benchmark=false")
    times.setdefault(mode, []).append(manifest(d)["wall_time_s"])
s, o = min(times["strict"]), min(times["off"])
check("strict vs off training time", True, f"strict {s:.2f} s, off {o:.2f} s, ratio {s / o:.3f}")
EOF

# Mixed precision and compile on CUDA (GPU_CHECK_DEVICE=cpu tries it here): each reruns to the same bits
# under strict, and 16-mixed (its grad scaler in the checkpoint) resumes exactly after a SIGKILL.
timeout 420 $PY - >> "$OUT/summary.txt" 2>> "$OUT/runs.log" <<'EOF'
import json, os, subprocess, sys, tempfile
from pathlib import Path

root = Path(tempfile.mkdtemp(prefix="gpu-check-amp-"))
env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
device = os.environ.get("GPU_CHECK_DEVICE", "cuda")
base = ["experiment=quick", "train.epochs=1", f"train.device={device}", "train.checkpoint_every=3"]

def run(name, *overrides, extra_env=None):
    d = root / name
    p = subprocess.run([sys.executable, "-m", "experiment.train", f"hydra.run.dir={d}", *base, *overrides],
                       env={**env, **(extra_env or {})}, capture_output=True, text=True)
    sys.stderr.write(f"== {name} rc={p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}\n")
    return d, p.returncode

def result(d):
    try:
        return json.loads((d / "run.json").read_text()).get("weights_sha256"), (d / "fingerprints.jsonl").read_text()
    except OSError:
        return None, None

def check(label, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {label}  {detail}".rstrip(), flush=True)

for name, overrides in (("bf16-mixed", ["train.precision=bf16-mixed"]),
                        ("16-mixed", ["train.precision=16-mixed", "train.gradient_clip_val=1.0"]),
                        ("compile", ["train.compile=true"])):
    a, rc_a = run(f"{name}-a", *overrides)
    b, rc_b = run(f"{name}-b", *overrides)
    (wa, fa), (wb, fb) = result(a), result(b)
    check(f"{name}: rerun identical under strict", rc_a == rc_b == 0 and wa is not None and (wa, fa) == (wb, fb),
          f"rc {rc_a}/{rc_b} {(wa or '')[:16]}")
    if name == "16-mixed":
        k, rc = run(f"{name}-killed", *overrides, extra_env={"REPRO_FAULT_KILL_AT_STEP": "5"})
        _, rc2 = run(f"{name}-killed", *overrides, "train.resume=auto")
        check(f"{name}: SIGKILL + resume identical", rc == -9 and rc2 == 0 and result(k) == (wa, fa),
              f"kill rc={rc}, resume rc={rc2}")
EOF

# FSDP2 on NCCL when the machine has 2 GPUs (skipped with one): train.strategy=fsdp reruns to the same bits,
# and a SIGKILL + resume from its DCP shards gives them too. GPU_CHECK_FSDP_DEVICE=cpu tries it with gloo.
timeout 300 $PY - >> "$OUT/summary.txt" 2>> "$OUT/runs.log" <<'EOF'
import json, os, subprocess, sys, tempfile
from pathlib import Path

import torch

device = os.environ.get("GPU_CHECK_FSDP_DEVICE", "cuda")
if device == "cuda" and torch.cuda.device_count() < 2:
    print(f"SKIP  fsdp on NCCL: {torch.cuda.device_count()} GPU(s), it needs 2", flush=True)
    sys.exit(0)
root = Path(tempfile.mkdtemp(prefix="gpu-check-fsdp-"))
env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
base = ["experiment=quick", "train.epochs=2", "train.checkpoint_every=5", "train.strategy=fsdp",
        f"train.device={device}"]

def run(name, *overrides, extra_env=None):
    d = root / name
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "experiment.train", f"hydra.run.dir={d}", *base, *overrides],
                       env={**env, **(extra_env or {})}, capture_output=True, text=True)
    sys.stderr.write(f"== fsdp {name} rc={p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}\n")
    try:
        m = json.loads((d / "run.json").read_text())
        return m.get("weights_sha256"), (d / "fingerprints.jsonl").read_text(), m.get("resume_exact")
    except OSError:
        return None, None, None

def check(label, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {label}  {detail}".rstrip(), flush=True)

a, b = run("a"), run("b")
check("fsdp (2 ranks): rerun identical under strict", a[0] is not None and a[:2] == b[:2], (a[0] or "")[:16])
run("killed", extra_env={"REPRO_FAULT_KILL_AT_STEP": "7"})
k = run("killed", "train.resume=auto")
check("fsdp (2 ranks): SIGKILL + resume identical", k[:2] == a[:2] and k[2] is True, f"resume_exact={k[2]}")
EOF
cat "$OUT/summary.txt"

# -o addopts: the project runs its suite with pytest-xdist (-n auto), which the device image may lack.
timeout 300 $PY -m pytest -q -o addopts="-ra --strict-markers" -p no:cacheprovider -m gpu tests > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests: $(tail -1 "$OUT/gpu_tests.log")" | tee -a "$OUT/summary.txt"
timeout 120 $PY tests/ops/opinfo.py cuda > "$OUT/opinfo_cuda.md" 2>&1
timeout 150 $PY scripts/bench_ops.py --device cuda > "$OUT/bench_ops.txt" 2>&1
echo "done: $(date -u +%H:%M:%S)" >> "$OUT/summary.txt"
