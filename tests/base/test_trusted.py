"""A run directory's config names code: every ``_target_`` is resolved, not matched as text, before
anything is instantiated from it (``repro.check_targets``)."""

from __future__ import annotations

import sys

import pytest

from repro import ConfigValueError, check_targets
from repro.base.trusted import resolves_inside

OWN = ("repro_fixture.",)


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("repro_fixture.loop.build_model", True),
        ("repro_fixture.loop", True),
        # attribute walks out of the package: torch's and numpy's functions re-exported by a module
        ("repro_fixture.loop.torch.load", False),
        ("repro_fixture.loop.torch.hub.load", False),
        ("repro_fixture.loop.nn.Linear", False),
        ("os.system", False),
        ("builtins.exec", False),
        ("repro_fixture.nope.X", False),
        ("repro_fixture..loop", False),
        ("repro_fixture_evil.x", False),
    ],
)
def test_a_target_is_allowed_only_where_it_resolves_inside_the_prefixes(target, allowed):
    assert resolves_inside(target, OWN) is allowed


def test_nothing_outside_the_prefixes_is_imported_to_decide():
    sys.modules.pop("antigravity", None)
    assert not resolves_inside("antigravity.x", OWN)
    assert "antigravity" not in sys.modules


def test_nested_targets_are_checked_and_the_key_is_named():
    node = {
        "_target_": "repro_fixture.loop.build_model",
        "parts": [{"inner": {"_target_": "repro_fixture.loop.torch.load", "f": "x.pt"}}],
    }
    with pytest.raises(ConfigValueError) as refused:
        check_targets(node, "model.", OWN)
    assert str(refused.value) == (
        "model.parts.0.inner._target_='repro_fixture.loop.torch.load' is not allowed: expected a "
        "target of repro_fixture.*"
    )
    check_targets({"_target_": "repro_fixture.loop.build_model"}, "model.", OWN)
    with pytest.raises(ConfigValueError, match=r"data\._target_=5"):
        check_targets({"_target_": 5}, "data.", OWN)
