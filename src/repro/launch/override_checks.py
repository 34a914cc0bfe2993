"""What composing a command line accepts but a careful tool refuses (part of the pre-run check).

Several options of one config group at once (their values would be merged silently), a bool given as
anything but true/false, and ``+key=value`` for a key the config does not have. Each is refused with one
line naming the override (secrets redacted), before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from repro.base.config import MULTI_OPTION_GROUPS
from repro.base.errors import ReproError
from repro.base.overrides import override_key

__all__ = ["LaunchError", "check_job_overrides"]


class LaunchError(ReproError):
    """The command line cannot start a run."""


_BOOL_WORDS = ("true", "false")


def check_job_overrides(
    cfg: DictConfig, job: list[str], config_dir: str | Path, config_name: str
) -> None:
    """What composing accepts but a careful tool refuses: several options of one config group at once
    (except in the groups whose options each write their own key: ``logger=[csv,tensorboard]``), a bool
    given as anything but true/false, and ``+key=value`` for a key the config does not have."""
    from repro.base.secrets import redact_text

    try:
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=False)
    except Exception:
        choices = {}
    for group, choice in (choices or {}).items():
        if group.startswith("hydra") or choice is None or group in MULTI_OPTION_GROUPS:
            continue
        if isinstance(choice, list) or str(choice).startswith("["):
            raise LaunchError(
                f"{group}={choice}: selects several options of config group '{group}' at once "
                "(their values would be merged silently); choose one"
            )
    added: list[str] = []
    for override in job:
        key, sep, value = override.partition("=")
        bare = override_key(override)
        if not sep or bare.startswith("hydra.") or bare.startswith("hydra/"):
            continue
        if (
            value.strip().startswith("[")
            and bare not in MULTI_OPTION_GROUPS
            and _is_config_group(bare, config_dir)
        ):
            raise LaunchError(
                f"{bare}={value}: selects several options of config group '{bare}' at once "
                "(their values would be merged silently); choose one"
            )
        if key.startswith("+"):
            added.append(override)
            continue
        current = OmegaConf.select(cfg, bare, default=None, throw_on_resolution_failure=False)
        if isinstance(current, bool) and value.strip().lower() not in _BOOL_WORDS:
            raise LaunchError(f"{redact_text(override)}: {bare} is a bool; expected true or false")
    if added:
        _check_added_keys(cfg, job, added, config_dir, config_name)


def _is_config_group(name: str, config_dir: str | Path) -> bool:
    from hydra.core.config_store import ConfigStore

    return (Path(config_dir) / name).is_dir() or isinstance(
        ConfigStore.instance().repo.get(name), dict
    )


def _check_added_keys(
    cfg: DictConfig, job: list[str], added: list[str], config_dir: str | Path, config_name: str
) -> None:
    """Refuse ``+key=value`` (or ``++``) for a key that the config without it does not have."""
    from hydra import compose, initialize_config_dir

    from repro.base.secrets import redact_text

    base_job = [o for o in job if o not in added]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        base = compose(config_name=config_name, overrides=base_job, return_hydra_config=False)
    groups = set(OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=False) or {})
    for override in added:
        key = override_key(override)
        if key in groups:  # +group=option: a config group Hydra resolved, not a value
            continue
        if (
            OmegaConf.select(base, key, default="<absent>", throw_on_resolution_failure=False)
            == "<absent>"
        ):
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(base, parent, default=None) if parent else base
            known = sorted(str(k) for k in node) if isinstance(node, DictConfig) else []
            where = f"'{parent}'" if parent else "the config"
            raise LaunchError(
                f"{redact_text(override)}: unknown key ({where} has no key '{leaf}'"
                + (f"; its keys are {', '.join(known)}" if known else "")
                + "). Keys are never added on the command line; add it to the schema"
            )
