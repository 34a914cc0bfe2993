"""The resume self-check: steps compared with the interrupted run's rows, and the outcome recorded."""

from __future__ import annotations

import logging

import pytest

from repro.run.self_check import InexactResumeError, ResumeSelfCheck


class FakeRecord:
    """What the self-check uses of a run record: ``manifest`` and ``update``."""

    def __init__(self) -> None:
        self.manifest = {"resumes": [{"from_step": 2}]}
        self.updates = 0

    def update(self, **fields) -> None:
        self.manifest.update(fields)
        self.updates += 1


ROWS = [
    {"step": 3, "loss": "a3", "params": "p3", "batch": "b3"},
    {"step": 4, "loss": "a4", "params": "p4", "batch": "b4"},
    {"step": "junk"},
]


def test_matching_steps_make_an_exact_resume():
    record = FakeRecord()
    check = ResumeSelfCheck(record, ROWS, resumed=True)
    assert check.state == {"exact": True, "steps_checked": 0, "steps_pending": 2}
    check.check({"step": 3, "loss": "a3", "params": "p3", "batch": "b3"})
    assert record.updates == 0
    check.check({"step": 4, "loss": "a4", "params": "p4", "batch": "b4"})
    assert check.exact is True
    assert record.manifest["resumes"][-1]["self_check"] == {
        "exact": True,
        "steps_checked": 2,
        "steps_pending": 2,
    }


def test_the_first_difference_is_named_and_recorded(caplog):
    record = FakeRecord()
    check = ResumeSelfCheck(record, ROWS, resumed=True)
    with caplog.at_level(logging.ERROR, logger="repro.run"):
        check.check({"step": 3, "loss": "a3", "params": "XX", "batch": "b3"})
    assert check.exact is False
    assert record.manifest["resumes"][-1]["self_check"] == {
        "exact": False,
        "steps_checked": 1,
        "steps_pending": 2,
        "step": 3,
        "quantity": "params",
        "recorded": "p3",
        "now": "XX",
    }
    assert "RESUME IS NOT EXACT: at step 3 the parameters differ" in caplog.text
    # Later steps are counted, not compared again.
    check.check({"step": 4, "loss": "zz"})
    assert check.state["steps_checked"] == 2 and check.state["step"] == 3


def test_steps_the_interrupted_run_did_not_record_are_not_checked():
    check = ResumeSelfCheck(FakeRecord(), ROWS, resumed=True)
    check.check({"step": 9, "loss": "?"})
    assert check.state["steps_checked"] == 0 and check.exact is True


def test_a_fresh_run_has_no_self_check_and_other_ranks_write_nothing():
    record = FakeRecord()
    fresh = ResumeSelfCheck(record, [], resumed=False)
    fresh.check({"step": 3, "loss": "x"})
    fresh.save()
    assert fresh.exact is None and record.updates == 0
    # Another rank's loss is its own batches': it does not compare it with rank 0's rows, and a
    # difference there never fails its process (rank 0 judges the resume).
    other_rank = ResumeSelfCheck(record, ROWS, resumed=True, is_main=False)
    other_rank.check({"step": 3, "loss": "its own", "params": "p3", "batch": "b3"})
    other_rank.check({"step": 4, "loss": "a4", "params": "p4", "batch": "b4"})
    other_rank.require_exact("train.accept_inexact_resume", False)
    assert record.updates == 0 and other_rank.exact is None


NOW = {"step": 3, "loss": "a3", "params": "p3", "batch": "b3"}


@pytest.mark.parametrize(
    ("changed", "field", "said", "context", "causes"),
    [
        (
            {"batch": "YY", "loss": "XX", "params": "ZZ"},
            "batch",
            "the batch differs",
            "batch fingerprint b3, now YY; the loss and the parameters differ too",
            ["loader's position not restored", "outside run.dataloader"],
        ),
        (
            {"loss": "XX", "params": "ZZ"},
            "loss",
            "the loss differs",
            "loss fingerprint a3, now XX; the parameters differ too; the batch matches",
            ["hidden state", "reset in the wrong place", "dropout", "not a run stream"],
        ),
        (
            {"params": "ZZ"},
            "params",
            "the parameters differ",
            "params fingerprint p3, now ZZ; the batch and the loss match",
            ["optimizer, scheduler", "run.track(...)", "reset at the top of an epoch"],
        ),
    ],
)
def test_the_message_names_the_first_field_that_differs_and_its_usual_causes(
    caplog, changed, field, said, context, causes
):
    """Cause before effect: another batch changes the loss and the update, another loss the update. The
    message lists the usual causes for that field and claims none of them."""
    record = FakeRecord()
    check = ResumeSelfCheck(record, ROWS, resumed=True)
    with caplog.at_level(logging.ERROR, logger="repro.run"):
        check.check({**NOW, **changed})
    assert check.state["quantity"] == field
    line = caplog.records[-1].getMessage()
    assert line.startswith(f"RESUME IS NOT EXACT: at step 3 {said} from what the interrupted run")
    assert f"({context}). Usual causes: " in line
    assert all(cause in line for cause in causes), line
    with pytest.raises(InexactResumeError) as raised:
        check.require_exact("train.accept_inexact_resume", False)
    message = str(raised.value)
    assert message.startswith(f"the resume is not exact: at step 3 {said} from the interrupted run")
    assert all(cause in message for cause in causes), message
    assert message.endswith("accept an inexact resume with train.accept_inexact_resume=true")
    assert "\n" not in message
    # Accepted: recorded as not exact, no error.
    check.require_exact("train.accept_inexact_resume", True)
    assert record.manifest["resumes"][-1]["self_check"]["exact"] is False


def test_fields_the_interrupted_run_did_not_record_are_not_compared(caplog):
    """A loop that passes no batch to run.step has no batch digest: the loss and parameters decide."""
    check = ResumeSelfCheck(FakeRecord(), [{"step": 3, "loss": "a3", "params": "p3"}], resumed=True)
    with caplog.at_level(logging.ERROR, logger="repro.run"):
        check.check({"step": 3, "loss": "a3", "params": "ZZ"})
    assert check.state["quantity"] == "params"
    assert "now ZZ; the loss matches)" in caplog.text
