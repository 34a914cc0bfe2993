"""The config a replay runs: a sanitised copy of the run's ``config.yaml``. The ``hydra:`` section and
the loggers are dropped, a resume key is cleared, and the replay is refused when the config holds an
interpolation, a ``defaults`` list, or instantiation keys (``_target_`` and friends) that the project's
own composed config does not hold with the same value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from omegaconf import OmegaConf

from repro.base.errors import RunDirectoryError
from repro.tools.replay_entry import EntrySettings
from repro.tools.runs import CONFIG_FILE, MODULE_NAME, Run

#: Keys through which a config makes Hydra build objects; a record may hold them only as the project does.
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})
#: The loggers' config node: dropped from every replay's config.
LOGGER_NODE = "logger"
_MAX_NODES = 100_000


def _walk(tree: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, key, value) for every mapping entry in ``tree``, lists included ([i] in the path)."""
    stack = [(path, tree)]
    seen = 0
    while stack:
        prefix, node = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            raise RunDirectoryError(
                f"more than {_MAX_NODES} config nodes; a recorded config is never that large"
            )
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, value in items:
            here = (
                f"{prefix}[{key}]"
                if isinstance(node, list)
                else (f"{prefix}.{key}" if prefix else str(key))
            )
            yield here, key, value
            stack.append((here, value))


def _instantiation_keys(tree: Any) -> dict[str, Any]:
    return {path: value for path, key, value in _walk(tree) if key in INSTANTIATE_KEYS}


def reference_config(entry: EntrySettings, run: Run) -> dict[str, Any]:
    """The project's own config composed with the run's group choices (``experiment=quick``), unresolved.

    Only group choices are applied (a plain ``name=option``): a value override from the record could
    add any key. Empty when the project's config cannot be composed: then nothing is allowed.
    """
    if entry.config_dir is None:
        return {}
    from hydra import compose, initialize_config_dir

    from repro.base.config import register_configs

    register_configs()
    overrides = [o for o in (run.manifest.get("overrides") or []) if isinstance(o, str)]
    choices = [
        o
        for o in overrides
        if MODULE_NAME.fullmatch(o.partition("=")[0])
        and "." not in o.partition("=")[0]
        and not o.startswith("hydra")
        and MODULE_NAME.fullmatch(o.partition("=")[2].replace("-", "_"))
    ]
    for attempt in (choices, []):
        try:
            with initialize_config_dir(config_dir=str(entry.config_dir), version_base="1.3"):
                cfg = compose(config_name=entry.config_name, overrides=attempt)
            return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]
        except Exception:
            # A choice the project no longer has: try the plain config.
            continue
    return {}


def sanitise_config(run: Run, entry: EntrySettings) -> tuple[dict[str, Any], list[str]]:
    """The config a replay of ``run`` runs, and the top-level sections dropped from it.

    RunDirectoryError naming the key when the record's config holds an interpolation, a
    ``defaults`` list, or an instantiation key the project's own config does not hold as is.
    """
    where = run.dir / CONFIG_FILE
    config = {k: v for k, v in run.config.items() if k != "hydra"}
    dropped = ["hydra"] if "hydra" in run.config else []
    if "defaults" in config:
        raise RunDirectoryError(
            f"{where}: has a top-level 'defaults' list; a recorded config is already composed "
            "and never holds one"
        )
    try:
        walked = list(_walk(config))
    except RunDirectoryError as exc:
        raise RunDirectoryError(f"{where}: {exc}") from None
    for path, _, value in walked:
        if isinstance(value, str) and "${" in value:
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise RunDirectoryError(
                f"{where}: {path} is {shown!r}, an interpolation; a recorded config holds "
                "resolved values only"
            )
    wanted = _instantiation_keys(config)
    if wanted:
        allowed = _instantiation_keys(reference_config(entry, run))
        for path, value in sorted(wanted.items()):
            if path not in allowed or allowed[path] != value:
                has = f"has {allowed[path]!r} there" if path in allowed else "has no such key"
                raise RunDirectoryError(
                    f"{where}: {path}={value!r} is refused: {', '.join(sorted(INSTANTIATE_KEYS))} are allowed only "
                    f"where the project's own config ({entry.module}) holds the same key and value, and it {has}"
                )
    # A replay logs nowhere but its own metrics.jsonl: never to the user's trackers (an MLflow server,
    # W&B), never into the logger runs of the run it checks. Loggers never change the bits.
    config.pop(LOGGER_NODE, None)
    # A fresh replay never continues another run, whatever the record says.
    if entry.resume_key:
        node: Any = config
        *parents, leaf = entry.resume_key.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf) is not None:
            node[leaf] = None
    return config, dropped
