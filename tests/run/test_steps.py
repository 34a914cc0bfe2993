"""What a step records: measurements in one transfer, accumulation windows, the step's rows, and
where the training loader stands in its epoch."""

from __future__ import annotations

import torch

from repro.core.fingerprint import float_bits, sample_digests, tensors_digest
from repro.run.passes import ActivePasses
from repro.run.self_check import ResumeSelfCheck
from repro.run.steps import StepRecorder, Window, measure


def test_measure_reads_loss_metrics_digests_and_parameters():
    x, y = torch.randn(4, 3), torch.arange(4)
    params = [("w", torch.randn(2, 2)), ("b", torch.randn(2))]
    loss = torch.tensor(0.25, dtype=torch.float32)
    got = measure(loss, {"acc": torch.tensor(0.5), "lr": 3}, (x, y, "not a tensor"), params)
    assert got.loss.dtype == torch.float64 and float(got.loss) == 0.25
    # Plain numbers first, then tensors.
    assert list(got.scalars) == ["lr", "acc"] and got.scalars == {"lr": 3.0, "acc": 0.5}
    assert got.digests == list(sample_digests(x, y))
    assert got.params == tensors_digest(params)
    assert got.n == 4


def test_measure_without_batch_or_parameters():
    got = measure(torch.tensor(1.0), {}, None, None)
    assert got.digests is None and got.params is None and got.n == 1
    assert measure(torch.tensor(1.0), {}, (torch.zeros(5, 1),), None, n=7).n == 7


def test_a_window_averages_its_batches():
    window = Window()
    window.add(measure(torch.tensor(1.0), {"acc": 0.5}, (torch.zeros(2, 1),), None))
    window.add(measure(torch.tensor(2.0), {"acc": 1.0}, (torch.ones(3, 1),), None))
    assert window.n == 5 and float(window.loss()) == 1.5
    assert window.means() == {"acc": 0.75} and len(window.digests) == 5
    single = Window()
    single.add(measure(torch.tensor(0.1), {}, None, None))
    assert float(single.loss()) == float(torch.tensor(0.1, dtype=torch.float32).double())


class FakeRecord:
    def __init__(self) -> None:
        self.fingerprints: list[tuple[dict, list | None]] = []
        self.manifest: dict = {}
        self.last_row = None

    def log_fingerprint(self, row, batch_digests=None) -> None:
        self.fingerprints.append((dict(row), batch_digests))


class FakeMetrics:
    def __init__(self) -> None:
        self.added: list[tuple[int, dict]] = []
        self.rows: list[dict] = []

    def add(self, n, values) -> None:
        self.added.append((n, values))

    def log_row(self, row) -> None:
        self.rows.append(row)


def test_the_recorder_writes_each_steps_rows():
    record, metrics, shown = FakeRecord(), FakeMetrics(), []
    recorder = StepRecorder(
        record,
        ResumeSelfCheck(record, [], resumed=False),
        metrics,
        log_every=2,
        learning_rate=lambda: 0.1,
        progress=shown.append,
    )
    params = [("w", torch.ones(2))]
    for step in (1, 2):
        recorder.add(measure(torch.tensor(1.0), {"acc": 0.5}, None, None))
        recorder.add(measure(torch.tensor(2.0), {"acc": 1.0}, None, params))
        window = recorder.close_window(step, epoch=0)
        assert window.n == 2
    mean = torch.tensor([1.0, 2.0], dtype=torch.float64).mean()
    row = {"step": 2, "epoch": 0, "loss": float_bits(mean), "params": tensors_digest(params)}
    assert record.fingerprints[-1] == (row, None)
    assert [n for n, _ in metrics.added] == [1, 1, 1, 1]
    assert metrics.added[1][1] == {"loss": 2.0, "acc": 1.0}
    # A train row every log_every steps only.
    assert metrics.rows == [
        {"split": "train", "epoch": 0, "step": 2, "loss": 1.5, "acc": 0.75, "lr": 0.1}
    ]
    assert len(shown) == 2


class FakeLoader:
    def __init__(self, length: int, position=None) -> None:
        self.length, self.position = length, position

    def __len__(self) -> int:
        return self.length


def test_passes_follow_the_innermost_loader():
    state = {"steps": 3, "finished": False}
    passes = ActivePasses(lambda: state["steps"], lambda: state["finished"])
    assert passes.batches_left() is None and not passes.at_epoch_end()
    train, val = FakeLoader(10, (0, 4)), FakeLoader(2, (0, 1))
    assert passes.loader_started(train) == 3
    assert passes.batches_left() == 7 and passes.windows(3) == (2, 4)
    passes.loader_started(val)
    assert passes.batches_left() == 2
    passes.loader_stopped(val)
    train.position = (0, 10)
    assert passes.at_epoch_end()
    # A pass ends once the run is finished and it drove a step.
    assert not passes.should_stop(3)
    state["finished"] = True
    assert not passes.should_stop(3)
    state["steps"] = 4
    assert passes.should_stop(3)
