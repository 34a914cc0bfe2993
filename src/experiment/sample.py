"""Text from a trained language model: ``python -m experiment.sample run=RUN_DIR [tokens=200] [seed=0]
[prompt=TEXT] [which=final|best]``.

The model is rebuilt from the run's own ``config.yaml`` through ``[tool.repro] build`` (its
vocabulary comes from the data's settings) and loaded with :func:`repro.load_run`; the tokens are
drawn with a ``torch.Generator`` seeded with ``seed``, in float64 on the CPU, so the same run, prompt
and seed print the same text every time. Nothing is written to the run directory.
"""

from __future__ import annotations

import sys
from typing import Any

#: The first characters the model continues, unless ``prompt=`` says otherwise.
PROMPT = "the "


def sample_text(
    model: Any,
    data: Any,
    task: Any,
    *,
    tokens: int = 200,
    seed: int = 0,
    prompt: str = PROMPT,
    device: Any = "cpu",
) -> str:
    """``prompt`` and ``tokens`` characters the model writes after it, drawn with a generator seeded
    with ``seed`` (its own: the run's random state is left alone)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.as_tensor(data.encode(prompt), device=device)
    was_training = model.training
    try:
        new = task.sample(model, ids, tokens, generator)
    finally:
        model.train(was_training)
    return prompt + data.decode(new.tolist())


def main(argv: list[str] | None = None) -> int:
    from hydra.utils import instantiate

    from experiment.evaluate import TARGETS
    from experiment.model import check_own_targets
    from repro import ConfigValueError, ReproError, load_run

    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    unknown = sorted(set(args) - {"run", "tokens", "seed", "prompt", "which"})
    if "run" not in args or unknown:
        print(
            "usage: python -m experiment.sample run=RUN_DIR [tokens=200] [seed=0] [prompt=TEXT] "
            "[which=final|best]" + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            file=sys.stderr,
        )
        return 2
    try:
        for key, low in (("tokens", 1), ("seed", 0)):
            if key in args and not (args[key].isdigit() and int(args[key]) >= low):
                raise ConfigValueError(key, args[key], f"an int >= {low}")
        loaded = load_run(args["run"], args.get("which", "final"), targets=TARGETS)
        # the run directory is data: only this package's own code is built from it
        check_own_targets(loaded.cfg, "data", "task")
        data, task = instantiate(loaded.cfg.data), instantiate(loaded.cfg.task)
        if not hasattr(task, "sample") or not hasattr(data, "decode"):
            raise ConfigValueError(
                "task._target_", loaded.cfg.task._target_, "a language-model run (experiment=lm)"
            )
        prompt = args.get("prompt", PROMPT)
        try:
            data.encode(prompt)
        except ValueError:
            raise ConfigValueError(
                "prompt", prompt, f"text in the model's vocabulary {''.join(sorted(data.index))!r}"
            ) from None
        text = sample_text(
            loaded.model,
            data,
            task,
            tokens=int(args.get("tokens", 200)),
            seed=int(args.get("seed", 0)),
            prompt=prompt,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
