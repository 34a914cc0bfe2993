"""Entry point of the example experiment: ``python -m experiment.train [hydra overrides]``.

Thin on purpose: ``repro.entrypoint`` checks the command line and puts the
process-start pins in place (re-executing once if needed) before the
training code, and torch with it, is imported; then it hands the task a
run object (``repro.Run``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiment.config import check_config, register_configs
from repro import entrypoint

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@entrypoint(config_dir=CONF_DIR, register=register_configs, check=check_config)
def main(run: Any) -> Any:
    from experiment.loop import train

    return train(run)


def audit_target(cfg: Any) -> Any:
    """For ``repro audit``: the model, a batch and a loss built from ``cfg``."""
    from experiment.loop import audit_target as build

    return build(cfg)


if __name__ == "__main__":
    main()
