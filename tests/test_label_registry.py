"""The labeler registry (issue 17): one list of labelers behind a typed Protocol, the CLI's choices
come from it, the dataset-row schema's enum names exactly it; and the `score` labeler is a weak
label (issue 13) whose provenance says so and which `compare` calls out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bt_flywheel.cli import build_parser
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.schemas import load_schema
from bt_flywheel.label.base import Rubric, is_weak_label
from bt_flywheel.label.registry import REGISTRY, Labeler, LabelerOptions, labeler_names, make_labeler

REPO = Path(__file__).resolve().parents[1]


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_schema_enum_names_exactly_the_registered_labelers() -> None:
    schema = load_schema("dataset-row.schema.json")
    enum = schema["properties"]["metadata"]["properties"]["label"]["properties"]["labeler"]["enum"]
    assert sorted(enum) == sorted(labeler_names())


def test_curate_cli_offers_the_registry_and_nothing_else() -> None:
    action = next(a for a in _subparser("curate")._actions if a.dest == "labeler")
    assert tuple(action.choices) == labeler_names()


def test_no_labeler_name_literal_outside_the_label_package() -> None:
    """CLI, curate and schema code take the names from the registry (a renamed labeler cannot drift)."""
    names = labeler_names()
    offenders = []
    for path in [REPO / "src/bt_flywheel/commands/curate.py", *sorted((REPO / "src/bt_flywheel/curate").glob("*.py")),
                 REPO / "src/bt_flywheel/core/schemas.py"]:
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}: {n!r}" for n in names if f'"{n}"' in text or f"'{n}'" in text]
    assert offenders == []


def test_every_registered_labeler_builds_and_meets_the_protocol(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "a", "label": "pass"}\n')
    options = LabelerOptions(rubric=Rubric(version="v1", text="judge it", labels=["pass", "fail"]),
                             labels_path=labels, score="resolution", cache_path=tmp_path / "cache.jsonl")
    for name in labeler_names():
        labeler = make_labeler(name, options)
        assert isinstance(labeler, Labeler)
        assert labeler.name == name


def test_missing_options_name_the_flag() -> None:
    with pytest.raises(InputError, match="--labeler score needs --label-score"):
        make_labeler("score")
    with pytest.raises(InputError, match="--labeler llm needs --rubric"):
        make_labeler("llm")
    with pytest.raises(InputError, match="--labeler: expected one of llm, agent, file, score, got 'human'"):
        make_labeler("human")


def test_only_the_score_labeler_is_weak_and_its_provenance_says_so() -> None:
    assert [n for n, spec in REGISTRY.items() if spec.weak] == ["score"]
    row = {"id": "r1", "metadata": {"production": {"scores": {"resolution": 0.2}}}}
    run = make_labeler("score", score="resolution").label([row])
    provenance = run.labels["r1"].provenance()
    assert provenance["weak"] is True and provenance["labeler"] == "score"
    file_row = {"metadata": {"label": {**provenance, "labeler": "file", "weak": False}}}
    assert is_weak_label({"metadata": {"label": provenance}}) and not is_weak_label(file_row)


def test_compare_notes_when_the_ground_truth_is_a_weak_label(tmp_path: Path) -> None:
    from bt_flywheel.backends.store import Store
    from bt_flywheel.verify.compare import compare_experiments

    store_path = tmp_path / "store.duckdb"
    with Store(store_path) as store:
        pid = store.ensure_project("p")
        for name, good in (("base", 0.0), ("cand", 1.0)):
            eid = store.create_object("experiment", name, pid)
            rows = []
            for i in range(12):
                label = {"labeler": "score", "value": "pass", "weak": True} if i < 3 else {"labeler": "file",
                                                                                           "value": "pass"}
                rows.append({"id": f"{name}-{i}", "span_id": f"{name}-{i}", "root_span_id": f"{name}-{i}",
                             "is_root": True, "span_attributes": {"type": "eval", "name": "eval"},
                             "metadata": {"dataset_row_id": f"row-{i}", "trial": 0, "label": label},
                             "scores": {"ok": good if i % 2 else 0.5}})
            store.upsert_rows("experiment", eid, rows)
    doc = compare_experiments(store_path, "base", "cand", target="ok", n_resamples=0).to_dict()
    weak_notes = [n for n in doc["notes"] if "weak label" in n]
    assert len(weak_notes) == 1 and weak_notes[0].startswith("the ground truth of 3 row(s) is a weak label")
    json.dumps(doc)
