"""The fixed workload of ``repro selftest``, run in a fresh process under the portable pins.

It covers the CPU kernels the examples train with: convolutions (forward, both backward passes,
and an inference pass on a batch large enough for NNPACK), batch norm, max and average pooling,
linear layers, an embedding with tied output weights, layer norm, causal
``scaled_dot_product_attention``, GELU, tanh, dropout, cross entropy and an explicit AdamW.
Each stage's tensors are hashed with sha256 over their raw bytes (:func:`digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

#: Bump when the workload or its pins change: references recorded for another version are not compared.
WORKLOAD_VERSION = 2
SEED = 20261129
STEPS = 24
BATCH = 64
#: Environment the workload runs under (what ``repro=portable`` pins for CPU bits).
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
}
#: torch's runtime switches the workload sets (``repro.mkldnn`` / ``repro.nnpack`` in the profile).
FLAGS = {"mkldnn": False, "nnpack": False}
#: Variables that would change the bits under the pins; removed from the workload's environment.
UNSET = (
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "DNNL_DEFAULT_FPMATH_MODE",
    "MKL_ENABLE_INSTRUCTIONS",
)
#: The stages compared, in the order they are computed: key -> what was hashed.
STAGES = {
    "data": "the generated data",
    "init": "the initial weights",
    "step1": "the weights after step 1",
    "final": f"the weights after all {STEPS} steps",
    "eval": "the trained model's outputs in inference (no_grad, eval mode)",
}
#: CPU features worth naming in a confirmation (what ATen, MKL or oneDNN could dispatch on).
FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def digest(named: dict[str, Any]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in the given order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in named.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(bytes(t.reshape(-1).view(torch.uint8).tolist()))
    return h.hexdigest()


def adamw_step(params: list[Any], moments: list[tuple[Any, Any]], step: int) -> None:
    """One AdamW update (lr 1e-2, betas 0.9/0.999, eps 1e-8, weight decay 1e-2), in place.

    Written out rather than torch.optim.AdamW, whose import pulls in torch._dynamo (seconds).
    """
    import torch

    lr, beta1, beta2, eps, decay = 1e-2, 0.9, 0.999, 1e-8, 1e-2
    with torch.no_grad():
        for p, (m, v) in zip(params, moments, strict=True):
            p.mul_(1 - lr * decay)
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v / (1 - beta2**step)).sqrt_().add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**step))


def build_model() -> Any:
    """An image branch (conv, batch norm, pooling) and a token branch (embedding, attention)."""
    import torch
    from torch import nn

    class Workload(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(32, 128),
                nn.Tanh(),
                nn.Linear(128, 4),
            )
            self.embed = nn.Embedding(16, 32)
            self.norm = nn.LayerNorm(32)
            self.qkv = nn.Linear(32, 96)
            self.mlp = nn.Sequential(
                nn.Linear(32, 64), nn.GELU(), nn.Dropout(0.1), nn.Linear(64, 32)
            )

        def forward(self, x: Any, tokens: Any) -> tuple[Any, Any]:
            h = self.embed(tokens)
            q, k, v = self.qkv(self.norm(h)).view(*tokens.shape, 3, 4, 8).unbind(2)
            att = nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            )
            h = h + att.transpose(1, 2).reshape(h.shape)
            h = h + self.mlp(self.norm(h))
            # the output layer shares the embedding's weights
            return self.image(x), h @ self.embed.weight.t()

    torch.manual_seed(SEED)
    return Workload()


def workload(flags: dict[str, bool] | None = None, threads: int | None = 1) -> dict[str, str]:
    """Run the fixed workload in this process and return each stage's hash (see ``STAGES``).

    ``flags`` (default :data:`FLAGS`) and ``threads`` are what the portable profile sets;
    ``scripts/bench_portable.py`` passes others to time them.
    """
    import torch
    from torch import nn

    from repro.core.determinism import set_deterministic_algorithms

    flags = FLAGS if flags is None else flags
    if threads is not None:
        torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = flags["mkldnn"]
    torch.backends.nnpack.set_flags(flags["nnpack"])
    # The kit's own switch (no inductor import on tested torch releases); the worker reports the
    # flag read back.
    set_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(8 * BATCH, 3, 16, 16, generator=g)
    y = torch.randint(0, 4, (8 * BATCH,), generator=g)
    tokens = torch.randint(0, 16, (8 * BATCH, 12), generator=g)
    model = build_model()
    params = list(model.parameters())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    hashes = {
        "data": digest({"x": x, "y": y, "tokens": tokens}),
        "init": digest(model.state_dict()),
    }
    # dropout draws from the global generator
    torch.manual_seed(SEED + 1)
    for step in range(STEPS):
        # eight batches, each used three times
        batch = slice(step % 8 * BATCH, step % 8 * BATCH + BATCH)
        logits, next_token = model(x[batch], tokens[batch, :-1])
        # an explicit reduction over every weight
        penalty = sum(p.pow(2).sum() for p in model.parameters())
        loss = (
            nn.functional.cross_entropy(logits, y[batch])
            + nn.functional.cross_entropy(next_token.flatten(0, 1), tokens[batch, 1:].flatten())
            + 1e-4 * penalty
        )
        for p in params:
            p.grad = None
        loss.backward()
        adamw_step(params, moments, step + 1)
        if step == 0:
            hashes["step1"] = digest(model.state_dict())
    hashes["final"] = digest(model.state_dict())
    model.eval()
    with torch.no_grad():
        logits, next_token = model(x[: 2 * BATCH], tokens[: 2 * BATCH, :-1])
    hashes["eval"] = digest({"logits": logits, "next_token": next_token})
    return hashes


def cpu_info() -> dict[str, Any]:
    """The CPU's model name (with family, model and stepping), vendor and notable features."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                if fields:
                    # the first processor is enough
                    break
                continue
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or fields.get("hardware") or platform.processor() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']}"
        name += f", stepping {fields['stepping']})" if "stepping" in fields else ")"
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": name,
        "vendor": fields.get("vendor_id", "unknown"),
        "features": [f for f in FEATURES if f in flags],
    }


def worker() -> None:
    """The workload process: run it and print what it computed, and where, as one JSON line."""
    import torch

    from repro.core.determinism import nnpack_enabled

    start = time.perf_counter()
    hashes = workload()
    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "build": f"cuda{cuda}" if cuda else f"rocm{hip}" if hip else "cpu",
                "machine": platform.machine(),
                **cpu_info(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "pins": {k: os.environ.get(k) for k in PINS},
                "flags": {
                    "mkldnn": bool(torch.backends.mkldnn.enabled),
                    "nnpack": nnpack_enabled(FLAGS["nnpack"]),
                },
                "python": platform.python_version(),
                "workload": WORKLOAD_VERSION,
                "workload_seconds": round(time.perf_counter() - start, 3),
                "hashes": hashes,
            }
        )
    )
