"""The checks of a hyperparameter search's config, before anything runs: the ``hparams`` extra (Optuna) is
installed, every searched key is in the config, the settings are valid, and the command line
neither sets a searched key nor sweeps values of its own. One line each (a :class:`ReproError`).

The entry point runs them at preflight (before Hydra makes the sweep directory); the sweeper runs
them again when it starts (:mod:`repro.launch.search`). Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.base.errors import ConfigValueError, MissingPackageError, ReproError
from repro.base.search_record import INSTALL_HINT, SEARCH_SWEEPER, SearchSettings, parse_settings

_MISSING = object()


def is_search(cfg: DictConfig) -> bool:
    """Whether ``cfg`` selects the kit's search sweeper (``hparams_search=<name>``)."""
    return OmegaConf.select(cfg, "hydra.sweeper._target_", default=None) == SEARCH_SWEEPER


def require_optuna() -> None:
    """MissingPackageError naming the extra when Optuna is not installed."""
    try:
        # Imported, not only found: a broken install fails here too (about 0.3 s, paid once).
        import optuna  # noqa: F401
    except ImportError:
        raise MissingPackageError(
            f"hparams_search needs optuna, which is not installed: {INSTALL_HINT}"
        ) from None


def check_keys(cfg: DictConfig, keys: list[str]) -> None:
    """Every searched key names a value of the config; else the key and what its parent has."""
    for key in keys:
        if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
            continue
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        has = [str(k) for k in node] if isinstance(node, DictConfig) else []
        listed = f" ({parent} has: {', '.join(has)})" if has else ""
        raise ReproError(
            f"hydra.sweeper.params names {key}, which the config does not have{listed}"
        )


def check_overrides(overrides: list[str], keys: list[str]) -> None:
    """The command line sets no searched key and sweeps nothing (the search proposes the values)."""
    for arg in overrides:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        if key in keys:
            raise ConfigValueError(
                key,
                value,
                "no value on the command line: the search proposes it (hydra.sweeper.params)",
            )
        if "," in value or value.startswith(("range(", "choice(", "interval(", "glob(")):
            raise ConfigValueError(
                key,
                value,
                "one value: a search proposes its own trials; run one search per value, each in "
                "its own hydra.sweep.dir",
            )


def sweeper_node(cfg: DictConfig) -> dict[str, Any]:
    """``hydra.sweeper`` as plain data, its interpolations (``${train.monitor}``) resolved."""
    node = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    return node if isinstance(node, dict) else {}


def check_search(cfg: DictConfig, overrides: list[str], seed: int | None = None) -> SearchSettings:
    """All of the above; the search's settings (``seed``: a resumed search's sampler seed)."""
    require_optuna()
    sweeper = sweeper_node(cfg)
    params = sweeper.get("params")
    keys = [str(k) for k in params] if isinstance(params, dict) else []
    check_keys(cfg, keys)
    check_overrides(overrides, keys)
    return parse_settings(sweeper, OmegaConf.select(cfg, "repro.seed", default=None), seed)
