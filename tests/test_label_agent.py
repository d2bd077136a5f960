"""The lazy judge: `label export` / `label apply` (schemas/labels.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bt_flywheel.core.errors import InputError
from bt_flywheel.label.agent import apply_labels_file, export_pending, read_rows
from bt_flywheel.label.base import Rubric, mark_pending

RUBRIC = Rubric(version="refusal-v1", text="fail when the bot should have refused", labels=["pass", "fail"])


def rows_file(tmp_path: Path, n: int = 5) -> Path:
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "id": f"{i:032x}", "input": {"message": f"message {i}"}, "expected": None, "tags": ["flywheel"],
            "metadata": {"split": None, "source": {"trace_id": f"t{i}", "span_id": f"s{i}", "project_id": "p",
                                                   "created": "2026-01-01T00:00:00Z"},
                         "curation": {"strategy": "score-balanced", "bucket": "failing" if i % 2 else "passing",
                                      "facet": None, "selection_query": "abc", "seed": "flywheel-v1",
                                      "validation_fraction": 0.2},
                         "production": {"output": "PRODUCTION ANSWER", "scores": {}}},
        }
        rows.append(mark_pending(row, rubric_version=RUBRIC.version))
    path = tmp_path / "dataset_rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fill(export: Path, answers: dict[int, Any], *, model: str | None = "claude-code-session") -> Path:
    doc = json.loads(export.read_text())
    for index, value in answers.items():
        doc["rows"][index]["label"] = value
    doc["labeler_model"] = model
    export.write_text(json.dumps(doc))
    return export


def test_export_holds_pending_rows_rubric_and_version(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    info = export_pending(rows, RUBRIC, tmp_path / "export.json")
    doc = json.loads((tmp_path / "export.json").read_text())
    assert info["exported"] == 5
    assert doc["contract"] == "bt-flywheel-labels/v1" and doc["kind"] == "export"
    assert doc["rubric"]["version"] == "refusal-v1" and doc["rubric"]["labels"] == ["pass", "fail"]
    assert [r["id"] for r in doc["rows"]] == [f"{i:032x}" for i in range(5)]
    assert all(r["label"] is None for r in doc["rows"])
    assert "PRODUCTION ANSWER" not in (tmp_path / "export.json").read_text()  # not shown unless the rubric asks


def test_partial_file_applies_partially_and_reports_what_is_left(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    export = tmp_path / "export.json"
    export_pending(rows, RUBRIC, export)
    result = apply_labels_file(fill(export, {0: "pass", 3: "FAIL"}), rows)
    assert (result.applied, len(result.left), result.rejected) == (2, 3, False)
    stored = {r["id"]: r for r in read_rows(rows)}
    first = stored[f"{0:032x}"]["metadata"]
    assert first["label"]["value"] == "pass" and first["label"]["labeler"] == "agent"
    assert first["label"]["labeler_model"] == "claude-code-session"
    assert first["label"]["rubric_version"] == "refusal-v1"
    assert first["split"] in ("train", "validation")
    assert stored[f"{3:032x}"]["expected"] == "fail"
    assert stored[f"{1:032x}"]["metadata"]["label"]["status"] == "pending"
    # the next export holds only what is left; applying it keeps the earlier labels
    export_pending(rows, RUBRIC, export)
    assert len(json.loads(export.read_text())["rows"]) == 3
    result = apply_labels_file(fill(export, {0: "fail"}), rows)
    assert (result.applied, len(result.left)) == (1, 2)
    stored = {r["id"]: r for r in read_rows(rows)}
    assert stored[f"{0:032x}"]["metadata"]["label"]["value"] == "pass"  # not lost
    assert stored[f"{3:032x}"]["metadata"]["label"]["value"] == "fail"


def test_malformed_rows_are_named_one_per_line_and_nothing_is_written(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    export = tmp_path / "export.json"
    export_pending(rows, RUBRIC, export)
    apply_labels_file(fill(export, {0: "pass"}), rows)
    before = rows.read_text()
    doc = json.loads(export.read_text())
    doc["rows"][1]["label"] = "maybe"
    doc["rows"][2]["label"] = 3
    doc["rows"][4]["label"] = "fail"
    doc["rows"].append({"id": "f" * 32, "label": "pass"})
    doc["rows"].append(dict(doc["rows"][3], label="pass"))
    doc["rows"].append({"label": "pass"})
    export.write_text(json.dumps(doc))
    result = apply_labels_file(export, rows)
    assert result.rejected and rows.read_text() == before
    joined = "\n".join(result.problems)
    assert len(result.problems) == 5, joined
    assert f"rows[1] (id {1:032x}): label 'maybe' is not one of pass, fail" in joined
    assert f"rows[2] (id {2:032x}): label: 3 is not of type string or null" in joined
    assert f"rows[5] (id {'f' * 32}): unknown id" in joined
    assert f"rows[6] (id {3:032x}): duplicate id" in joined
    assert "rows[7]: id: required property is missing" in joined
    # --skip-bad applies the good rows and still names the bad ones
    result = apply_labels_file(export, rows, skip_bad=True)
    assert not result.rejected and len(result.problems) == 5 and result.applied == 1
    stored = {r["id"]: r for r in read_rows(rows)}
    assert stored[f"{0:032x}"]["metadata"]["label"]["value"] == "pass"
    assert stored[f"{4:032x}"]["metadata"]["label"]["value"] == "fail"
    assert stored[f"{1:032x}"]["metadata"]["label"]["status"] == "pending"


@pytest.mark.parametrize("doc, message", [
    ({"kind": "export"}, "$.contract: required property is missing"),
    ({"contract": "bt-flywheel-labels/v1", "kind": "export", "rows": []}, "$.rubric: required property is missing"),
    ({"contract": "bt-flywheel-labels/v1", "kind": "guess"}, "$.kind: 'guess' is not one of"),
])
def test_a_file_that_breaks_the_schema_is_rejected_whole(tmp_path: Path, doc: dict, message: str) -> None:
    rows = rows_file(tmp_path)
    before = rows.read_text()
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        apply_labels_file(path, rows)
    assert message in info.value.one_line() and str(path) in info.value.one_line()
    assert rows.read_text() == before


def test_not_json_names_line_and_column(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    path = tmp_path / "labels.json"
    path.write_text('{"contract": "bt-flywheel-labels/v1",\n "kind": }')
    with pytest.raises(InputError, match=r"labels.json:2:\d+: invalid JSON"):
        apply_labels_file(path, rows)


def test_compact_labels_file_needs_the_rubric_and_matches_its_version(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"contract": "bt-flywheel-labels/v1", "kind": "labels", "rubric_version": "refusal-v1",
                                "labels": [{"id": f"{4:032x}", "label": "fail", "rationale": "should refuse"}]}))
    with pytest.raises(InputError, match="needs --rubric"):
        apply_labels_file(path, rows)
    result = apply_labels_file(path, rows, rubric=RUBRIC)
    assert result.applied == 1
    with pytest.raises(InputError, match="does not match --rubric"):
        apply_labels_file(path, rows, rubric=Rubric(version="refusal-v2", text="x", labels=["pass", "fail"]))
