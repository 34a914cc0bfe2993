"""Every ``repro.ops`` replacement against the stock op on PyTorch's own OpInfo samples.

For each OpInfo of an op that ``repro.ops`` replaces (``opinfo.REPLACED``) and
every dtype it lists for the device: ``sample_inputs`` and ``reference_inputs``
(forward, and backward where the sample requires grad), the same samples made
non-contiguous, every ``error_inputs`` entry (ours raises the stock exception
type), ``gradcheck``/``gradgradcheck`` and forward-mode AD (``torch.func.jvp``)
on a few float64 samples per op. Comparison rules are in ``opinfo.py``.

Speed: by default at most ``REPRO_OPINFO_CAP`` (4) samples of each kind per op
and dtype, and of PyTorch's large reference images (over 100k elements) only
the first float32 and uint8 one per op; ``REPRO_OPINFO_CAP=0`` runs every
sample (minutes on a CPU). ``python tests/ops/opinfo.py`` prints the
agreement over every sample (``docs/ops.md``).

On CUDA (tests marked ``gpu``): the same checks against the stock CUDA op,
and every case runs ours twice and requires the same bits.
"""

from __future__ import annotations

import os

import opinfo as O
import pytest
import torch
from torch.func import jvp

if not O.AVAILABLE:
    pytest.skip(O.WHY_NOT, allow_module_level=True)

CAP = int(os.environ.get("REPRO_OPINFO_CAP", "4")) or None
MAIN_DTYPES = (torch.float32, torch.float64, torch.uint8)
NAMES = list(O.opinfos())
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def _cases(device: str) -> list:
    return [(name, dtype) for name in NAMES for dtype in O.dtypes(O.opinfos()[name], device)]


def _ids(case) -> str:
    name, dtype = case
    return f"{name}-{str(dtype).removeprefix('torch.')}"


def _pick(name: str, device: str, dtype: torch.dtype):
    """The samples this run uses: CAP of each kind for float32, float64 and uint8, half as many
    (at least one) for other dtypes; large ones only for float32/uint8 (the first of each kind)."""
    op = O.opinfos()[name]
    picked, large_seen = [], set()
    cap = CAP if CAP is None or dtype in MAIN_DTYPES else max(1, CAP // 2)
    for kind, s in O.samples(op, device, dtype, cap=cap):
        if O.stock_broken(name, s):
            continue
        if CAP and O.numel(s) > O.LARGE:
            if dtype not in (torch.float32, torch.uint8) or kind in large_seen:
                continue
            large_seen.add(kind)
        picked.append((kind, s))
    return picked


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", _cases("cpu"), ids=_ids)
def test_samples_agree_with_stock(case, device):
    """Forward and backward of every (capped) sample agree with stock under the rules."""
    _device(device)
    name, dtype = case
    if dtype not in O.opinfos()[name].supported_dtypes(device):
        pytest.skip(f"{dtype} is not listed for {device}")
    problems, checked = [], 0
    for kind, s in _pick(name, device, dtype):
        why = O.refused(name, s)
        if why:
            problem = O.check_refused(name, s, why)
        else:
            checked += 1
            outcome = O.compare(name, s, twice=device == "cuda")
            problem = "; ".join(outcome.problems) or None
        if problem:
            problems.append(f"{kind} {O.describe(s)}: {problem}")
    assert not problems, "\n".join(problems[:10])
    assert checked, "no sample was compared"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_noncontiguous_samples_agree_with_stock(name, device):
    """The small samples made non-contiguous (float32, else the first dtype listed)."""
    _device(device)
    op = O.opinfos()[name]
    listed = O.dtypes(op, device)
    dtype = torch.float32 if torch.float32 in listed else listed[0]
    problems = []
    for kind, s in O.samples(op, device, dtype, cap=CAP, large=False):
        if kind != "sample" or O.refused(name, s):
            continue
        outcome = O.compare(name, s, noncontiguous=True, twice=device == "cuda")
        problems.extend(f"{O.describe(s)}: {p}" for p in outcome.problems)
    assert not problems, "\n".join(problems[:10])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [n for n in NAMES if O.opinfos()[n].error_inputs_func is not None])
def test_error_inputs_raise_the_stock_exception(name, device):
    _device(device)
    op = O.opinfos()[name]
    errors = list(op.error_inputs_func(op, device))
    problems = [p for e in errors if (p := O.check_error(name, e))]
    assert not problems, "\n".join(problems)


#: Samples that reach our own code, for gradcheck and jvp (other embedding_bag modes call the
#: stock op, which has neither a double backward nor forward-mode AD).
OWN_CODE = {"nn.functional.embedding_bag": lambda s: s.kwargs.get("mode") == "max"}


def _float64_grad_samples(name: str, n: int):
    op = O.opinfos()[name]
    if torch.float64 not in op.supported_backward_dtypes("cpu"):
        return []
    own = OWN_CODE.get(name, lambda s: True)
    found = []
    for _, s in O.samples(op, "cpu", torch.float64, large=False):
        if O.refused(name, s) or not O.leaves(s) or O.numel(s) > 2000 or not own(s):
            continue
        found.append(s)
        if len(found) == n:
            break
    return found


GRAD_NAMES = [n for n in NAMES if _float64_grad_samples(n, 1)]


@pytest.mark.parametrize("name", GRAD_NAMES)
def test_gradcheck_and_gradgradcheck(name):
    for i, s in enumerate(_float64_grad_samples(name, 2)):
        f, xs = O.bind(O.REPLACED[name], s)
        xs = tuple(x.requires_grad_(True) for x in xs)
        assert torch.autograd.gradcheck(f, xs, fast_mode=True), O.describe(s)
        if i == 0:
            assert torch.autograd.gradgradcheck(f, xs, fast_mode=True), O.describe(s)


@pytest.mark.parametrize("name", GRAD_NAMES)
def test_forward_mode_ad(name):
    """``torch.func.jvp`` works and equals stock's jvp (where stock has a correct one),
    else agrees with our backward: <u, J v> == <J^T u, v>."""
    op = O.opinfos()[name]
    for s in _float64_grad_samples(name, 2):
        f, xs = O.bind(O.REPLACED[name], s)
        gen = torch.Generator().manual_seed(0)
        tangents = tuple(torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in xs)
        out, jv = jvp(f, xs, tangents)
        if op.supports_forward_ad:
            stock_f, _ = O.bind(op.op, s)
            _, stock_jv = jvp(stock_f, xs, tangents)
            torch.testing.assert_close(jv, stock_jv, msg=lambda m, s=s: f"{O.describe(s)}: {m}")
        else:
            # No stock jvp to compare with: ours must agree with our backward (tested above).
            wrt = tuple(x.clone().requires_grad_(True) for x in xs)
            u = torch.randn(out.shape, generator=gen, dtype=out.dtype)
            grads = torch.autograd.grad(f(*wrt), wrt, u, allow_unused=True)
            lhs = (u * jv).sum()
            rhs = sum((g * t).sum() for g, t in zip(grads, tangents, strict=True) if g is not None)
            torch.testing.assert_close(lhs, rhs, msg=lambda m, s=s: f"{O.describe(s)}: {m}")
