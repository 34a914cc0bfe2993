"""The one reader of a run's record files (``repro.base.records``), as resume, load_run and evaluate use it:
every damaged file is one RunDirectoryError naming the file and what to do, never a parser's traceback."""

from __future__ import annotations

import io

import pytest
import torch

from repro import load_run
from repro.base.errors import RunDirectoryError
from repro.base.records import read_config, read_manifest
from repro.run.load import LoadRunError


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "holds a JSON list"),
        ("null", "holds a JSON null"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_a_damaged_run_json_is_one_line(tmp_path, text, says):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(RunDirectoryError, match=says) as refused:
        read_manifest(tmp_path, todo="do this")
    message = str(refused.value)
    assert "\n" not in message and "run.json" in message and message.endswith("do this")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a: [\n", "not valid YAML at line 2"),
        ("- 1\n- 2\n", "holds list"),
        ("just a string\n", "holds str"),
        ("repro:\n  seed: ${oops}\n", "does not resolve"),
        ("a: ${oc.env:REPRO_NO_SUCH_VARIABLE_EVER}\n", "does not resolve"),
        (b"a: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_a_damaged_config_yaml_is_one_line(tmp_path, text, says):
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(RunDirectoryError, match=says) as refused:
        read_config(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "config.yaml" in message and "restore" in message


def test_missing_and_non_regular_records_are_refused(tmp_path):
    with pytest.raises(RunDirectoryError, match="cannot be read"):
        read_manifest(tmp_path)
    (tmp_path / "config.yaml").mkdir()
    with pytest.raises(RunDirectoryError, match="not a regular file"):
        read_config(tmp_path)
    (tmp_path / "run.json").symlink_to(tmp_path / "run.json")
    with pytest.raises(RunDirectoryError, match="symlink loop"):
        read_manifest(tmp_path)


def test_an_intact_config_keeps_its_values_and_the_hydra_node_is_not_resolved(tmp_path):
    (tmp_path / "config.yaml").write_text("a: 1\nb: ${a}\nhydra:\n  run:\n    dir: ${now:%Y}\n")
    cfg = read_config(tmp_path)
    assert cfg.b == 1


def _run_with_weights(run_dir, data: bytes):
    run_dir.mkdir()
    (run_dir / "run.json").write_text('{"status": "completed"}')
    (run_dir / "config.yaml").write_text("a: 1\n")
    (run_dir / "weights.pt").write_bytes(data)
    return run_dir


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_saved(torch.nn.Linear(4, 2).state_dict()), r"other shapes \(weight \(2, 4\) vs \(2, 3\)"),
        (_saved({"other.weight": torch.zeros(2)}), "missing"),
        (b"PK\x03\x04" + b"\0" * 64, "damaged or not weights this kit wrote"),
        (_saved([1, 2]), "state dict"),
    ],
)
def test_weights_that_do_not_fit_or_load_are_one_line(tmp_path, data, says):
    run_dir = _run_with_weights(tmp_path / "run", data)
    with pytest.raises(LoadRunError, match=says) as refused:
        load_run(run_dir, build=lambda cfg: torch.nn.Linear(3, 2))
    message = str(refused.value)
    assert "\n" not in message and "weights_only" not in message
