"""Invalid arguments: every replacement raises the exception type the stock op raises.

One call per check the replacements make themselves (shapes, dtypes, ranges,
modes); the OpInfo ``error_inputs`` are in ``test_ops_opinfo.py``. Arguments
a replacement refuses by design (``antialias=True``, ``grid_sample(mode=
"bicubic")``, ``embedding_bag(mode="max", sparse=True)``) raise ``ValueError``
and are tested with each op.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import repro.ops as R

x4 = torch.rand(2, 3, 5, 5)
g = torch.rand(2, 4, 4, 2) * 2 - 1

# name: (stock, ours, call(fn))
CALLS = {
    "grid_sample 3d input": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(torch.rand(2, 3, 5), g, align_corners=False),
    ),
    "grid_sample grid dims": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(x4, torch.rand(2, 4, 4, 3), align_corners=False),
    ),
    "grid_sample batch": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(x4, torch.rand(3, 4, 4, 2), align_corners=False),
    ),
    "grid_sample dtype": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(x4, g.double(), align_corners=False),
    ),
    "grid_sample mode": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(x4, g, mode="foo", align_corners=False),
    ),
    "grid_sample padding": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(x4, g, padding_mode="foo", align_corners=False),
    ),
    "grid_sample empty": (
        F.grid_sample,
        R.grid_sample,
        lambda f: f(torch.rand(2, 3, 0, 5), g, align_corners=False),
    ),
    "bincount neg": (torch.bincount, R.bincount, lambda f: f(torch.tensor([-1, 2]), torch.rand(2))),
    "bincount 2d": (
        torch.bincount,
        R.bincount,
        lambda f: f(torch.tensor([[1, 2]]), torch.rand(1, 2)),
    ),
    "bincount weights len": (
        torch.bincount,
        R.bincount,
        lambda f: f(torch.tensor([1, 2]), torch.rand(3)),
    ),
    "bincount minlength": (
        torch.bincount,
        R.bincount,
        lambda f: f(torch.tensor([1, 2]), torch.rand(2), -1),
    ),
    "bincount float": (
        torch.bincount,
        R.bincount,
        lambda f: f(torch.tensor([1.0, 2.0]), torch.rand(2)),
    ),
    "aap2d empty spatial": (
        F.adaptive_avg_pool2d,
        R.adaptive_avg_pool2d,
        lambda f: f(torch.rand(2, 3, 0, 4), 2),
    ),
    "aap2d bad size": (F.adaptive_avg_pool2d, R.adaptive_avg_pool2d, lambda f: f(x4, (2, 2, 2))),
    "amp2d empty": (
        F.adaptive_max_pool2d,
        R.adaptive_max_pool2d,
        lambda f: f(torch.rand(2, 3, 0, 4), 2),
    ),
    "avgpool3d kernel": (
        F.avg_pool3d,
        R.avg_pool3d,
        lambda f: f(torch.rand(1, 1, 4, 4, 4), (2, 2)),
    ),
    "avgpool3d too big": (F.avg_pool3d, R.avg_pool3d, lambda f: f(torch.rand(1, 1, 2, 2, 2), 3)),
    "pad bad mode": (F.pad, R.pad, lambda f: f(x4, (1, 1), mode="foo")),
    "pad reflect too big": (F.pad, R.pad, lambda f: f(x4, (6, 6), mode="reflect")),
    "pad odd len": (F.pad, R.pad, lambda f: f(x4, (1,), mode="reflect")),
    "nll target shape": (
        F.nll_loss,
        R.nll_loss,
        lambda f: f(torch.rand(3, 4), torch.tensor([0, 1])),
    ),
    "nll target range": (
        F.nll_loss,
        R.nll_loss,
        lambda f: f(torch.rand(3, 4), torch.tensor([0, 1, 7])),
    ),
    "nll target dtype": (
        F.nll_loss,
        R.nll_loss,
        lambda f: f(torch.rand(3, 4), torch.tensor([0.0, 1.0, 2.0])),
    ),
    "nll weight shape": (
        F.nll_loss,
        R.nll_loss,
        lambda f: f(torch.rand(3, 4), torch.tensor([0, 1, 2]), torch.rand(3)),
    ),
    "nll reduction": (
        F.nll_loss,
        R.nll_loss,
        lambda f: f(torch.rand(3, 4), torch.tensor([0, 1, 2]), reduction="foo"),
    ),
    "nll 0d": (F.nll_loss, R.nll_loss, lambda f: f(torch.tensor(1.0), torch.tensor(0))),
    "ce smoothing": (
        F.cross_entropy,
        R.cross_entropy,
        lambda f: f(torch.rand(3, 4), torch.tensor([0, 1, 2]), label_smoothing=2.0),
    ),
    "eb max psw": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(
            torch.tensor([0, 1]),
            torch.rand(3, 2),
            torch.tensor([0]),
            mode="max",
            per_sample_weights=torch.rand(2),
        ),
    ),
    "eb offsets 2d": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(torch.tensor([[0, 1]]), torch.rand(3, 2), torch.tensor([0]), mode="max"),
    ),
    "eb no offsets": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(torch.tensor([0, 1]), torch.rand(3, 2), mode="max"),
    ),
    "eb weight 1d": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(torch.tensor([0, 1]), torch.rand(3), torch.tensor([0]), mode="max"),
    ),
    "eb first offset": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(torch.tensor([0, 1]), torch.rand(3, 2), torch.tensor([1]), mode="max"),
    ),
    "eb padding idx": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(
            torch.tensor([0, 1]), torch.rand(3, 2), torch.tensor([0]), mode="max", padding_idx=5
        ),
    ),
    "eb sgbf": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(
            torch.tensor([0, 1]),
            torch.rand(3, 2),
            torch.tensor([0]),
            mode="max",
            scale_grad_by_freq=True,
        ),
    ),
    "eb bad mode": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(torch.tensor([0, 1]), torch.rand(3, 2), torch.tensor([0]), mode="foo"),
    ),
    "eb index range": (
        F.embedding_bag,
        R.embedding_bag,
        lambda f: f(torch.tensor([0, 9]), torch.rand(3, 2), torch.tensor([0]), mode="max"),
    ),
    "scatter bad reduce": (
        torch.scatter_reduce,
        R.scatter_reduce,
        lambda f: f(torch.rand(3), 0, torch.tensor([0]), torch.rand(1), "foo"),
    ),
    "scatter index range": (
        torch.scatter_reduce,
        R.scatter_reduce,
        lambda f: f(torch.rand(3), 0, torch.tensor([5]), torch.rand(1), "prod"),
    ),
    "scatter dim range": (
        torch.scatter_reduce,
        R.scatter_reduce,
        lambda f: f(torch.rand(3), 2, torch.tensor([0]), torch.rand(1), "prod"),
    ),
    "cumsum dim": (torch.cumsum, R.cumsum, lambda f: f(x4, 5)),
    "median dim": (torch.median, R.median, lambda f: f(x4, 5)),
    "kth dim": (torch.kthvalue, R.kthvalue, lambda f: f(x4, 1, 5)),
    "index_select dim": (torch.index_select, R.index_select, lambda f: f(x4, 5, torch.tensor([0]))),
    "index_select range": (
        torch.index_select,
        R.index_select,
        lambda f: f(x4, 0, torch.tensor([7])),
    ),
    "index_select float idx": (
        torch.index_select,
        R.index_select,
        lambda f: f(x4, 0, torch.tensor([0.0])),
    ),
    "interp both": (F.interpolate, R.interpolate, lambda f: f(x4, 3, 2, mode="bilinear")),
    "interp neg scale": (
        F.interpolate,
        R.interpolate,
        lambda f: f(x4, scale_factor=-1.0, mode="bilinear"),
    ),
    "interp align nearest": (
        F.interpolate,
        R.interpolate,
        lambda f: f(x4, 3, mode="nearest", align_corners=True),
    ),
    "interp area size len": (F.interpolate, R.interpolate, lambda f: f(x4, (3, 3, 3), mode="area")),
}


def _raised(fn, call):
    try:
        call(fn)
    except Exception as e:  # noqa: BLE001 - any exception is the answer
        return e
    return None


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", list(CALLS))
def test_invalid_call_raises_the_stock_exception_type(name):
    stock, ours, call = CALLS[name]
    expected = _raised(stock, call)
    assert expected is not None, f"stock accepts {name}: drop or change the case"
    got = _raised(ours, call)
    assert got is not None, f"{name}: no error; stock raises {type(expected).__name__}: {expected}"
    assert type(got) is type(expected), (
        f"{name}: {type(got).__name__}: {got}; stock raises {type(expected).__name__}: {expected}"
    )
