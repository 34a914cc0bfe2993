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
