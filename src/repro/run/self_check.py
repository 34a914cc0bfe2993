"""A resume checks itself: each step the interrupted process recorded after its last checkpoint is
compared, as the resumed run reaches it again, with what it records now (batch, loss, parameters). A
difference names the field and the usual causes of a difference there, without claiming which."""

from __future__ import annotations

import logging
from typing import Any

from repro.base.errors import ReproError

log = logging.getLogger("repro.run")

#: The fingerprint fields compared, from cause to effect: another batch gives another loss, and another
#: loss another update. The first that differs at a step is reported.
COMPARED = ("batch", "loss", "params")
#: Each field in words.
FIELD_NAMES = {"batch": "batch", "loss": "loss", "params": "parameters"}
_SINGULAR = {"differ": "differs", "match": "matches"}
#: The usual causes of a difference in each field: candidates for the user to check, not a verdict.
CAUSES = {
    "batch": (
        "the data order or a loader's position not restored: a sampler, a shuffle or a loader made "
        "outside run.dataloader, or a dataset that keeps its own position or random state"
    ),
    "loss": (
        "state the forward pass carries not tracked, or reset in the wrong place (an RNN's hidden "
        "state carried across batches: reset it where the data restarts, not at the top of every "
        "epoch); randomness drawn outside the run (dropout or noise from a generator that is not a "
        "run stream); a module that is not tracked"
    ),
    "params": (
        "an optimizer, scheduler, gradient scaler or other state the update reads not tracked with "
        "run.track(...) or not restored; state reset at the top of an epoch (a resume may start in "
        "the middle of one)"
    ),
}


def said(fields: list[str], verb: str) -> str:
    """``fields`` and ``verb`` (``differ`` or ``match``) in agreement: 'the batch differs', 'the loss and
    the parameters match'."""
    names = [FIELD_NAMES.get(f, f) for f in fields]
    singular = len(names) == 1 and names[0] != "parameters"
    return f"{' and '.join(f'the {n}' for n in names)} {_SINGULAR[verb] if singular else verb}"


def differs(field: str) -> str:
    """'the parameters differ', 'the batch differs'."""
    return said([field], "differ")


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
        fields = [k for k in COMPARED if k in expected]
        different = [k for k in fields if expected[k] != row.get(k)]
        if not different:
            if not self.pending:
                self.save()
            return
        key, same = different[0], [k for k in fields if k not in different]
        self.state.update(
            exact=False, step=row["step"], quantity=key, recorded=expected[key], now=row.get(key)
        )
        others = [f"{said(different[1:], 'differ')} too"] if different[1:] else []
        others += [said(same, "match")] if same else []
        log.error(
            "RESUME IS NOT EXACT: at step %d %s from what the interrupted run recorded (%s fingerprint "
            "%s, now %s%s). Usual causes: %s. Results after this resume differ from an uninterrupted "
            "run.",
            row["step"],
            differs(key),
            key,
            expected[key],
            row.get(key),
            "".join(f"; {part}" for part in others),
            CAUSES[key],
        )
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
        key = str(state.get("quantity"))
        raise InexactResumeError(
            f"the resume is not exact: at step {state.get('step')} {differs(key)} from the "
            "interrupted run (the run completed; run.json has resume_exact: false). Usual causes: "
            f"{CAUSES.get(key, 'state not tracked or not restored')}. Fix the cause, or accept an "
            f"inexact resume with {accept_key}=true"
        )
