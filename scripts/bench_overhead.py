"""What the kit costs: the example's main job against the same job as a bare PyTorch loop.

    python scripts/bench_overhead.py [--pairs 5] [--quick] [--steps 1000] [--compare SRC] [--micro]

Every measurement is a whole process, and the jobs run interleaved (pair ``i``
runs each job once, in a rotating order), so machine noise hits every job
alike. Reported per job, as ratios to the bare loop of the same pair (median
and min-max over pairs):

* whole process: the wall time of the process, start-up included;
* steady state: the cost of the steps themselves, the whole process less the
  same job's 1-step process (start-up and one-time imports cancel out: the
  first optimizer imports ``torch._dynamo``, seconds on a slow machine, inside
  the bare loop's and the template's training timers but before Lightning's);
* training timer: each job's own timer (``wall_time_s`` in the template's
  ``run.json``; the bare loop's around data, model, epochs with evaluation, a
  checkpoint per epoch, final weights), for reference;
* start-up: a 1-step run of each, and ``python -c "import torch, hydra, numpy"``
  (seconds over the import as well).

Jobs: ``bare`` (written in this file: the same data, model, AdamW + cosine,
epochs, batch size and evaluation, seeded once, ``torch.save`` per epoch, no
kit), ``template`` (``python -m experiment.train``), ``lightning`` (the same
job as a LightningModule, only when ``lightning`` is importable; it is not a
dependency). ``--compare SRC`` adds ``template@SRC``: the template with
another checkout's ``src`` first on PYTHONPATH (e.g. the commit before a
change; the checkout's root is accepted too, and a folder without a ``repro``
package is refused), so before and after are measured in the same invocation.

``--micro`` times the per-step pieces in-process instead (loading one batch,
the step's fingerprint, a checkpoint's blocking time), for this checkout and
for ``--compare SRC`` in alternating subprocesses.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = 1234
TRAIN_SIZE, BATCH = 2048, 64  # conf/data/shapes.yaml, conf/train/default.yaml
STEPS_PER_EPOCH = TRAIN_SIZE // BATCH  # drop_last=True, as in the example's loop


# -- the jobs, run in their own process ----------------------------------------------------------


def inner_bare(epochs: int, max_steps: int | None, out: Path) -> None:
    """The example's default job as a plain PyTorch loop; writes its training time to ``out``."""
    import zlib

    import numpy as np
    import torch
    import torch.nn.functional as F

    from experiment.data import ShapesData
    from experiment.model import SmallCNN

    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    train_set, val_set = ShapesData().build(
        lambda name: np.random.default_rng([SEED, zlib.crc32(name.encode())])
    )
    gen = torch.Generator().manual_seed(SEED)
    train_loader = torch.utils.data.DataLoader(
        train_set, BATCH, shuffle=True, drop_last=True, generator=gen
    )
    val_loader = torch.utils.data.DataLoader(val_set, 256)
    model = SmallCNN(num_classes=4)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=0.02, betas=(0.9, 0.999), weight_decay=0.01
    )
    total = (
        len(train_loader) * epochs
        if max_steps is None
        else min(max_steps, len(train_loader) * epochs)
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total))
    ckpt_dir = out.parent / "bare_ckpt"
    ckpt_dir.mkdir(exist_ok=True)
    step = 0
    for epoch in range(epochs):
        if step >= total:
            break
        model.train()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 10 == 0:
                loss.item()  # what a loop that logs every 10 steps pays
            if step >= total:
                break
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in val_loader)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "acc": correct,
        }
        torch.save(state, ckpt_dir / f"epoch{epoch}.pt")
    torch.save(model.state_dict(), ckpt_dir / "weights.pt")
    out.write_text(json.dumps({"train_s": time.perf_counter() - t0, "steps": step}))


def inner_lightning(
    epochs: int, max_steps: int | None, out: Path
) -> None:  # pragma: no cover - optional
    """The same job as a LightningModule (one checkpoint per epoch, no logger)."""
    import zlib

    import lightning as L
    import numpy as np
    import torch
    import torch.nn.functional as F

    from experiment.data import ShapesData
    from experiment.model import SmallCNN

    t0 = time.perf_counter()
    L.seed_everything(SEED, verbose=False)
    train_set, val_set = ShapesData().build(
        lambda name: np.random.default_rng([SEED, zlib.crc32(name.encode())])
    )
    total = (
        STEPS_PER_EPOCH * epochs if max_steps is None else min(max_steps, STEPS_PER_EPOCH * epochs)
    )

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = SmallCNN(num_classes=4)

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_acc", (self.model(x).argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            opt = torch.optim.AdamW(
                self.parameters(), lr=0.02, betas=(0.9, 0.999), weight_decay=0.01
            )
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = L.Trainer(
        max_epochs=epochs,
        max_steps=-1 if max_steps is None else max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out.parent / "lightning"),
        deterministic=True,
    )
    loaders = (
        torch.utils.data.DataLoader(train_set, BATCH, shuffle=True, drop_last=True),
        torch.utils.data.DataLoader(val_set, 256),
    )
    trainer.fit(Module(), *loaders)
    out.write_text(json.dumps({"train_s": time.perf_counter() - t0, "steps": trainer.global_step}))


# -- the outer benchmark -------------------------------------------------------------------------


def _src_folder(given: str) -> Path:
    """``--compare``'s folder: a checkout's ``src`` (its root is accepted too). Refused when it holds
    no ``repro`` package: the editable install would then stand in, and "before" would measure
    this checkout."""
    path = Path(given).resolve()
    for candidate in (path, path / "src"):
        if (candidate / "repro" / "__init__.py").is_file():
            return candidate
    raise SystemExit(f"--compare {given}: no repro package in it or in its src/ folder")


def _env(src: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(src or ROOT / "src"), str(ROOT / "tests" / "fixture")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def _job(
    name: str, epochs: int, max_steps: int | None, tmp: Path, compare: Path | None
) -> dict[str, float]:
    """Run one job once as a whole process: {"process_s", "train_s"}."""
    out = tmp / f"{name}.json"
    steps = [] if max_steps is None else [f"--max-steps={max_steps}"]
    if name in ("bare", "lightning"):
        cmd = [
            sys.executable,
            __file__,
            "--inner",
            name,
            f"--epochs={epochs}",
            *steps,
            f"--out={out}",
        ]
        process_s = _timed(cmd, _env())
        return {"process_s": process_s, "train_s": json.loads(out.read_text())["train_s"]}
    if name == "import":
        return {"process_s": _timed([sys.executable, "-c", "import torch, hydra, numpy"], _env())}
    run_dir = tmp / name.replace("@", "_")
    cmd = [
        sys.executable,
        "-m",
        "experiment.train",
        f"hydra.run.dir={run_dir}",
        f"train.epochs={epochs}",
        f"train.max_steps={'null' if max_steps is None else max_steps}",
    ]
    process_s = _timed(cmd, _env(compare if name.startswith("template@") else None))
    return {
        "process_s": process_s,
        "train_s": float(json.loads((run_dir / "run.json").read_text())["wall_time_s"]),
    }


def _summary(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main_bench(args: argparse.Namespace) -> None:
    import importlib.util

    epochs = 2 if args.quick else 8
    max_steps = args.steps
    if max_steps is not None:
        epochs = math.ceil(max_steps / STEPS_PER_EPOCH)
    jobs = ["bare", "template"]
    if args.compare:
        jobs.append("template@before")
    if importlib.util.find_spec("lightning") is not None:
        jobs.append("lightning")
    else:
        print(
            "note: lightning is not importable here; its column is skipped (it is not a dependency)"
        )
    startup_jobs = [f"{job}/1" for job in jobs]
    startup_jobs.insert(0, "import")
    results: dict[str, list[dict[str, float]]] = {j: [] for j in jobs + startup_jobs}
    compare = args.compare
    order = jobs + startup_jobs
    for i in range(args.pairs):
        # rotated, so that no job is always first or last
        rotated = order[i % len(order) :] + order[: i % len(order)]
        with tempfile.TemporaryDirectory(prefix="bench_overhead_") as tmp:
            for job in rotated:
                name, _, one = job.partition("/")
                results[job].append(_run_in(job, name, one, epochs, max_steps, Path(tmp), compare))
        print(f"pair {i + 1}/{args.pairs} done", file=sys.stderr, flush=True)

    steps = STEPS_PER_EPOCH * epochs if max_steps is None else max_steps
    bare = results["bare"]
    print(
        f"\n{steps} steps ({epochs} epochs, batch {BATCH}), {args.pairs} interleaved pairs; "
        "ratios to the bare loop of the same pair: median (min-max)\n"
    )
    print(
        "| job | whole process / bare | steady state / bare | per-step overhead vs bare (ms) "
        "| training timer / bare |"
    )
    print("|---|---|---|---|---|")

    def marginal(job: str) -> list[float]:
        """Seconds of the steps themselves: the whole process less the same job's 1-step process."""
        return [
            r["process_s"] - one["process_s"]
            for r, one in zip(results[job], results[f"{job}/1"], strict=True)
        ]

    bare_marginal = marginal("bare")
    for job in jobs:
        rows = results[job]
        whole = [r["process_s"] / b["process_s"] for r, b in zip(rows, bare, strict=True)]
        mine = marginal(job)
        steady = [m / b for m, b in zip(mine, bare_marginal, strict=True)]
        per_step = [1000 * (m - b) / steps for m, b in zip(mine, bare_marginal, strict=True)]
        timer = [r["train_s"] / b["train_s"] for r, b in zip(rows, bare, strict=True)]
        print(
            f"| {job} | {_summary(whole)} | {_summary(steady)} | {_summary(per_step)} "
            f"| {_summary(timer)} |"
        )
    if "template@before" in results:  # the change itself, pair by pair: after / before
        after, before = results["template"], results["template@before"]
        whole = [a["process_s"] / b["process_s"] for a, b in zip(after, before, strict=True)]
        steady = [
            a / b for a, b in zip(marginal("template"), marginal("template@before"), strict=True)
        ]
        print(f"| template / template@before | {_summary(whole)} | {_summary(steady)} | | |")
    print(
        "\nsteady state: each job's whole process less its own 1-step process (start-up and one-time "
        "imports cancel out), over the bare loop's; training timer: each job's own timer, which starts "
        "at a different point in each (Lightning's after its imports)"
    )
    print("\n| start-up (1 step) | whole process / bare 1-step | seconds over the import |")
    print("|---|---|---|")
    for job in startup_jobs:
        ratio = [
            r["process_s"] / b["process_s"]
            for r, b in zip(results[job], results["bare/1"], strict=True)
        ]
        over = [
            r["process_s"] - i["process_s"]
            for r, i in zip(results[job], results["import"], strict=True)
        ]
        print(f"| {job} | {_summary(ratio)} | {_summary(over)} |")
    print(
        f"\n(bare loop itself: whole process median {statistics.median(b['process_s'] for b in bare):.1f} s, "
        f"training {statistics.median(b['train_s'] for b in bare):.1f} s on this machine; "
        f"import torch, hydra, numpy: {statistics.median(i['process_s'] for i in results['import']):.1f} s)"
    )


def _run_in(
    job: str,
    name: str,
    one: str,
    epochs: int,
    max_steps: int | None,
    tmp: Path,
    compare: Path | None,
) -> dict[str, float]:
    folder = tmp / job.replace("/", "_").replace("@", "_")
    folder.mkdir()
    return _job(name, 1 if one else epochs, 1 if one else max_steps, folder, compare)


# -- micro-benchmark of the per-step pieces --------------------------------------------------------


def inner_micro(repeats: int, out: Path) -> None:
    """Per-step pieces, in this process, with whatever ``repro`` is first on the path."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from experiment.data import ShapesData
    from experiment.model import SmallCNN
    from repro.core.fingerprint import sample_digests, set_digest, tensors_digest
    from repro.core.loader import make_dataloader
    from repro.run.checkpoint import save_checkpoint

    train_set, _ = ShapesData().build(lambda name: np.random.default_rng(0))
    loader = make_dataloader(train_set, seed=SEED, batch_size=BATCH, shuffle=True, drop_last=True)
    dataset, keys = loader.dataset, [(0, i) for i in range(BATCH)]
    model = SmallCNN(num_classes=4)
    opt = torch.optim.AdamW(model.parameters(), lr=0.02)
    x, y = loader.collate_fn(dataset.__getitems__(keys))

    def train_step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def fingerprint() -> None:
        tensors_digest(model.named_parameters())
        set_digest(sample_digests(x, y))

    tmp = Path(tempfile.mkdtemp(prefix="bench_micro_"))
    counter = [0]

    def checkpoint() -> None:
        counter[0] += 1
        state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
        save_checkpoint(tmp, counter[0], state, config_sha256="0" * 64, keep=3)

    background = "background" in inspect.signature(save_checkpoint).parameters
    # Newer revisions write in the background through a writer object; older ones took a flag.
    writer_class = getattr(
        importlib.import_module("repro.run.checkpoint"), "CheckpointWriter", None
    )
    writer = writer_class() if writer_class is not None else None

    def checkpoint_background() -> None:
        counter[0] += 1
        state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
        if writer is not None:
            writer.save(tmp, counter[0], state, config_sha256="0" * 64, keep=3)
            return
        extra = {"background": True} if background else {}
        save_checkpoint(tmp, counter[0], state, config_sha256="0" * 64, keep=3, **extra)

    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(train_set)

        def __getitem__(self, i: int) -> int:
            return i

    class TorchOnly(Plain):
        def __getitem__(self, i: int) -> int:
            return int(torch.randint(0, 10, ()))  # draws from torch's global RNG only

    # The kit's per-batch work without augmentation: a dataset drawing from all three global RNGs
    # pays per-sample seeding of all three; one drawing from torch's only (torchvision-style) pays
    # for torch's where the kit seeds only the RNGs in use (global_rngs="used", the default).
    lazy = "global_rngs" in inspect.signature(type(dataset).__init__).parameters
    seeding_all = type(dataset)(TorchOnly(), SEED, *(["all"] if lazy else []))
    seeding_used = type(dataset)(TorchOnly(), SEED)

    pieces = {
        "torch-drawing dataset, all three RNGs seeded (64 samples)": lambda: (
            seeding_all.__getitems__(keys)
        ),
        "torch-drawing dataset, the RNGs in use seeded (64 samples)": lambda: (
            seeding_used.__getitems__(keys)
        ),
        "load batch (64 samples)": lambda: dataset.__getitems__(keys),
        "train step": train_step,
        "fingerprint (params + batch)": fingerprint,
        "checkpoint (blocking part)": checkpoint,
        "checkpoint, background=True if supported (blocking part)": checkpoint_background,
    }
    # Round-robin in blocks, median block per piece: a burst of load hits every piece alike.
    blocks: dict[str, list[float]] = {name: [] for name in pieces}
    for fn in pieces.values():
        fn()
    rounds = 10
    for _ in range(rounds):
        for name, fn in pieces.items():
            n = 1 if name.startswith("checkpoint") else max(1, repeats // rounds)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            blocks[name].append((time.perf_counter() - t0) / n)
    wait = getattr(importlib.import_module("repro.run.checkpoint"), "wait_for_checkpoints", None)
    if writer is not None:
        writer.wait()
    elif wait is not None:
        wait()
    times = {name: statistics.median(b) for name, b in blocks.items()}
    out.write_text(json.dumps(times))


def main_micro(args: argparse.Namespace) -> None:
    variants: dict[str, Path | None] = {"this checkout": None}
    if args.compare:
        variants["before"] = args.compare
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench_micro_") as tmp:
        for i in range(args.pairs):
            names = list(variants) if i % 2 == 0 else list(reversed(variants))
            for v in names:
                out = Path(tmp) / "micro.json"
                _timed(
                    [
                        sys.executable,
                        __file__,
                        "--inner",
                        "micro",
                        f"--repeats={args.repeats}",
                        f"--out={out}",
                    ],
                    _env(variants[v]),
                )
                runs[v].append(json.loads(out.read_text()))
    pieces = list(runs["this checkout"][0])
    print(
        f"\nper-step pieces, {args.pairs} alternating processes; median (min-max), microseconds\n"
    )
    head = " | ".join(variants)
    print(f"| piece | {head} |" + (" after / before |" if args.compare else ""))
    print("|---|" + "---|" * len(variants) + ("---|" if args.compare else ""))
    for piece in pieces:
        cells = [_summary([1e6 * r[piece] for r in runs[v]], digits=0) for v in variants]
        line = f"| {piece} | " + " | ".join(cells) + " |"
        if args.compare:
            ratio = [
                a[piece] / b[piece]
                for a, b in zip(runs["this checkout"], runs["before"], strict=True)
            ]
            line += f" {_summary(ratio)} |"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 epochs and 2 rounds: a smoke test of the benchmark"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="a long run: this many optimizer steps"
    )
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="also run the template with this checkout's src folder (or its root): before",
    )
    parser.add_argument(
        "--micro", action="store_true", help="time the per-step pieces in-process instead"
    )
    parser.add_argument(
        "--repeats", type=int, default=200, help="--micro: repetitions of each piece"
    )
    parser.add_argument("--inner", choices=("bare", "lightning", "micro"), help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner == "bare":
        return inner_bare(args.epochs, args.max_steps, args.out)
    if args.inner == "lightning":
        return inner_lightning(args.epochs, args.max_steps, args.out)
    if args.inner == "micro":
        return inner_micro(args.repeats, args.out)
    if args.pairs is None:
        args.pairs = 2 if args.quick else 5
    if args.compare:
        args.compare = _src_folder(args.compare)
    if args.micro:
        return main_micro(args)
    return main_bench(args)


if __name__ == "__main__":
    main()
