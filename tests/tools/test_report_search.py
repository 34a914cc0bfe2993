"""`repro report` on a hyperparameter search: the best trial, the trials sorted by objective (best
first, unfinished last), the figure of the objective against each searched parameter, and a
malformed search.json refused with one line. On search records written by hand; the example's
real searches are reported in tests/e2e/test_hparams_search_example.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from repro.tools.cli import main as repro_main

PARAMS = {
    "optimizer.lr": {"type": "float", "low": 0.0001, "high": 0.01, "log": True},
    "model.width": {"choices": [16, 32, 48]},
}


def write_search(sweep: Path, direction: str, values: list[float | None]) -> Path:
    trials = [
        {
            "number": i,
            "state": "complete" if v is not None else "fail",
            "params": {"optimizer.lr": 0.001 * (i + 1), "model.width": [16, 32, 48][i % 3]},
            "value": v,
            "run_dir": str(i),
            "resumed": i == 1,
            "error": None if v is not None else "ConfigValueError: boom",
        }
        for i, v in enumerate(values)
    ]
    record = {
        "kind": "hparams_search",
        "settings": {
            "params": PARAMS,
            "objective": "val_acc",
            "direction": direction,
            "n_startup_trials": 2,
            "batch": 1,
            "sampler_seed": 7,
            "n_trials": len(values),
        },
        "overrides": [],
        "trials": trials,
        "best": None,
    }
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "search.json").write_text(json.dumps(record))
    return sweep


def _rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO((sweep / "report" / "trials.csv").read_text())))


@pytest.mark.parametrize(
    "direction, order", [("maximize", ["2", "0", "1", "3"]), ("minimize", ["1", "0", "2", "3"])]
)
def test_trials_are_sorted_by_objective_best_first(tmp_path, capsys, direction, order) -> None:
    sweep = write_search(tmp_path / "s", direction, [0.5, 0.25, 0.75, None])
    # A failed trial: listed, last, and the exit status says the search is not all complete.
    assert repro_main(["report", str(sweep), "--no-plot"]) == 1
    out = capsys.readouterr().out
    best = order[0]
    assert f"best: trial {best}  val_acc=" in out
    assert f"run {sweep / best}" in out
    assert "trial 3 fail: ConfigValueError: boom" in out
    rows = _rows(sweep)
    assert [r["trial"] for r in rows] == order
    assert [r["rank"] for r in rows] == ["1", "2", "3", "-"]
    assert rows[[r["trial"] for r in rows].index("1")]["resumed"] == "yes"
    assert set(rows[0]) >= {"val_acc", "optimizer.lr", "model.width", "run_dir"}


def test_figure_has_a_panel_per_searched_key(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="the plots extra is not installed")
    sweep = write_search(tmp_path / "s", "maximize", [0.5, 0.25, 0.75])
    assert repro_main(["report", str(sweep)]) == 0
    assert "figure: " in capsys.readouterr().out
    svg = (sweep / "report" / "search.svg").read_text()
    assert "optimizer.lr" in svg and "model.width" in svg
    # The same search gives the same bytes (no date in the PDF or SVG).
    first = (sweep / "report" / "search.pdf").read_bytes()
    assert repro_main(["report", str(sweep)]) == 0
    assert (sweep / "report" / "search.pdf").read_bytes() == first


def test_json_output(tmp_path, capsys) -> None:
    sweep = write_search(tmp_path / "s", "maximize", [0.5, 0.75])
    assert repro_main(["report", str(sweep), "--no-plot", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["best"]["number"] == 1
    assert [t["number"] for t in data["trials"]] == [1, 0]


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda r: r.update(kind="sweep"), "its kind is not hparams_search"),
        (lambda r: r["trials"][0].update(run_dir="../../etc"), "leaves the sweep directory"),
        (lambda r: r["trials"][0].update(value="1.0"), "not a finite number"),
        (lambda r: r["trials"][0]["params"].update(other=1), "parameters the search does not name"),
        (lambda r: r["trials"][0].update(value=None), "complete with no value"),
    ],
)
def test_a_malformed_search_record_is_refused_with_one_line(tmp_path, capsys, edit, says) -> None:
    sweep = write_search(tmp_path / "s", "maximize", [0.5])
    record = json.loads((sweep / "search.json").read_text())
    edit(record)
    (sweep / "search.json").write_text(json.dumps(record))
    assert repro_main(["report", str(sweep), "--no-plot"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_search_json_that_is_not_json(tmp_path, capsys) -> None:
    sweep = tmp_path / "s"
    sweep.mkdir()
    (sweep / "search.json").write_text("{not json")
    assert repro_main(["report", str(sweep)]) == 2
    assert "search.json: not valid JSON" in capsys.readouterr().err
