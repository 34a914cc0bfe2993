"""The fixture experiment's written-out optimizer and schedule (tests/fixture/repro_fixture/loop.py)
give the bits of ``torch.optim.SGD(momentum=0.9)`` with ``StepLR``, as docs/testing.md says: the
kit's tests on the fixture then stand for a run with torch's own optimizer."""

from __future__ import annotations

import torch
from repro_fixture.loop import MomentumSGD, StepDecay
from torch import nn


def _train(make_optimizer, make_schedule, steps: int = 11) -> list[torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = make_optimizer(model.parameters())
    schedule = make_schedule(optimizer)
    g = torch.Generator().manual_seed(4)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
    return [p.detach().clone() for p in model.parameters()]


def test_the_fixture_optimizer_gives_the_bits_of_torch_sgd_with_steplr():
    ours = _train(
        lambda ps: MomentumSGD(ps, lr=0.2, momentum=0.9),
        lambda opt: StepDecay(opt, step_size=4, gamma=0.7),
    )
    torchs = _train(
        lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.7),
    )
    assert all(torch.equal(a, b) for a, b in zip(ours, torchs, strict=True))
