"""repro.ops.audit on CPU: says it checked a CPU, names the ops that would fail on CUDA, leaves the model alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import repro.ops as R
from repro.ops import auditing


class Seg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.pad = nn.ReflectionPad2d(1)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, x):
        y = self.pool(self.pad(self.drop(self.bn(self.conv(x)))))
        return torch.cumsum(self.up(y), 1)


@pytest.fixture(autouse=True)
def _keep_determinism_setting():
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_cpu_audit_says_cpu_and_lists_cuda_problems():
    torch.manual_seed(0)
    model = Seg()
    x, target = torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2, 6, 6))
    model.conv.weight.grad = torch.ones_like(model.conv.weight)
    grad_before = model.conv.weight.grad.clone()
    stats_before = model.bn.running_mean.clone()
    rng_before = torch.get_rng_state()
    torch.use_deterministic_algorithms(False)
    report = R.audit(model, x, loss_fn=lambda out: F.cross_entropy(out, target))
    text = str(report)
    assert "checked on CPU: this says nothing about CUDA" in text
    assert "ops known to be nondeterministic on CUDA found in the model (4)" in text
    ops = {f.op: f for f in report.cuda_risks}
    assert set(ops) == {
        "aten._adaptive_avg_pool2d_backward",
        "aten.cumsum",
        "aten.nll_loss2d_forward",
        "aten.reflection_pad2d_backward",
    }
    assert ops["aten.cumsum"].replacement == "repro.ops.cumsum"
    assert "repro.ops.adaptive_avg_pool2d" in ops["aten._adaptive_avg_pool2d_backward"].replacement
    assert [f.op for f in report.strict_only] == ["aten.upsample_bilinear2d_backward"]
    assert not report.clean and report.to_dict()["checked_on_cuda"] is False
    # The model, the RNG and the global flag are as before.
    assert torch.equal(model.conv.weight.grad, grad_before) and torch.equal(
        model.bn.running_mean, stats_before
    )
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert not torch.are_deterministic_algorithms_enabled()


def test_audit_is_clean_after_switching_to_repro_ops():
    model = Seg()
    R.make_deterministic(model)
    x, target = torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2, 6, 6))
    with R.patch():
        report = R.audit(model, (x,), loss_fn=lambda out: F.cross_entropy(out, target))
    assert report.clean and not report.strict_only, str(report)
    assert "found in the model: none" in str(report)
    assert "checked on CPU" in str(report)


def test_restores_strict_warn_only_setting_and_reports_other_errors():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("shape mismatch somewhere")

    torch.use_deterministic_algorithms(True, warn_only=True)
    report = R.audit(Broken(), {"x": torch.ones(1)})
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert report.error == "RuntimeError: shape mismatch somewhere"
    assert "failed for another reason" in str(report)


def test_cuda_messages_map_to_replacements():
    messages = [
        "adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation, but you set "
        "'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for this operation...",
        "upsample_bicubic2d_backward_out_cuda does not have a deterministic implementation, but you set ...",
        "avg_pool3d_backward_cuda does not have a deterministic implementation, but you set ...",
        "median CUDA with indices output does not have a deterministic implementation, but you set ...",
        "nll_loss2d_forward_out_cuda_template does not have a deterministic implementation, but you set ...",
        "ctc_loss_backward_gpu does not have a deterministic implementation, but you set ...",
        "adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation, but you set ...",
        "Deterministic behavior was enabled with either `torch.use_deterministic_algorithms(True)` ... "
        "you must set an environment variable before running your PyTorch application: "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8 or CUBLAS_WORKSPACE_CONFIG=:16:8.",
        "some unrelated warning",
    ]
    found = {f.op: f for f in auditing._parse(messages, "warned")}
    assert found["adaptive_avg_pool2d_backward_cuda"].count == 2
    assert found["adaptive_avg_pool2d_backward_cuda"].replacement.startswith(
        "repro.ops.adaptive_avg_pool2d"
    )
    assert found["upsample_bicubic2d_backward_out_cuda"].replacement.startswith(
        "repro.ops.interpolate"
    )
    assert found["avg_pool3d_backward_cuda"].replacement.startswith("repro.ops.avg_pool3d")
    assert found["median CUDA with indices output"].replacement == "repro.ops.median"
    assert found["nll_loss2d_forward_out_cuda_template"].replacement.startswith(
        "repro.ops.nll_loss"
    )
    assert found["ctc_loss_backward_gpu"].replacement is None
    assert "CUBLAS_WORKSPACE_CONFIG" in found["cuBLAS"].replacement
    assert len(found) == 7
    report = auditing.AuditReport("cuda:0 (GPU)", True, warned=list(found.values()))
    text = str(report)
    assert "checked on" not in text and "x2" in text and "no replacement in repro.ops" in text


def test_an_op_that_raises_on_cpu_too_is_reported_with_every_other_offender():
    class Unpool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.unpool = nn.MaxUnpool1d(2)

        def forward(self, x):
            y = self.lin(x).clone().put_(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))
            pooled, index = F.max_pool1d(y.unsqueeze(1), 2, return_indices=True)
            return self.unpool(pooled, index)

    model = Unpool()
    report = R.audit(model, torch.randn(3, 4))
    assert [(f.op, f.how) for f in report.raised] == [("put_", "raised")]
    assert [f.api for f in report.warned] == [
        "nn.MaxUnpool1d/2d/3d"
    ]  # found by the warn_only re-run
    assert "raised under strict mode (1)" in str(report) and "no replacement in repro.ops" in str(
        report
    )
    assert model.lin.weight.grad is None
