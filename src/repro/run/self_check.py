"""A resume checks itself: each step the interrupted process recorded after its last checkpoint is
compared, as the resumed run reaches it again, with what it records now (loss, parameters, batch)."""

from __future__ import annotations

import logging
from typing import Any

from repro.base.errors import ReproError

log = logging.getLogger("repro.run")

#: The fingerprint fields compared, in this order; the first that differs is reported.
COMPARED = ("loss", "params", "batch")


class InexactResumeError(ReproError):
    """A resumed run completed, but its self-check found a step that differs from the interrupted run."""


class ResumeSelfCheck:
    """Compares a resumed run's steps with the interrupted run's rows and records the outcome.

    ``record``: the run record (rank 0 writes ``resumes[-1].self_check`` into run.json through its
    ``manifest`` and ``update``). ``state`` is None on a run that is not a resume.
    """

    def __init__(
        self,
        record: Any,
        interrupted_rows: list[dict[str, Any]] | None,
        *,
        resumed: bool,
        is_main: bool = True,
    ) -> None:
        self.record = record
        self.is_main = is_main
        # The rows are rank 0's (its loss is its own batches'): only rank 0 can compare with them. Another
        # rank would compare its own loss with rank 0's, and may read the file before or after rank 0
        # cut it back to the checkpoint.
        rows = interrupted_rows if is_main else None
        #: Step -> the row the interrupted process recorded for it, until the step is reached again.
        self.pending = {int(r["step"]): r for r in (rows or []) if isinstance(r.get("step"), int)}
        self.state: dict[str, Any] | None = (
            {"exact": True, "steps_checked": 0, "steps_pending": len(self.pending)}
            if resumed and is_main
            else None
        )

    @property
    def exact(self) -> bool | None:
        """False once a step differed, True otherwise; None when the run is not a resume."""
        return None if self.state is None else bool(self.state["exact"])

    def check(self, row: dict[str, Any]) -> None:
        """Compare the step of fingerprint ``row`` with what the interrupted process recorded for it."""
        expected = self.pending.pop(row["step"], None)
        if expected is None or self.state is None:
            return
        self.state["steps_checked"] += 1
        if not self.state["exact"]:
            return
        for key in COMPARED:
            if key in expected and expected.get(key) != row.get(key):
                self.state.update(
                    exact=False,
                    step=row["step"],
                    quantity=key,
                    recorded=expected[key],
                    now=row.get(key),
                )
                log.error(
                    "RESUME IS NOT EXACT: at step %d the %s fingerprint differs from what the interrupted run "
                    "recorded (%s, now %s). Some state was probably not registered with run.track(...) or not "
                    "restored; results after this resume differ from an uninterrupted run.",
                    row["step"],
                    key,
                    expected[key],
                    row.get(key),
                )
                self.save()
                return
        if not self.pending:
            self.save()

    def save(self) -> None:
        """Write the outcome so far into the last resume's entry of run.json (rank 0)."""
        if self.state is None or not self.is_main:
            return
        resumes = self.record.manifest.get("resumes") or []
        if resumes:
            resumes[-1]["self_check"] = dict(self.state)
            self.record.update(resumes=resumes)

    def require_exact(self, accept_key: str, accepted: bool) -> None:
        """Raise :class:`InexactResumeError` (one line) when a step differed and the user did not accept
        it with ``accept_key=true``; call once the run is completed and recorded."""
        if self.exact is not False or accepted:
            return
        state = self.state or {}
        raise InexactResumeError(
            f"the resume is not exact: at step {state.get('step')} the {state.get('quantity')} "
            "fingerprint differs from the interrupted run (the run completed; run.json has "
            "resume_exact: false). Register every piece of state with run.track(...), or accept an "
            f"inexact resume with {accept_key}=true"
        )
