"""Cost of the per-step fingerprint, as a ratio to the example's training step (same run, same device).

    python scripts/bench_fingerprint.py [--device cpu|cuda] [--steps 200]

Prints: the example step time, the fingerprint time and their ratio (the
goal is <= 2%), then the fingerprint time for larger MLPs to show how it
grows with the parameter count.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from experiment.model import SmallCNN
from repro import tensors_digest
from repro.core.fingerprint import sample_digests, set_digest


def timed(fn, repeats: int, device: torch.device) -> float:
    for _ in range(5):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = SmallCNN(4).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    x = torch.randn(64, 1, 32, 32, device=device)
    y = torch.randint(0, 4, (64,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    step_s = timed(step, args.steps, device)
    digest_s = timed(lambda: tensors_digest(model.named_parameters()), args.steps, device)
    batch_s = timed(lambda: set_digest(sample_digests(x, y)), args.steps, device)
    nparams = sum(p.numel() for p in model.parameters())
    print(
        f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
        f"torch threads: {torch.get_num_threads()}"
    )
    print(f"example step ({nparams:,} params, batch 64): {step_s * 1e3:8.3f} ms")
    print(f"fingerprint of all parameters:            {digest_s * 1e3:8.3f} ms")
    print(f"batch digest (set of 64 samples):         {batch_s * 1e3:8.3f} ms")
    print(
        f"ratio fingerprint / step:                 {(digest_s + batch_s) / step_s:8.2%}  (goal <= 2%)"
    )
    print()
    print(f"{'params':>12} {'fingerprint ms':>15} {'ns / param':>11}")
    for width in (256, 1024, 2048, 4096):
        mlp = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(3)]).to(device)
        n = sum(p.numel() for p in mlp.parameters())
        t = timed(
            lambda m=mlp: tensors_digest(m.named_parameters()), max(5, args.steps // 20), device
        )
        print(f"{n:>12,} {t * 1e3:>15.3f} {t / n * 1e9:>11.3f}")


if __name__ == "__main__":
    main()
