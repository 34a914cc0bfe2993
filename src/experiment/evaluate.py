"""Evaluate a finished run: ``python -m experiment.evaluate run=RUN_DIR [split=val] [which=final]``.

Rebuilds the run's data from its own ``config.yaml`` and seed (the same named streams as training),
loads its ``final`` or ``best`` weights with :func:`repro.load_run`, evaluates on ``split`` (val or
train) with the run's task, and writes ``eval-<split>.json`` (``eval-<split>-best.json`` for the best
weights) next to the run. ``run.json`` and ``metrics.jsonl`` are never touched. Only targets of this
package are built from the run's config. A model sized from its data (a vocabulary, say) is rebuilt by
the function ``pyproject.toml`` names once as ``[tool.repro] build`` (see :func:`repro.load_run`);
nothing here changes for it.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

#: This package's name, read from the module itself, so that a project's renamed copy allows its own
#: classes (``python -m`` sets ``__package__``; a run of this file by path falls back to its directory).
PACKAGE = __package__ or Path(__file__).resolve().parent.name
#: What this entry builds from a run's config: the package's own classes, nothing else.
TARGETS = (f"{PACKAGE}.",)
SPLITS = ("val", "train")


def evaluate(run_dir: str | Path, split: str = "val", which: str = "final") -> dict[str, Any]:
    """The metrics of the run's model on ``split``, also written to the run's ``eval-*.json``."""
    from hydra.utils import instantiate

    from experiment.model import check_own_targets
    from repro import (
        ConfigValueError,
        ReproError,
        atomic_write,
        load_run,
        resolve_device,
        setup_reproducibility,
    )

    if split not in SPLITS:
        raise ConfigValueError("split", split, " or ".join(SPLITS))
    # The project's [tool.repro] build when it declares one, else the model's _target_ in this package.
    loaded = load_run(run_dir, which, targets=TARGETS)
    cfg = loaded.cfg
    # the run directory is data: its data and task must be this package's own code, nested targets too
    check_own_targets(cfg, "data", "task")
    # Warnings of the set-up are shown once the run's model and data are rebuilt: a refusal is one line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        repro = setup_reproducibility(cfg, in_process=True)  # the run's seed, flags and streams
    try:
        device = resolve_device(cfg.train.device)
        data, task = instantiate(cfg.data), instantiate(cfg.task)
        train_set, val_set = data.build(repro.numpy_rng)
    # The run's own values to its own classes: whatever they raise, the record is at fault (one line).
    except Exception as exc:
        cause = exc.__cause__ or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:160]
        raise ReproError(
            f"the run's config.yaml cannot rebuild its device, data or task ({type(cause).__name__}: "
            f"{first}), {Path(run_dir) / 'config.yaml'}, restore it from a copy of the run"
        ) from None
    for seen in caught:
        warnings.showwarning(seen.message, seen.category, seen.filename, seen.lineno)
    dataset = val_set if split == "val" else train_set
    loader = repro.dataloader(dataset, 256, False, stream=f"loader.{split}", shard=False)
    metrics = task.evaluate(loaded.model.to(device), loader, device)
    metrics = {f"{split}_{k.removeprefix('val_')}": v for k, v in metrics.items()}
    out = {
        "split": split,
        "which": which,
        "weights": str(loaded.weights.relative_to(loaded.dir)),
        "samples": len(dataset),
        **metrics,
    }
    name = f"eval-{split}.json" if which == "final" else f"eval-{split}-{which}.json"
    atomic_write(loaded.dir / name, json.dumps(out, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    from repro import ReproError

    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    unknown = sorted(set(args) - {"run", "split", "which"})
    if "run" not in args or unknown:
        print(
            "usage: python -m experiment.evaluate run=RUN_DIR [split=val|train] [which=final|best]"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            file=sys.stderr,
        )
        return 2
    try:
        out = evaluate(args["run"], args.get("split", "val"), args.get("which", "final"))
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
