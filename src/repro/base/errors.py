"""Exception types raised by the reproducibility kit.

Every error names what to change: the config key, the value it had and what
is allowed. Command-line entry points print ``str(error)`` as one line and
exit non-zero, without a traceback.
"""

from __future__ import annotations

from typing import Any


class ReproError(Exception):
    """Base class for every error the kit raises on purpose."""


class ConfigValueError(ReproError, ValueError):
    """A config value is outside what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key}={value!r} is not allowed: expected {allowed}")


class MissingPackageError(ReproError, ImportError):
    """A config choice needs an optional package that is not installed (the message names the extra)."""


class EnvironmentPinError(ReproError, RuntimeError):
    """A process-environment pin cannot take effect in this process."""


class DataError(ReproError, ValueError):
    """Data a task declared cannot be fingerprinted, or differs from what its run recorded."""


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler preempting the job): raised so the run is recorded as failed.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` blocks (logging handlers
    among them) cannot swallow it.
    """


class RunDirectoryError(ReproError, RuntimeError):
    """A run directory is missing, is not a run, or already holds another run."""
