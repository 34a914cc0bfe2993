"""The one redaction pass (repro.base.secrets.redact_text) on every spelling Hydra and the kit write, the
log record factory that applies it to every log line, and the InsideRun marker for paths in a run."""

from __future__ import annotations

import logging

import pytest
import yaml

from repro.base.checks import InsideRun, check_fields
from repro.base.config import CsvLoggerConfig, TensorBoardLoggerConfig, WandbLoggerConfig
from repro.base.errors import ConfigValueError
from repro.base.secrets import (
    REDACTED,
    redact_logging,
    redact_text,
    redact_tree,
    redact_yaml_files,
)

PW = "Pw-s3cr3t-4242"


@pytest.mark.parametrize(
    "text",
    [
        # As a command line and a single run's files write it.
        f"logger.mlflow.tracking_uri=https://user:{PW}@host/x",
        # As Hydra writes a sweep's overrides: ':' and '=' escaped.
        f"logger.mlflow.tracking_uri=https\\://user\\:{PW}@host/x",
        f"service.api_key\\={PW}",
        # Quoted, as a user quotes a value.
        f"logger.mlflow.run_name='api_key={PW}'",
        f'service.password="{PW}"',
        # In the middle of Hydra's override_dirname and of a log line.
        f"experiment=quick,service.api_key={PW},train.max_steps=2",
        f"sweep job 1/2 started: a=1 +db_password={PW} b=2",
        # Quoted by an error message: a URL, a mapping, an authorization header.
        f"API request to http://user:{PW}@127.0.0.1:9/api failed",
        f"bad settings {{'token': '{PW}', 'x': 1}}",
        f'{{"wandb_key": "{PW}"}}',
        f"Authorization: Bearer {PW}",
    ],
)
def test_every_spelling_of_a_secret_is_hidden(text):
    clean = redact_text(text)
    assert PW not in clean and REDACTED in clean


def test_redacting_twice_changes_nothing_more():
    once = redact_text(f"+logger.api_key={PW}: unknown key; see https://u:{PW}@h and 'token': 'x'")
    assert (
        once
        == "+logger.api_key=<redacted>: unknown key; see https://u:<redacted>@h and 'token': <redacted>"
    )
    assert redact_text(once) == once


def test_what_is_no_secret_is_left_as_it_is():
    text = "key_dim=5 mytoken=3 monkey=4 https://host/x user@host experiment=quick"
    assert redact_text(text) == text


def test_a_tree_hides_secret_keys_and_every_string():
    tree = {"service": {"api_key": PW, "url": f"postgres://u:{PW}@db/x"}, "over": [f"token={PW}"]}
    assert PW not in repr(redact_tree(tree))
    assert redact_tree({"key_dim": 5, "name": "a"}) == {"key_dim": 5, "name": "a"}
    # A count of tokens is no credential; a number under a password key is.
    assert redact_tree({"max_tokens": 1024, "pin_password": 1234}) == {
        "max_tokens": 1024,
        "pin_password": REDACTED,
    }
    assert redact_text("model.max_tokens=1024 max_tokens=abc") == (
        "model.max_tokens=1024 max_tokens=<redacted>"
    )


def test_hydra_files_of_a_sweep_are_rewritten_redacted(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {"overrides": {"task": [f"logger.mlflow.run_name=https\\://u\\:{PW}@h"]}},
                "logger": {"mlflow": {"run_name": f"https://u:{PW}@h"}},
            }
        )
    )
    clean = tmp_path / "clean.yaml"
    clean.write_text("a: 1\n")
    before = clean.stat().st_mtime_ns
    redact_yaml_files(tmp_path)
    assert PW not in (tmp_path / "multirun.yaml").read_text()
    assert clean.stat().st_mtime_ns == before


def test_every_log_record_is_redacted_whatever_handler_writes_it(caplog):
    factory = logging.getLogRecordFactory()
    try:
        # Twice: installed once.
        redact_logging()
        redact_logging()
        with caplog.at_level(logging.INFO, logger="hydra.test"):
            logging.getLogger("hydra.test").info("\t#0 : a=1 url=https\\://u\\:%s@h", PW)
    finally:
        logging.setLogRecordFactory(factory)
    assert PW not in caplog.text and REDACTED in caplog.text


@pytest.mark.parametrize("value", ["../escape.csv", "/tmp/x.csv", "logs/../../x", "~/x", "C:\\x"])
def test_a_path_that_leaves_the_run_is_refused(value):
    assert not InsideRun().allows(value)
    with pytest.raises(ConfigValueError, match="inside the run directory"):
        check_fields({"path": value}, CsvLoggerConfig, "logger.csv")


@pytest.mark.parametrize(
    ("schema", "key"),
    [(CsvLoggerConfig, "path"), (TensorBoardLoggerConfig, "log_dir"), (WandbLoggerConfig, "dir")],
)
def test_every_logger_path_is_declared_inside_the_run(schema, key):
    check_fields({key: "logs/x"}, schema, "logger.x")
    with pytest.raises(ConfigValueError, match=f"logger.x.{key}="):
        check_fields({key: "../x"}, schema, "logger.x")
