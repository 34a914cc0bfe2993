"""The project's ``[tool.repro]`` table (``repro.base.project``): its own packages, the ones a record may
name (a replayed entry module, the model-build function), and one line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.base.errors import ConfigValueError
from repro.base.project import find_project, read_project


def project_at(folder: Path, table: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.repro]\n{table}")
    return read_project(folder)


def test_own_packages_are_the_entry_package_unless_declared(tmp_path):
    project = project_at(tmp_path / "a", 'entry = "lab.train"\n')
    assert project.packages == ("lab",) and project.build is None
    assert project.owns("lab.train") and project.owns("lab.lm.train") and project.owns("lab")
    assert not project.owns("labs.train") and not project.owns("json.tool")
    declared = project_at(tmp_path / "b", 'entry = "lab.train"\npackages = ["lab", "vision"]\n')
    assert declared.packages == ("lab", "vision") and declared.owns("vision.train")


def test_the_entry_module_is_owned_even_outside_the_declared_packages(tmp_path):
    project = project_at(tmp_path, 'entry = "scripts.train"\npackages = ["lab"]\n')
    assert project.owns("scripts.train") and not project.owns("scripts.other")


@pytest.mark.parametrize("name", ["os; rm -rf ~", "lab..train", ".lab", "lab.train ", "", "lab-x"])
def test_a_malformed_module_name_is_never_owned(tmp_path, name):
    assert not project_at(tmp_path, 'entry = "lab.train"\n').owns(name)


def test_the_build_function_is_read_when_it_lies_in_the_own_packages(tmp_path):
    project = project_at(tmp_path, 'entry = "lab.train"\nbuild = "lab.model:from_config"\n')
    assert project.build == "lab.model:from_config"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            'entry = "lab.train"\nbuild = "json:loads"\n',
            "[tool.repro] build='json:loads' is not allowed: expected a function of the "
            "project's own packages (lab)",
        ),
        (
            'entry = "lab.train"\nbuild = "lab.model"\n',
            "[tool.repro] build='lab.model' is not allowed: expected 'package.module:function'",
        ),
        (
            'entry = "lab.train"\nbuild = "lab.model:build; import os"\n',
            "expected 'package.module:function'",
        ),
        ('build = "lab.model:build"\n', "project's own packages (none: set [tool.repro] packages)"),
        ('entry = "lab train"\n', "[tool.repro] entry='lab train' is not allowed"),
        ("entry = 3\n", "[tool.repro] entry=3 is not allowed"),
        ('packages = "lab"\n', "[tool.repro] packages='lab' is not allowed: expected a list"),
        ('packages = ["lab.model"]\n', "top-level package names"),
    ],
)
def test_a_bad_value_is_one_line_naming_file_key_value_and_what_is_allowed(tmp_path, table, says):
    with pytest.raises(ConfigValueError) as refused:
        project_at(tmp_path, table)
    message = str(refused.value)
    assert (
        message.startswith(f"{tmp_path / 'pyproject.toml'}: [tool.repro] ") and "\n" not in message
    )
    assert says in message, message


def test_the_nearest_project_above_the_start_and_never_one_inside_a_run(tmp_path):
    project_at(tmp_path, 'entry = "lab.train"\n')
    run = tmp_path / "outputs" / "run"
    project_at(run, 'entry = "evil.train"\nbuild = "evil.model:build"\n')
    assert find_project(run).entry == "evil.train"
    project = find_project(run, not_inside=(run,))
    assert project.root == tmp_path.resolve() and project.packages == ("lab",)
