"""The loop ledger file: counts loops and validation looks, stops with no_convergence, survives reloads."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from fakes.comparisons import comparison

from bt_flywheel.core.errors import InputError
from bt_flywheel.verify.ledger import Ledger, schema_path
from bt_flywheel.verify.route import decide


def _loop(ledger: Ledger, i: int, kept: bool) -> dict:
    doc = comparison("improved" if kept else "inconclusive", candidate=f"exp-c{i}")
    return ledger.append_loop(candidate=f"exp-c{i}", kept=kept, change=f"change {i}", comparison=doc)


def test_no_convergence_after_three_loops_without_a_kept_improvement(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.json")
    assert ledger.should_stop() is None
    _loop(ledger, 1, False)
    _loop(ledger, 2, False)
    assert ledger.should_stop() is None and ledger.consecutive_without_improvement == 2
    _loop(ledger, 3, False)
    assert ledger.should_stop() == "no_convergence"
    assert (ledger.loop_count, ledger.validation_looks) == (3, 3)


def test_a_kept_improvement_resets_the_count(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.json")
    _loop(ledger, 1, False)
    _loop(ledger, 2, False)
    _loop(ledger, 3, True)
    assert ledger.consecutive_without_improvement == 0 and ledger.should_stop() is None
    _loop(ledger, 4, False)
    _loop(ledger, 5, False)
    assert ledger.should_stop() is None
    _loop(ledger, 6, False)
    assert ledger.should_stop() == "no_convergence"


def test_max_loops_is_configurable(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.json", max_loops=2)
    _loop(ledger, 1, False)
    _loop(ledger, 2, False)
    assert ledger.should_stop() == "no_convergence"
    with pytest.raises(InputError, match="max_loops: must be an integer >= 1"):
        Ledger.open(tmp_path / "other.json", max_loops=0)


def test_survives_reload_and_resumes_counting(tmp_path: Path):
    path = tmp_path / "runs" / "ledger.json"
    first = Ledger.open(path, target="Refusal", run_id="fw-1")
    _loop(first, 1, False)
    _loop(first, 2, False)
    reopened = Ledger.open(path)
    assert reopened.target == "Refusal" and reopened.data["run_id"] == "fw-1"
    assert (reopened.loop_count, reopened.consecutive_without_improvement) == (2, 2)
    d = decide(comparison=comparison("equivalent", candidate="exp-c3"), ledger=reopened)
    assert (d.loop, d.action, d.outcome) == (3, "stop", "no_convergence")
    on_disk = json.loads(path.read_text())
    assert on_disk["summary"] == {"loops": 3, "validation_looks": 3, "kept": 0,
                                  "consecutive_without_improvement": 3, "stopped": "no_convergence"}
    assert on_disk["loops"][2]["decision"]["outcome"] == "no_convergence"
    assert not list(path.parent.glob(".ledger.json.*"))  # atomic write left no temp file


def test_file_validates_against_schema_and_carries_handoff_entry_keys(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.json")
    decide(comparison=comparison("inconclusive", candidate="exp-c1"), ledger=ledger, change="tighten refusal prompt",
           note="first try")
    decide(["dataset_gap"], ledger=ledger, candidate="dataset-v2", change_artifact="dataset")
    schema = json.loads(schema_path().read_text())
    doc = json.loads(ledger.path.read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["contract"] == "bt-flywheel-ledger/v1"
    first, second = ledger.handoff_entries()
    assert first == {"loop": 1, "kept": False, "route": "agent", "candidate": "exp-c1", "verdict": "inconclusive",
                     "note": "first try"}
    assert second["route"] == "dataset" and second["verdict"] is None
    assert doc["loops"][1]["validation"] is None and doc["summary"]["validation_looks"] == 1


def test_repeated_validation_looks_are_counted_and_warned(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.json")
    decide(comparison=comparison("inconclusive", candidate="exp-c1"), ledger=ledger)
    again = comparison("inconclusive", candidate="exp-c1")
    again["baseline"] = "exp-base-2"  # a different look at the same candidate
    d = decide(comparison=again, ledger=ledger)
    assert ledger.validation_looks == 2 and ledger.looks_for("exp-c1") == 2
    assert "already had 1 validation look" in d.warnings[0]


def test_corrupt_or_invalid_ledger_is_rejected_by_path(tmp_path: Path):
    bad = tmp_path / "ledger.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"ledger.json:1:2: invalid JSON"):
        Ledger.open(bad)
    ledger = Ledger.open(tmp_path / "ok.json")
    _loop(ledger, 1, False)
    doc = json.loads(ledger.path.read_text())
    doc["loops"][0]["kept"] = "yes"
    ledger.path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"ok.json: \$\.loops\[0\]\.kept: 'yes' is not of type boolean"):
        Ledger.open(ledger.path)
