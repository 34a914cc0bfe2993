"""The end of a run: the last checkpoint on disk, the loggers closed, the record finished as
``completed`` (final weights, result, best, the resume's self-check) or ``failed``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from repro.core.distributed import shutdown_distributed
from repro.core.fingerprint import tensors_digest
from repro.run.checkpoint import CheckpointError

if TYPE_CHECKING:
    from repro.run.run import Run


def close_run(
    run: Run, result: dict[str, Any] | None, error: BaseException | None
) -> dict[str, Any]:
    """Finish ``run``'s record, once: ``completed`` with the final weights and ``result`` (returned with
    the steps, the last epoch's metrics and the parameter digest), or ``failed`` with ``error`` (``{}``).
    A completed resume whose self-check found a difference then raises, unless the user accepted it."""
    # The last checkpoint is on disk before the record says how the run ended; one that could not
    # be written fails the run.
    try:
        run.checkpoints.wait()
    except CheckpointError as exc:
        if error is None:
            error = exc
    run.loggers.close("failed" if error is not None else "completed")
    if error is not None:
        run.self_check.save()
        run.record.finish("failed", error=f"{type(error).__name__}: {error}")
        return {}
    out: dict[str, Any] = {"steps": run.global_step, **run.metrics.result()}
    weights = None
    if run.modules():
        out["params_digest"] = tensors_digest(run.checkpoints.named_parameters())
        weights = run.checkpoints.save_final()
    out.update(result or {})
    run.self_check.save()
    extra: dict[str, Any] = {}
    if run.self_check.exact is not None:
        extra["resume_exact"] = run.self_check.exact
    if run.settings.monitor:
        extra["best"] = run.metrics.best_summary()
    run.record.finish("completed", weights_path=weights, result=out, **extra)
    # Every rank done: leave the process group together.
    shutdown_distributed(run.dist)
    if run.dist.is_main:
        print(f"run directory:  {run.dir}")
        if run.record.manifest.get("weights_sha256"):
            print(f"weights sha256: {run.record.manifest['weights_sha256']}")
    # Completed and recorded: a resume that was not exact still fails the command (exit non-zero).
    run.self_check.require_exact(
        f"{run.node}.accept_inexact_resume", run.settings.accept_inexact_resume
    )
    return out
