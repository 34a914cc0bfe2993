"""Digests are exact, order-independent, and change with any single bit."""

from __future__ import annotations

import pytest
import torch

from repro import float_bits, tensor_digest, tensors_digest
from repro.core.fingerprint import _CHUNK, _SLAB, tensor_digest_device


def naive(t: torch.Tensor) -> int:
    """The definition, written out with Python ints: sum bits[i] * (2i+1) mod 2**64."""
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    bits = t.detach().contiguous().reshape(-1).view(width).tolist()
    return sum(b * (2 * i + 1) for i, b in enumerate(bits)) % 2**64


@pytest.mark.parametrize("n", [0, 1, 7, _CHUNK - 1, _CHUNK, _CHUNK + 5, 3 * _CHUNK + 11])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64])
def test_matches_the_definition(n, dtype):
    g = torch.Generator().manual_seed(n)
    t = (torch.randn(n, generator=g) * 1e3).to(dtype)
    assert int(tensor_digest_device(t)) % 2**64 == naive(t)


def test_large_tensor_goes_through_slabs():
    t = torch.randn(_SLAB + 3 * _CHUNK + 17, generator=torch.Generator().manual_seed(0))
    assert int(tensor_digest_device(t)) % 2**64 == naive(t)


def test_every_single_bit_flip_changes_the_digest():
    t = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    ref = tensor_digest(t)
    for index in (0, 1, 499, 999):
        for bit in range(32):
            u = t.clone()
            u.view(torch.int32)[index] ^= 1 << bit if bit < 31 else -(1 << 31)
            assert tensor_digest(u) != ref, (index, bit)


def test_covers_position_shape_dtype_and_names():
    t = torch.arange(6, dtype=torch.float32)
    assert tensor_digest(t) != tensor_digest(t.flip(0))
    assert tensor_digest(t) != tensor_digest(t.reshape(2, 3))
    assert tensor_digest(t) != tensor_digest(t.double())
    assert tensors_digest([("a", t)]) != tensors_digest([("b", t)])
    assert tensors_digest([("a", t), ("b", t + 1)]) != tensors_digest([("a", t + 1), ("b", t)])


def test_non_contiguous_equals_contiguous():
    t = torch.randn(8, 9)
    assert tensor_digest(t.T) == tensor_digest(t.T.contiguous())


def test_model_digest_is_stable_and_sensitive():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 300), torch.nn.Linear(300, 3))
    ref = tensors_digest(model.named_parameters())
    assert tensors_digest(model.named_parameters()) == ref
    with torch.no_grad():
        w = model[0].weight.view(-1)
        w.view(torch.int32)[12345] ^= 1
    assert tensors_digest(model.named_parameters()) != ref


def test_float_bits_is_exact():
    assert float_bits(torch.tensor(1.5)) == "3fc00000"
    assert float_bits(torch.tensor(1.5, dtype=torch.float64)) == "3ff8000000000000"
    assert float_bits(torch.tensor(0.1)) != float_bits(torch.tensor(0.1) + 1e-8)
    assert float_bits(torch.tensor(-0.0)) != float_bits(torch.tensor(0.0))
    with pytest.raises(ValueError):
        float_bits(torch.zeros(2))


@pytest.mark.parametrize("width", [0, 5, _CHUNK + 9])
def test_sample_digests_match_the_definition_per_row(width):
    from repro.core.fingerprint import sample_digests, sample_digests_device

    g = torch.Generator().manual_seed(width)
    x, y = torch.randn(4, width, generator=g), torch.randint(0, 9, (4,), generator=g)
    want = [(naive(x[i]) * 0x100000001B3 + naive(y[i : i + 1])) % 2**64 for i in range(4)]
    got = sample_digests(x, y)
    assert [v % 2**64 for v in got] == want
    assert sample_digests_device(x, y).tolist() == got  # the same values, still on the device


def test_step_digests_fit_in_one_host_transfer():
    """What a run can do: loss bits, parameter digest and sample digests moved to the host together."""
    from repro.core.fingerprint import (
        sample_digests,
        sample_digests_device,
        tensors_digest_from,
        tensors_digest_parts,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x, y = torch.randn(8, 5), torch.randint(0, 2, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    meta, params = tensors_digest_parts(model.named_parameters())
    samples = sample_digests_device(x, y)
    host = torch.cat(
        [
            loss.detach().double().reshape(1).view(torch.int64),
            *(p.reshape(1) for p in params),
            samples,
        ]
    ).cpu()  # the one transfer
    assert float_bits(host[:1].view(torch.float64)) == float_bits(loss.double())
    assert tensors_digest_from(meta, host[1 : 1 + len(params)].tolist()) == tensors_digest(
        model.named_parameters()
    )
    assert host[1 + len(params) :].tolist() == sample_digests(x, y)


def _lists():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 5, generator=g, requires_grad=True)
    yield "params", [w, torch.randn(5, generator=g), torch.randn(2, 3, 4, generator=g)]
    yield "non-contiguous", [w.t(), torch.randn(4, 4, generator=g)[:, ::2]]
    yield "half", [torch.randn(7, generator=g).half(), torch.randn(3, 3, generator=g).half()]
    yield "bytes", [torch.arange(9, dtype=torch.uint8), torch.arange(4, dtype=torch.uint8)]
    yield "ints", [torch.arange(-5, 5), torch.arange(3)]
    yield "mixed", [torch.randn(4, generator=g), torch.arange(4, dtype=torch.int32)]
    yield "bool", [torch.tensor([True, False]), torch.tensor([False])]


@pytest.mark.parametrize("name, tensors", list(_lists()), ids=[n for n, _ in _lists()])
def test_one_call_flatten_gives_the_digest_of_the_per_tensor_path(name, tensors, monkeypatch):
    """The one-call path for a model's parameters (one ``torch.cat`` of every tensor of a dtype) must
    give the bits of the per-tensor path, or every recorded fingerprint would change."""
    from repro.core import fingerprint

    fast = int(fingerprint._digest_flat(list(tensors)))
    monkeypatch.setattr(fingerprint, "_one_group", lambda tensors: None)
    assert int(fingerprint._digest_flat(list(tensors))) == fast
