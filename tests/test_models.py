"""One typed model per JSON document (issue 17): each round-trips, each rejects a bad document with
one line naming the source and the JSON path, and no module outside a document's model validates
that document or spells its contract itself."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fakes.comparisons import comparison

from bt_flywheel.core.errors import InputError
from bt_flywheel.dataset.facets import FacetDefinition, FacetDefinitions
from bt_flywheel.dataset.row_model import DatasetRow
from bt_flywheel.evals.eval_config import EvalConfig
from bt_flywheel.handoff.contract import HandoffDoc, load_handoff
from bt_flywheel.handoff.draft_model import HandoffDraft, HandoffInvalid
from bt_flywheel.label.judge import JudgeDoc
from bt_flywheel.label.labels_doc import LabelsDoc
from bt_flywheel.verify.ledger import Ledger
from bt_flywheel.verify.ledger_model import LedgerDoc
from bt_flywheel.verify.route import decide

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "bt_flywheel"

LABELS_EXPORT = {
    "contract": "bt-flywheel-labels/v1", "kind": "export", "created_at": "2026-01-01T00:00:00Z",
    "dataset_rows": "rows.jsonl",
    "rubric": {"version": "v1", "sha256": "ab", "text": "pass when polite", "labels": ["pass", "fail"], "path": None},
    "rubric_version": "v1", "labeler_model": "judge-1", "instructions": "label each row",
    "rows": [{"id": "r1", "input": {"q": "hi"}, "context": {"bucket": "passing"}, "label": "pass",
              "expected": None, "rationale": "polite"},
             {"id": "r2", "input": "x", "context": None, "label": None, "expected": None, "rationale": None}],
}
EVAL_CONFIG = {"project": "bot", "experiment_name": "e1", "dataset": {"path": "rows.jsonl"},
               "task": "agent.py:run", "scorers": ["ExactMatch", {"name": "class_scores", "args": {"classes": ["a"]}}],
               "trials": 3, "max_concurrency": 4, "split": "validation", "first": 10, "params": {"model": "m"},
               "description": "d"}
FACETS = {"version": 1, "facets": [
    {"name": "issues", "description": "what went wrong", "prompt": "p", "messages": [{"role": "system", "content": "s"}],
     "suffix_messages": [], "span_filter": "span_attributes.type = 'llm'", "value_path": "output",
     "input_from": "span", "captured": {"spans": 2}, "model": "gpt-x", "output_schema": {"type": "json_object"},
     "positive_limit": 5, "negative_limit": 6, "x-owner": "me"},
    {"name": "sentiment", "description": "", "prompt": "", "messages": [], "suffix_messages": [],
     "value_path": "metadata.facets.sentiment", "input_from": "root", "captured": {}}],
    "x-note": "kept"}
DRAFT = {"goal": "fewer bad refusals", "project": "bot", "outcome": "improved", "severity": "medium", "blocking": False,
         "confidence": {"level": "medium", "why": "one validation look"}, "summary": "The prompt fix held.",
         "findings": [{"id": "F1", "title": "over-refusal", "plane": "quality", "severity": "medium",
                       "route": "agent", "evidence": {"summary": "12 traces", "queries": ["SELECT 1"],
                                                      "trace_ids": ["t1"],
                                                      "links": [{"title": "t", "url": "https://x.test/t"}]}}],
         "changes": [{"artifact": "agent", "files": ["prompt.md"], "description": "d", "why_safe": "w"}],
         "next_steps": [{"intent": "review_change", "priority": "p1", "title": "review", "body": "b",
                         "destination": "code_review"}],
         "artifacts": [{"path": "notes.md", "kind": "notes"}],
         "links": [{"title": "doc", "url": "https://x.test/doc", "kind": "doc"}], "x-team": "ml"}


ROW = {"id": "0" * 32, "input": {"message": "hi"}, "expected": "pass", "tags": ["flywheel"],
       "created": "2026-01-01T00:00:00Z",
       "metadata": {"split": "train", "source": {"trace_id": "t1", "span_id": "s1", "project_id": "p",
                                                 "created": "2026-01-01T00:00:00Z"},
                    "label": {"status": "labeled", "value": "pass", "labeler": "score", "labeler_model": None,
                              "rubric_version": "score:x>=0.5", "labeled_at": "2026-01-02T00:00:00Z", "weak": True},
                    "curation": {"strategy": "score-balanced", "bucket": "passing", "facet": None,
                                 "selection_query": "abc", "seed": "flywheel-v1"},
                    "production": {"output": "kept as it was", "scores": {"x": 1}}}}


def test_dataset_row_round_trip_and_bad_field() -> None:
    row = DatasetRow.from_dict(ROW, source="rows.jsonl: row 1")
    assert row.to_dict() == ROW and DatasetRow.from_dict(row.to_dict()) == row
    assert (row.split, row.label.labeler, row.label.weak, row.label.labeled) == ("train", "score", True, True)
    assert row.source.trace_id == "t1" and row.curation.bucket == "passing"
    pending = {**ROW, "metadata": {**ROW["metadata"], "label": {"status": "pending", "labeler": "agent"}}}
    with pytest.raises(InputError) as info:
        DatasetRow.from_dict(pending, source="rows.jsonl: row 2")
    assert info.value.one_line() == "rows.jsonl: row 2: $.metadata.split: 'train' must be null"


def test_labels_round_trip_and_rows_keep_their_own_problems() -> None:
    doc = LabelsDoc.from_dict(LABELS_EXPORT, source="e.json")
    assert doc.to_dict() == LABELS_EXPORT
    assert LabelsDoc.from_dict(doc.to_dict()) == doc
    compact = LabelsDoc.from_dict({"contract": "bt-flywheel-labels/v1", "kind": "labels",
                                   "labels": [{"id": "r1", "label": "pass"}, {"id": 3}, "x"]})
    assert [e.problems for e in compact.entries] == [(), ("id: 3 is not of type string",),
                                                     ("'x' is not of type object",)]
    assert compact.where(compact.entries[0], "l.json") == "l.json: labels[0] (id r1)"
    assert LabelsDoc.from_dict(compact.to_dict()).entries[0] == compact.entries[0]


def test_the_file_labeler_reads_a_labels_json_file_through_the_model(tmp_path: Path) -> None:
    from bt_flywheel.label.base import FileLabeler, Rubric

    rubric = Rubric(version="v1", text="t", labels=["pass", "fail"])
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({**LABELS_EXPORT, "rows": [{"id": "r1", "label": "fail", "rationale": "rude"}]}))
    run = FileLabeler(str(path), rubric).label([{"id": "r1"}, {"id": "r2"}])
    assert run.labels["r1"].value == "fail" and run.labels["r1"].labeler_model == "judge-1"
    assert set(run.failed) == {"r2"}
    path.write_text(json.dumps({"labels": [{"id": "r1", "label": "pass"}]}))  # no contract: not a labels file
    with pytest.raises(InputError, match=r"labels.json: \$.contract: required property is missing"):
        FileLabeler(str(path), rubric).label([{"id": "r1"}])


def test_labels_bad_top_level_is_one_line_with_the_path() -> None:
    with pytest.raises(InputError) as info:
        LabelsDoc.from_dict({**LABELS_EXPORT, "rubric": {"text": "t"}}, source="e.json")
    assert info.value.one_line().startswith("e.json: $.rubric.version: required property is missing")


def test_handoff_round_trip_typed_fields_and_bad_field(tmp_path: Path) -> None:
    example = REPO / "examples" / "handoffs" / "needs_work.json"
    doc = load_handoff(example)
    raw = json.loads(example.read_text(encoding="utf-8"))
    assert doc.to_dict() == raw and HandoffDoc.from_dict(doc.to_dict()) == doc
    assert (doc.outcome, doc.severity, doc.blocking, doc.confidence, doc.verification_status, doc.project) == (
        raw["outcome"], raw["severity"], raw["blocking"], raw["confidence"]["level"],
        raw["verification"]["status"], raw["project"]["name"])
    with pytest.raises(InputError, match=r"^h\.json: invalid handoff: \$\.confidence\.level: 'sure' is not one of"):
        HandoffDoc.from_dict({**raw, "confidence": {**raw["confidence"], "level": "sure"}}, source="h.json")


def test_eval_config_round_trip_and_bad_field() -> None:
    config = EvalConfig.from_dict(EVAL_CONFIG, source="c.yaml")
    assert config.to_dict() == EVAL_CONFIG
    assert config.scorers[1].name == "class_scores" and config.dataset.path == "rows.jsonl"
    minimal = EvalConfig.from_dict({"project": "p", "dataset": {"name": "d"}, "task": "m:f", "scorers": ["x"]})
    assert EvalConfig.from_dict(minimal.to_dict()) == minimal and minimal.trials == 1
    with pytest.raises(InputError, match=r"^c\.yaml: \$\.trials: 0 is less than the minimum of 1$"):
        EvalConfig.from_dict({**EVAL_CONFIG, "trials": 0}, source="c.yaml")


def test_facet_definitions_round_trip_and_bad_field() -> None:
    doc = FacetDefinitions.from_dict(FACETS, source="f.yaml")
    assert doc.to_dict() == FACETS
    assert doc.facets[0].extra == {"x-owner": "me"} and doc.facets[1].value_path == "metadata.facets.sentiment"
    assert FacetDefinition("a").to_dict()["value_path"] == "metadata.facets.a"
    bad = {"facets": [FACETS["facets"][0], {**FACETS["facets"][1], "input_from": "trace"}]}
    with pytest.raises(InputError) as info:
        FacetDefinitions.from_dict(bad, source="f.yaml")
    assert info.value.one_line().startswith("f.yaml: $.facets[1].input_from: 'trace' is not one of ['root', 'span']")
    with pytest.raises(InputError, match=r"f.yaml: \$\.facets\[1\]\.name: duplicate facet 'issues'"):
        FacetDefinitions.from_dict({"facets": [FACETS["facets"][0]] * 2}, source="f.yaml")


def test_ledger_round_trip_and_bad_field(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.json", run_id="run-1")
    decide(comparison=comparison("inconclusive", candidate="exp-c1"), ledger=ledger, change="edit")
    ledger.record_look(candidate="cand:1", experiment="e1", experiment_id="e1-id", files=["a.py"], rows=20)
    on_disk = json.loads(ledger.path.read_text())
    doc = LedgerDoc.from_dict({**on_disk, "x-by": "test"}, source="ledger.json")
    assert doc.to_dict() == {**on_disk, "x-by": "test"}
    assert doc.loops[0].validation is not None and doc.loops[0].validation.verdict == "inconclusive"
    assert doc.looks is not None and doc.looks[0].files == ("a.py",) and doc.summary.eval_looks == 1
    on_disk["loops"][0]["route"] = "prompt"
    with pytest.raises(InputError) as info:
        LedgerDoc.from_dict(on_disk, source="ledger.json")
    assert info.value.one_line().startswith("ledger.json: $.loops[0].route: 'prompt' is not one of")


def test_handoff_draft_round_trip_and_every_violation() -> None:
    draft = HandoffDraft.from_dict(DRAFT, source="draft.yaml")
    assert draft.to_dict() == DRAFT
    assert HandoffDraft.from_dict(draft.to_dict()) == draft
    broken = {**DRAFT, "severity": "huge", "next_steps": [{"intent": "rerun", "title": "t", "body": "b",
                                                           "idempotency_key": "k"}]}
    with pytest.raises(HandoffInvalid) as info:
        HandoffDraft.from_dict(broken, source="draft.yaml")
    assert info.value.one_line().startswith("draft.yaml: invalid handoff draft: $.next_steps[0].idempotency_key: "
                                            "computed by `handoff build`")
    assert [v.path for v in info.value.violations] == ["$.next_steps[0].idempotency_key", "$.severity"]


JUDGE = {"contract": "bt-flywheel-judge/v1", "kind": "export", "created_at": "2026-01-01T00:00:00Z",
         "experiment": {"id": "exp-1", "name": "candidate", "project_id": "p1"},
         "rubric": {"version": "j1", "sha256": "ab", "text": "judge helpfulness",
                    "dimensions": [{"name": "helpful", "scale": [1, 5], "description": "d"}]},
         "judged_by": "judge-1", "instructions": "judge each row",
         "rows": [{"id": "r1", "dataset_row_id": "d1", "trial": 0, "input": "q", "expected": None, "output": "a",
                   "scores": {"helpful": 4}, "rationales": {"helpful": "answers it"}},
                  {"id": "r2", "dataset_row_id": None, "trial": 1, "input": "q2", "expected": "e", "output": "b",
                   "scores": {"helpful": None}, "rationales": {"helpful": None}}]}


def test_judge_file_round_trip_and_bad_field() -> None:
    doc = JudgeDoc.from_dict(JUDGE, source="judge.json")
    assert doc.to_dict() == JUDGE and JudgeDoc.from_dict(doc.to_dict()) == doc
    assert doc.rubric.dimension("helpful").high == 5 and doc.rows[0].scores == {"helpful": 4}
    with pytest.raises(InputError) as info:
        JudgeDoc.from_dict({**JUDGE, "experiment": {"name": "x"}}, source="judge.json")
    assert info.value.one_line().startswith("judge.json: $.experiment.id: required property is missing")


# -- one reader per document ---------------------------------------------------------------------

OWNERS = {  # schema -> the one module that validates it
    "comparison.schema.json": "verify/comparison_model.py",
    "dataset-row.schema.json": "dataset/row_model.py",
    "eval-config.schema.json": "evals/eval_config.py",
    "facet-definitions.schema.json": "dataset/facets.py",
    "handoff-draft.schema.json": "handoff/draft_model.py",
    "handoff.schema.json": "handoff/contract.py",
    "judge.schema.json": "label/judge.py",
    "labels.schema.json": "label/labels_doc.py",
    "ledger.schema.json": "verify/ledger_model.py",
    "session.schema.json": "core/session_file.py",
}
CONTRACTS = {  # contract id -> the module that owns the document
    "bt-flywheel-comparison/v1": "verify/comparison_model.py",
    "bt-flywheel-handoff/v1": "handoff/contract.py",
    "bt-flywheel-judge/v1": "label/judge.py",
    "bt-flywheel-labels/v1": "label/labels_doc.py",
    "bt-flywheel-ledger/v1": "verify/ledger_model.py",
    "bt-flywheel-session/v1": "core/session_file.py",
}


def _constants(path: Path) -> set[str]:
    """Every string literal that is a whole schema file name or contract id (not prose mentioning one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wanted = set(OWNERS) | set(CONTRACTS)
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in wanted}


def test_every_schema_has_an_owner_and_only_the_owner_names_it() -> None:
    assert set(OWNERS) == {p.name for p in (REPO / "schemas").glob("*.schema.json")}
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        for name in _constants(path):
            owner = OWNERS.get(name) or CONTRACTS[name]
            if module != owner:
                strays.append(f"{module} names {name!r} (read it through {owner})")
    assert not strays, strays
    for owner in {*OWNERS.values(), *CONTRACTS.values()}:
        assert (PACKAGE / owner).is_file(), owner


VALIDATORS = {"check", "violations", "schema_errors", "validator", "raise_first", "explain"}


def _validates(path: Path) -> set[str]:
    """The core.schemas validation functions a module uses (imported by name or as `schemas.<fn>`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "bt_flywheel.core.schemas":
            used |= {alias.name for alias in node.names} & VALIDATORS
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "schemas"
              and node.attr in VALIDATORS):
            used.add(node.attr)
    return used


def test_only_the_models_validate_documents() -> None:
    """A reader that validated a raw document itself (and then poked at its keys) fails here."""
    owners = set(OWNERS.values())
    strays = {str(p.relative_to(PACKAGE)): sorted(_validates(p)) for p in sorted(PACKAGE.rglob("*.py"))
              if str(p.relative_to(PACKAGE)) not in owners | {"core/schemas.py"} and _validates(p)}
    assert not strays, f"validate through the document's model instead: {strays}"


def test_a_document_found_valid_is_not_validated_again_but_any_change_is(monkeypatch) -> None:
    """Readers along one pipeline (handoff, report, route, ledger) each read the same comparison:
    its content, once found valid, is not validated again in the process. A copy with the same
    content is the same document; a changed value or a JSON type jsonschema tells apart (a tuple
    for an array, 1 for true) is validated afresh and still rejected."""
    import copy

    from bt_flywheel.core import schemas
    from bt_flywheel.verify.comparison_model import ComparisonDoc

    checked: list[str] = []
    real = schemas.validator

    class Counting:
        def __init__(self, name: str) -> None:
            self.name = name

        def iter_errors(self, instance):
            checked.append(self.name)
            return real(self.name).iter_errors(instance)

    monkeypatch.setattr(schemas, "_valid", {})
    monkeypatch.setattr(schemas, "validator", Counting)
    doc = comparison("improved")
    for same in (doc, doc, copy.deepcopy(doc), json.loads(json.dumps(doc))):
        assert ComparisonDoc.from_dict(same).target_score.verdict == "improved"
    assert checked == ["comparison.schema.json"]
    tupled = copy.deepcopy(doc)
    tupled["scores"][0]["ci"] = tuple(tupled["scores"][0]["ci"])
    with pytest.raises(InputError, match=r"\$\.scores\[0\]\.ci"):
        ComparisonDoc.from_dict(tupled)
    with pytest.raises(InputError, match=r"\$\.keep"):
        ComparisonDoc.from_dict({**doc, "keep": 1})
    doc["alpha"] = "0.05"  # the very object found valid before, changed in place
    with pytest.raises(InputError, match=r"\$\.alpha"):
        ComparisonDoc.from_dict(doc)
    assert len(checked) == 4


def test_every_shipped_schema_is_valid_draft_2020_12_and_an_outside_one_is_checked_when_used(tmp_path, monkeypatch):
    """core.schemas.validator skips the meta-schema check for the schemas shipped beside the
    package (it costs every process 10-100 ms a schema): this is that check. A schema given
    through FLYWHEEL_SCHEMAS_DIR is still checked when first used."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from bt_flywheel.core import schemas

    shipped = sorted((REPO / "schemas").glob("*.schema.json"))
    assert shipped and all(p.parent == schemas.SCHEMA_DIR for p in shipped)
    for path in shipped:
        Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))
    (tmp_path / "session.schema.json").write_text(json.dumps({"type": "object", "minProperties": "two"}))
    monkeypatch.setenv("FLYWHEEL_SCHEMAS_DIR", str(tmp_path))
    monkeypatch.setattr(schemas, "load_schema", schemas.load_schema.__wrapped__)
    monkeypatch.setattr(schemas, "validator", schemas.validator.__wrapped__)
    with pytest.raises(SchemaError, match="'two' is not of type 'integer'"):
        schemas.validator("session.schema.json")
