"""nn.Module counterparts, make_deterministic and patch()."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from opcheck import compare, rng
from torch import nn

import repro.ops as R
from repro.ops import patching

LAYERS = [
    (nn.AdaptiveAvgPool1d(3), (2, 3, 7)),
    (nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
    (nn.AdaptiveAvgPool3d(2), (1, 2, 3, 5, 4)),
    (nn.AdaptiveMaxPool1d(3), (2, 3, 7)),
    (nn.AdaptiveMaxPool2d((2, 3), return_indices=True), (2, 3, 5, 7)),
    (nn.AvgPool3d(2, 1, 1), (1, 2, 3, 5, 4)),
    (nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    (nn.Upsample(size=(3, 4, 5), mode="trilinear", align_corners=True), (1, 2, 2, 3, 4)),
    (nn.Upsample(scale_factor=2), (2, 3, 4, 5)),
    (nn.UpsamplingBilinear2d(scale_factor=1.5), (2, 3, 4, 5)),
    (nn.ReflectionPad1d((1, 2)), (2, 3, 5)),
    (nn.ReflectionPad2d(1), (2, 3, 4, 5)),
    (nn.ReflectionPad3d(1), (1, 2, 3, 4, 5)),
    (nn.ReplicationPad1d(2), (2, 3, 5)),
    (nn.ReplicationPad2d((1, 0, 2, 1)), (2, 3, 4, 5)),
    (nn.ReplicationPad3d(1), (1, 2, 3, 4, 5)),
]


@pytest.mark.parametrize(
    "layer,shape", LAYERS, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else ""
)
def test_module_counterparts_match_stock_layers(layer, shape):
    ours = R.modules.REPLACEMENTS[type(layer)].__new__(R.modules.REPLACEMENTS[type(layer)])
    ours.__dict__.update(layer.__dict__)
    x = torch.randn(shape, generator=rng(len(shape)))
    compare(ours, layer, [x], atol=1e-5, rtol=1e-5)


def test_loss_and_embedding_modules():
    x, t = torch.randn(3, 4, 2, generator=rng(1)), torch.tensor([[0, 1], [3, -100], [2, 2]])
    w = torch.rand(4, generator=rng(2))
    compare(
        R.CrossEntropyLoss(w, label_smoothing=0.1),
        nn.CrossEntropyLoss(w, label_smoothing=0.1),
        [x, t],
        grad=[True, False],
        atol=1e-6,
        rtol=1e-6,
    )
    compare(
        R.NLLLoss(w, reduction="sum"),
        nn.NLLLoss(w, reduction="sum"),
        [x, t],
        grad=[True, False],
        atol=1e-6,
        rtol=1e-6,
    )
    bag = nn.EmbeddingBag(6, 3, mode="max")
    ours = R.EmbeddingBag(6, 3, mode="max", _weight=bag.weight.detach().clone())
    i, o = torch.tensor([1, 2, 5, 5, 0]), torch.tensor([0, 2])
    assert torch.equal(ours(i, o), bag(i, o))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReflectionPad2d(1), nn.AdaptiveAvgPool2d(3)
        )
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.frac = nn.FractionalMaxPool2d(2, output_size=2)

    def forward(self, x):
        return self.up(self.body(x))


class MyPool(nn.AdaptiveAvgPool2d):
    pass


def test_make_deterministic_swaps_in_place_and_reports():
    torch.manual_seed(0)
    net = Net()
    net.extra = MyPool(2)
    x = torch.randn(2, 3, 6, 6, generator=rng(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calls = []
    pool = net.body[2]
    pool.register_forward_hook(lambda *a: calls.append(1))
    expected = net(x)
    report = R.make_deterministic(net)
    assert (
        net.body[2] is pool
        and type(pool) is R.AdaptiveAvgPool2d
        and isinstance(pool, nn.AdaptiveAvgPool2d)
    )
    assert [e.path for e in report.swapped] == ["body.1", "body.2", "up"]
    assert [(e.path, "no replacement" in e.note) for e in report.left] == [
        ("frac", True),
        ("extra", False),
    ]
    assert "a subclass of torch.nn.pooling.AdaptiveAvgPool2d" in report.left[1].note
    text = str(report)
    assert (
        "body.2: torch.nn.pooling.AdaptiveAvgPool2d -> repro.ops.modules.AdaptiveAvgPool2d" in text
    )
    assert "functional calls" in text and report.to_dict()["swapped"][0]["path"] == "body.1"
    assert {k: v for k, v in net.state_dict().items()}.keys() == before.keys()
    torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
    assert len(calls) == 2  # the hook survived the swap
    assert R.make_deterministic(net).swapped == []  # idempotent
    root = nn.AdaptiveAvgPool2d(1)
    assert R.make_deterministic(root).swapped[0].path == "" and type(root) is R.AdaptiveAvgPool2d


_MISSING = object()
_ORIGINALS = [
    (owner, name, owner.__dict__.get(name, _MISSING)) for owner, name, _ in patching.TARGETS
]


def _all_stock() -> bool:
    """Every patched name holds its original object again (or is absent from Tensor's own dict)."""
    return all(
        owner.__dict__.get(name, _MISSING) is original for owner, name, original in _ORIGINALS
    )


def test_patch_routes_calls_and_restores_even_after_errors():
    assert _all_stock() and not R.is_enabled()
    assert F.interpolate is not R.interpolate and "cumsum" not in torch.Tensor.__dict__
    x = torch.randn(2, 3, 4, 5, generator=rng(4))
    with R.patch():
        assert R.is_enabled()
        assert F.interpolate is R.interpolate and torch.cumsum is R.cumsum
        assert F.adaptive_max_pool2d(x, 2, True)[1].shape == (2, 3, 2, 2)
        assert torch.equal(x.cumsum(1), R.cumsum(x, 1))
        assert torch.equal(x.flatten().median(0).values, torch.median(x.flatten(), 0).values)
        assert torch.equal(
            nn.Upsample(scale_factor=2, mode="bilinear")(x),
            R.interpolate(x, scale_factor=2, mode="bilinear"),
        )
        with R.patch():  # nesting keeps the outer patch
            pass
        assert R.is_enabled()
        assert torch.equal(
            F.interpolate(x, scale_factor=2, mode="area"),
            R.interpolate(x, scale_factor=2, mode="area"),
        )
    assert _all_stock()
    with pytest.raises(KeyError), R.patch():
        raise KeyError("boom")
    assert _all_stock() and not R.is_enabled()
    R.enable()
    R.enable()
    assert R.is_enabled()
    R.disable()
    assert _all_stock()
