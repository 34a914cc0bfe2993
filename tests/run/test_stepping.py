"""Optimizer stepping: accumulation windows, the loss scaling, clipping, the grad scaler, autocast."""

from __future__ import annotations

import pytest
import torch

from repro.base.config import RunConfig
from repro.run.checkpointing import StateError
from repro.run.stepping import Stepping


def settings(**kw) -> RunConfig:
    return RunConfig(**kw)


def model_and_batches(n=4):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    xs = [torch.randn(5, 3) for _ in range(n)]
    return model, xs


def test_a_window_gives_the_mean_gradient_of_its_batches():
    model, xs = model_and_batches(3)
    stepping = Stepping(settings(accumulate_grad_batches=3), "cpu")
    want = torch.autograd.grad(sum(model(x).square().mean() for x in xs) / 3, model.weight)[0]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    stepped = []
    for x in xs:
        stepping.backward(model(x).square().mean(), batches_left=None)
        grad = model.weight.grad.clone()
        stepped.append(stepping.optimizer_step(opt))
    assert stepped == [False, False, True]
    assert torch.allclose(grad, want, atol=1e-6)
    # Zeroed after the step.
    assert model.weight.grad is None


def test_the_last_window_of_an_epoch_is_shorter():
    stepping = Stepping(settings(accumulate_grad_batches=4), "cpu")
    assert stepping.window_size(None) == 4
    assert stepping.window_size(10) == 4
    assert stepping.window_size(2) == 2
    assert stepping.window_size(0) == 1
    loss = torch.tensor(6.0, requires_grad=True)
    stepping.backward(loss, batches_left=2)
    assert stepping.window == 2 and loss.grad == 0.5 and not stepping.should_step()
    stepping.backward(torch.tensor(1.0, requires_grad=True), batches_left=1)
    assert stepping.should_step() and stepping.window_ends()


def test_without_accumulation_the_loss_is_not_divided():
    stepping = Stepping(settings(), "cpu")
    loss = torch.tensor(3.0, requires_grad=True)
    stepping.backward(loss, batches_left=1)
    assert loss.grad == 1.0 and stepping.should_step()


def test_step_before_backward_is_refused():
    stepping = Stepping(settings(accumulate_grad_batches=2), "cpu")
    with pytest.raises(StateError, match=r"run.optimizer_step\(\) before run.backward\(loss\)"):
        stepping.optimizer_step(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
    with pytest.raises(StateError, match="accumulate_grad_batches=2 needs run.backward"):
        stepping.window_ends()
    # Without accumulation a loop may record steps without run.backward.
    assert Stepping(settings(), "cpu").window_ends()


def test_start_epoch_opens_a_new_window():
    stepping = Stepping(settings(accumulate_grad_batches=3), "cpu")
    stepping.backward(torch.tensor(1.0, requires_grad=True))
    assert stepping.micro == 1
    stepping.start_epoch()
    assert stepping.micro == 0
    stepping.backward(torch.tensor(1.0, requires_grad=True))
    stepping.end_window()
    assert stepping.micro == 0


def test_clipping_bounds_the_gradient_norm():
    param = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([param], lr=1.0)
    stepping = Stepping(settings(gradient_clip_val=0.5), "cpu")
    stepping.backward((param * torch.tensor([30.0, 40.0, 0.0, 0.0])).sum())
    assert stepping.optimizer_step(opt)
    assert torch.allclose(param.detach(), torch.tensor([-0.3, -0.4, 0.0, 0.0]), atol=1e-5)


def test_16_mixed_has_a_scaler_that_scales_the_loss():
    stepping = Stepping(settings(precision="16-mixed"), "cpu")
    assert isinstance(stepping.scaler, torch.amp.GradScaler)
    param = torch.nn.Parameter(torch.ones(1))
    stepping.backward(param.sum() * 2)
    assert param.grad.item() == 2.0 * stepping.scaler.get_scale()
    opt = torch.optim.SGD([param], lr=0.5)
    assert stepping.optimizer_step(opt)
    # Unscaled before the step: 1 - 0.5 * 2.
    assert param.item() == 0.0
    assert Stepping(settings(), "cpu").scaler is None


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16), ("32-true", torch.float32)],
)
def test_autocast_follows_the_precision(precision, dtype):
    stepping = Stepping(settings(precision=precision), "cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with stepping.autocast():
        assert (a @ b).dtype == dtype
