"""``repro.load_run`` with the model-build function a project declares once (``[tool.repro] build`` in its
``pyproject.toml``): used when the caller passes no ``build=``, only inside the project's own packages,
never read from the run directory."""

from __future__ import annotations

import shutil

import pytest
import torch

from repro import load_run
from repro.base.errors import ConfigValueError
from repro.run.load import LoadRunError

HOOK = "repro_fixture.rebuild:model_from_config"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The fixture as a project (own package: repro_fixture); ``declare(build)`` sets its build function."""

    def declare(build: str | None) -> None:
        line = f'build = "{build}"\n' if build is not None else ""
        (tmp_path / "pyproject.toml").write_text(
            f'[tool.repro]\nentry = "repro_fixture.train"\n{line}'
        )

    monkeypatch.chdir(tmp_path)
    return declare


def test_the_declared_build_function_rebuilds_the_model(default_fixture_run, project):
    project(HOOK)
    loaded = load_run(default_fixture_run.dir)
    saved = torch.load(default_fixture_run.dir / "weights.pt", weights_only=True)
    assert not loaded.model.training and loaded.model[0].in_features == loaded.cfg.data.features
    state = loaded.model.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)


def test_an_explicit_build_wins_over_the_declared_one(default_fixture_run, project):
    from repro_fixture.rebuild import model_from_config

    project("repro_fixture.rebuild:broken")
    seen = []
    loaded = load_run(
        default_fixture_run.dir, build=lambda cfg: seen.append(cfg) or model_from_config(cfg)
    )
    assert len(seen) == 1 and loaded.cfg == seen[0]


def test_a_build_function_outside_the_own_packages_is_refused(default_fixture_run, project):
    project("json:loads")
    with pytest.raises(ConfigValueError) as refused:
        load_run(default_fixture_run.dir)
    message = str(refused.value)
    assert "\n" not in message and message.endswith(
        "[tool.repro] build='json:loads' is not allowed: expected a function of the project's "
        "own packages (repro_fixture)"
    )


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (
            "repro_fixture.rebuild:broken",
            "[tool.repro] build 'repro_fixture.rebuild:broken' cannot build the model of "
            "{config} (KeyError: 'vocab_size'); fix the function, or restore the file",
        ),
        (
            "repro_fixture.rebuild:not_a_model",
            "returned a dict, not a torch.nn.Module",
        ),
        ("repro_fixture.rebuild:nothing", "repro_fixture.rebuild has no function nothing"),
        ("repro_fixture.no_such_module:build", "cannot be imported (ModuleNotFoundError"),
    ],
)
def test_a_build_function_that_fails_is_one_line(default_fixture_run, project, build, says):
    project(build)
    with pytest.raises(LoadRunError) as refused:
        load_run(default_fixture_run.dir)
    message = str(refused.value)
    assert "\n" not in message
    assert says.format(config=default_fixture_run.dir / "config.yaml") in message, message


def test_without_build_or_targets_the_refusal_names_the_hook(default_fixture_run, project):
    project(None)
    with pytest.raises(ConfigValueError, match=r"declare \[tool\.repro\] build in pyproject\.toml"):
        load_run(default_fixture_run.dir)


def test_a_build_declared_inside_the_run_directory_is_never_used(
    default_fixture_run, project, tmp_path, monkeypatch
):
    project(None)
    run = shutil.copytree(default_fixture_run.dir, tmp_path / "run")
    (run / "pyproject.toml").write_text(
        '[tool.repro]\nentry = "repro_fixture.train"\nbuild = "repro_fixture.rebuild:broken"\n'
    )
    monkeypatch.chdir(run)
    # The project found is the one above the run (no build declared): the model's _target_ is refused.
    with pytest.raises(ConfigValueError, match=r"model\._target_=None"):
        load_run(run)


def with_config(default_fixture_run, tmp_path, extra: str):
    run = shutil.copytree(default_fixture_run.dir, tmp_path / "run")
    with (run / "config.yaml").open("a") as f:
        f.write(extra)
    return run


@pytest.mark.parametrize(
    ("extra", "key", "value"),
    [
        ("model:\n  _target_: os.system\n  command: touch x\n", "model._target_", "os.system"),
        (
            "model:\n  layers:\n    - a: {_target_: builtins.exec}\n",
            "model.layers.0.a._target_",
            "builtins.exec",
        ),
        ("model:\n  _target_: 5\n", "model._target_", 5),
    ],
)
def test_a_model_target_the_run_chose_is_refused_before_the_build_function_runs(
    default_fixture_run, project, tmp_path, extra, key, value
):
    """The declared function gets the run's config, which is data: a target outside the project's
    own packages in the model's node is refused first, so building the model never follows it. (Other
    nodes are the function's to check: it knows which it instantiates.)"""
    project("repro_fixture.rebuild:broken")
    run = with_config(default_fixture_run, tmp_path, extra)
    with pytest.raises(ConfigValueError) as refused:
        load_run(run)
    assert str(refused.value) == (
        f"{key}={value!r} is not allowed: expected a target of the project's own packages "
        "(repro_fixture.*) before [tool.repro] build 'repro_fixture.rebuild:broken' runs"
    )
    assert not (tmp_path / "x").exists()


def test_a_foreign_target_outside_the_model_node_is_left_to_the_build_function(
    default_fixture_run, project, tmp_path
):
    """An optimizer's ``torch.optim.AdamW`` in a run's config does not stop loading its model."""
    project(HOOK)
    run = with_config(default_fixture_run, tmp_path, "optimizer:\n  _target_: torch.optim.AdamW\n")
    assert isinstance(load_run(run).model, torch.nn.Sequential)


def test_targets_the_caller_allows_pass_to_the_build_function(
    default_fixture_run, project, tmp_path
):
    project(HOOK)
    run = with_config(default_fixture_run, tmp_path, "model:\n  _target_: torch.nn.Identity\n")
    with pytest.raises(ConfigValueError, match=r"model\._target_='torch\.nn\.Identity'"):
        load_run(run)
    assert isinstance(load_run(run, targets=("torch.nn.",)).model, torch.nn.Sequential)
