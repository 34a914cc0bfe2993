"""The run's loggers as one: each metrics row goes to every backend of ``repro.run.loggers``, each opened,
logging and closing with the global RNG states untouched; a backend that cannot open is one line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from repro.base.errors import ReproError
from repro.base.secrets import redact_text
from repro.run.loggers import BACKENDS, LoggerError, MetricLogger, handed, rng_untouched

log = logging.getLogger("repro.run")


class Loggers:
    """The run's loggers (none on ranks other than 0): every metrics row goes to each of them."""

    def __init__(self, backends: list[MetricLogger] | None = None) -> None:
        self.backends = list(backends or [])
        #: What run.json records under ``loggers``: each logger's run id, path or store.
        self.recorded: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(
        cls,
        settings: dict[str, Any],
        run_dir: Path,
        *,
        from_step: int | None = None,
        recorded: dict[str, Any] | None = None,
    ) -> Loggers:
        """Open each logger of ``settings`` (``repro.base.config.logger_configs``): a new logger run, or on a
        resume (``from_step``) the one ``recorded`` (run.json's ``loggers``) names."""
        out = cls()
        name = ""
        try:
            for name, cfg in settings.items():
                backend = BACKENDS[name](handed(cfg))
                with rng_untouched():
                    out.recorded[name] = backend.open(
                        run_dir, from_step, dict((recorded or {}).get(name) or {})
                    )
                out.backends.append(backend)
        except ReproError:
            out.close("failed")
            raise
        # The library's own error (a server that does not answer): one line.
        except Exception as exc:
            out.close("failed")
            why = redact_text(" ".join(str(exc).split())[:240])
            raise LoggerError(
                f"logger={name}: cannot open it ({type(exc).__name__}: {why}); check its settings "
                f"(logger.{name}.*) or run with logger=none"
            ) from None
        except BaseException:
            out.close("failed")
            raise
        if out.backends:
            log.info("loggers: %s", ", ".join(b.name for b in out.backends))
        return out

    def log(self, row: dict[str, Any]) -> None:
        """Copy one metrics row (already written to metrics.jsonl) to every logger."""
        if not self.backends:
            return
        with rng_untouched():
            for backend in self.backends:
                backend.log(row, int(row["step"]))

    def close(self, status: str) -> None:
        """Close every logger (``completed`` or ``failed``); a logger that fails to close is a warning:
        the record, not a copy of it, says how the run ended."""
        with rng_untouched():
            for backend in self.backends:
                try:
                    backend.close(status)
                except Exception as exc:  # noqa: BLE001  (any backend's failure to close)
                    log.warning("logger %s did not close cleanly: %s", backend.name, exc)
        self.backends = []
