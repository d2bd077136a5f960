"""`flywheel curate` end to end on a tmp local store holding span rows in Braintrust's shape.

The LLM labeler talks to a loopback OpenAI-compatible server inside the tests (test_label.FakeOpenAI);
nothing touches the internet.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import store_cache
from test_label import FakeOpenAI

from bt_flywheel.backends.store import Store
from bt_flywheel.core.ids import stable_row_id
from bt_flywheel.core.schemas import schema_errors
from bt_flywheel.dataset.split import validation_count

STORE = ".flywheel/store.duckdb"
NOW = datetime.now(UTC)   # once per module, so equal calls of make_spans make equal spans (and share a store)
FACET_VALUES = ["billing dispute", "login failure", "N/A", " none ", "No Match", "", None, "refund request"]


def make_spans(n: int, *, start: int = 0, seed: int = 1) -> list[dict[str, Any]]:
    """n traces: a root (input, output, scores.resolution, metadata.facets.issues) and a facet llm span."""
    rng = random.Random(seed)
    now = NOW
    rows = []
    for i in range(start, start + n):
        root = f"trace-{i:05d}"
        created = (now - timedelta(hours=rng.randint(1, 24 * 20))).isoformat().replace("+00:00", "Z")
        facet_value = FACET_VALUES[i % len(FACET_VALUES)]
        score = [0.0, 1.0, 0.5, 0.0, 1.0][i % 5]
        question = f"question {i}: " + ("please refund me" if score == 0.0 else "how do I log in")
        rows.append({"id": f"row-{root}", "span_id": root, "root_span_id": root, "span_parents": None,
                     "is_root": True, "created": created, "input": {"message": question},
                     "output": {"reply": f"PRODUCTION REPLY {i}"}, "scores": {"resolution": score},
                     "metadata": {"facets": {"issues": facet_value}, "channel": "email" if i % 2 else "chat"},
                     "span_attributes": {"name": "support_request", "type": "task"}, "tags": ["production"]})
        rows.append({"id": f"row-{root}-facet", "span_id": f"{root}-facet", "root_span_id": root,
                     "span_parents": [root], "is_root": False, "created": created,
                     "input": [{"role": "user", "content": question}], "output": facet_value,
                     "metadata": {"facet_name": "issues", "model": "brain-facet-1"},
                     "span_attributes": {"name": "facet", "type": "llm"}})
    return rows


def _upsert(path: str | Path, spans: list[dict[str, Any]], project: str) -> str:
    with Store(path) as store:
        project_id = store.ensure_project(project)
        store.upsert_rows("project_logs", project_id, spans)
    return project_id


def load(spans: list[dict[str, Any]], project: str = "support") -> str:
    """Upsert spans into the test's store; a new store holding the same spans as another test's
    is a copy of one built once per session (tests/store_cache.py)."""
    if Path(STORE).exists():
        return _upsert(STORE, spans, project)
    return store_cache.copy_of(STORE, store_cache.content_key("curate", project, spans),
                               lambda path: _upsert(path, spans, project))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def dataset_rows(name: str = "ds", project: str = "support") -> list[dict[str, Any]]:
    with Store(STORE, read_only=True) as store:
        dataset_id = store.find_object("dataset", name, project_id=store.find_project(project))
        return list(store.iter_rows("dataset", dataset_id)) if dataset_id else []


SCORE_ARGS = ["curate", "--project", "support", "--score", "resolution", "--lo", "0", "--hi", "1",
              "--window-days", "30", "--labeler", "score", "--threshold", "0.5", "--yes"]


def test_score_balanced_builds_valid_rows_from_the_trace_never_the_production_output(run_cli) -> None:
    project_id = load(make_spans(60))
    code, out, err = run_cli(*SCORE_ARGS, "--per-bucket", "10", "--out", "cur", "--dataset", "ds")
    assert code == 0, err
    rows = read_jsonl("cur/dataset_rows.jsonl")
    assert len(rows) == 20
    for row in rows:
        assert schema_errors(row, "dataset-row.schema.json") == []
        trace = row["metadata"]["source"]["trace_id"]
        assert row["id"] == stable_row_id(project_id, trace)
        assert row["input"]["message"].startswith(f"question {int(trace[-5:])}:")
        assert "PRODUCTION REPLY" not in json.dumps(row["expected"])
        assert row["expected"] == row["metadata"]["label"]["value"]
        assert row["metadata"]["label"]["labeler"] == "score"
    summary = json.loads(Path("cur/summary.json").read_text())
    assert summary["by_bucket"] == {"failing": 10, "passing": 10}
    assert summary["by_split"] == {"train": 16, "validation": 4}
    assert summary["by_labeler"] == {"score": 20}
    assert summary["shortfalls"] == []
    assert summary["dataset"]["result"]["inserted"] == 20
    assert len(dataset_rows()) == 20
    assert "did insert 20, update 0, unchanged 0" in out


def test_rerunning_curation_is_idempotent(run_cli) -> None:
    load(make_spans(60))
    args = [*SCORE_ARGS, "--per-bucket", "10", "--out", "cur", "--dataset", "ds", "--json"]
    assert run_cli(*args)[0] == 0
    first = {r["id"]: r for r in dataset_rows()}
    first_file = Path("cur/dataset_rows.jsonl").read_text()
    code, out, err = run_cli(*args)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["dataset"]["plan"] == {"insert": 0, "update": 0, "unchanged": 20, "not_uploaded_pending": 0,
            "label_changes": {}, "kept_stronger_labels": {}}
    second = {r["id"]: r for r in dataset_rows()}
    assert second.keys() == first.keys()
    assert {i: r["metadata"]["split"] for i, r in second.items()} == {i: r["metadata"]["split"] for i, r in first.items()}
    assert second == first  # not even a timestamp moved
    assert Path("cur/dataset_rows.jsonl").read_text() == first_file
    # a dry run says the same and writes nothing
    code, out, err = run_cli(*[a for a in args if a != "--json"], "--dry-run")
    assert "would insert 0, update 0, unchanged 20" in out


def test_rerun_is_idempotent_when_a_trace_holds_a_secret_shaped_string(run_cli) -> None:
    """Stored rows are redacted; comparing them with fresh unredacted rows must not see a change."""
    spans = make_spans(60)
    for span in spans:
        if span["is_root"]:
            span["input"]["message"] += " (my password: hunter2hunter2)"
    load(spans)
    args = [*SCORE_ARGS, "--per-bucket", "10", "--out", "cur", "--dataset", "ds", "--json"]
    assert run_cli(*args)[0] == 0
    assert "hunter2hunter2" not in Path("cur/dataset_rows.jsonl").read_text()
    first = {r["id"]: r for r in dataset_rows()}
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert json.loads(out)["dataset"]["plan"] == {"insert": 0, "update": 0, "unchanged": 20,
                                                  "not_uploaded_pending": 0,
            "label_changes": {}, "kept_stronger_labels": {}}
    assert {r["id"]: r for r in dataset_rows()} == first


def test_adding_traces_never_moves_old_rows_and_keeps_strata_within_one_row(run_cli) -> None:
    load(make_spans(40))
    args = [*SCORE_ARGS, "--out", "cur", "--dataset", "ds", "--per-bucket", "200"]
    assert run_cli(*args)[0] == 0
    before = {r["id"]: r["metadata"]["split"] for r in dataset_rows()}
    for start in (40, 75, 130):
        load(make_spans(35 if start != 130 else 7, start=start, seed=start))
        code, _, err = run_cli(*args)
        assert code == 0, err
        stored = dataset_rows()
        after = {r["id"]: r["metadata"]["split"] for r in stored}
        assert {i: after[i] for i in before} == before  # old rows keep their split
        assert len(after) > len(before)
        strata: dict[tuple, list[int]] = {}
        for row in stored:
            key = (row["metadata"]["curation"]["bucket"], row["metadata"]["label"]["value"])
            entry = strata.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += row["metadata"]["split"] == "validation"
        for key, (n, n_val) in strata.items():
            assert abs(n_val - 0.2 * n) <= 1, (key, n, n_val)
            assert n_val == validation_count(n, 0.2)
        before = after


def test_shortfalls_are_reported_not_silently_shrunk(run_cli) -> None:
    load(make_spans(20))  # 8 failing (score 0), 8 passing (score 1)
    code, out, err = run_cli(*SCORE_ARGS, "--per-bucket", "12", "--out", "cur", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["shortfalls"] == [
        {"facet": None, "bucket": "failing", "asked": 12, "got": 8, "missing": 4},
        {"facet": None, "bucket": "passing", "asked": 12, "got": 8, "missing": 4}]
    code, out, err = run_cli(*SCORE_ARGS, "--per-bucket", "12", "--out", "cur")
    assert "shortfall: failing: asked 12, got 8" in out


def test_where_and_explicit_trace_ids(run_cli) -> None:
    load(make_spans(40))
    code, out, err = run_cli(*SCORE_ARGS, "--per-bucket", "100", "--out", "cur", "--json",
                             "--where", "metadata.channel = 'email'", "--trace-id", "trace-00002",
                             "--trace-id", "trace-99999")
    assert code == 0, err
    summary = json.loads(out)
    rows = read_jsonl("cur/dataset_rows.jsonl")
    by_trace = {r["metadata"]["source"]["trace_id"]: r for r in rows}
    assert by_trace["trace-00002"]["metadata"]["curation"]["bucket"] == "explicit"  # a 0.5 score, chat channel
    assert all(int(t[-5:]) % 2 == 1 for t, r in by_trace.items() if r["metadata"]["curation"]["bucket"] != "explicit")
    assert summary["missing_trace_ids"] == ["trace-99999"]


def test_a_multiline_where_with_or_stays_inside_the_bucket_filter(run_cli) -> None:
    """`--where "a\nOR b"` must not escape the bucket's score condition and the time window."""
    load(make_spans(40))
    code, _, err = run_cli(*SCORE_ARGS, "--per-bucket", "100", "--out", "cur", "--json",
                           "--where", "metadata.channel = 'email'\nOR metadata.channel = 'chat'")
    assert code == 0, err
    rows = read_jsonl("cur/dataset_rows.jsonl")
    assert rows
    for row in rows:
        expected_score = {"failing": 0.0, "passing": 1.0}[row["metadata"]["curation"]["bucket"]]
        assert row["metadata"]["production"]["scores"]["resolution"] == expected_score


def test_selection_is_seeded(run_cli) -> None:
    load(make_spans(100))
    picks = []
    for seed in ("a", "a", "b"):
        run_cli(*SCORE_ARGS, "--per-bucket", "5", "--out", f"cur-{seed}-{len(picks)}", "--seed", seed)
        picks.append(sorted(r["id"] for r in read_jsonl(f"cur-{seed}-{len(picks)}/dataset_rows.jsonl")))
    assert picks[0] == picks[1] and picks[0] != picks[2]


FACETS_YAML = """
version: 1
facets:
  - name: issues
    description: the problem the customer raises
    span_filter: "span_attributes.type = 'llm' AND metadata.facet_name = 'issues'"
    positive_limit: 6
    negative_limit: 5
"""


def test_facet_weak_buckets_use_the_one_none_definition_and_the_span_input(run_cli) -> None:
    project_id = load(make_spans(48))
    Path("facets.yaml").write_text(FACETS_YAML)
    code, out, err = run_cli("curate", "--project", "support", "--facets", "facets.yaml", "--window-days", "30",
                             "--labeler", "score", "--label-score", "resolution", "--out", "cur", "--json")
    assert code == 0, err
    summary = json.loads(out)
    rows = read_jsonl("cur/dataset_rows.jsonl")
    assert summary["by_bucket"] == {"negative": 5, "positive": 6}
    for row in rows:
        trace = row["metadata"]["source"]["trace_id"]
        value = FACET_VALUES[int(trace[-5:]) % len(FACET_VALUES)]
        expected_bucket = "positive" if value in ("billing dispute", "login failure", "refund request") else "negative"
        assert row["metadata"]["curation"]["bucket"] == expected_bucket
        assert row["id"] == stable_row_id(project_id, trace, "issues")
        assert row["input"]["facet_name"] == "issues"
        assert row["input"]["input"] == [{"role": "user", "content": row["input"]["input"][0]["content"]}]
        assert row["metadata"]["source"]["span_id"] == f"{trace}-facet"
        assert schema_errors(row, "dataset-row.schema.json") == []
    calls = read_jsonl("cur/parsed_calls.jsonl")
    assert len(calls) == 11 and {c["model"] for c in calls} == {"brain-facet-1"}
    assert {c["weak_bucket"] for c in calls} == {"positive", "negative"}


def test_facet_values_on_the_root_span_metadata(run_cli) -> None:
    load(make_spans(30))
    Path("facets.yaml").write_text("facets:\n  - name: issues\n")
    code, out, err = run_cli("curate", "--project", "support", "--facets", "facets.yaml", "--window-days", "30",
                             "--labeler", "score", "--label-score", "resolution", "--per-bucket", "100",
                             "--out", "cur", "--json")
    assert code == 0, err
    summary = json.loads(out)
    # 30 traces: 3 distinct real values out of 8 -> positives are traces i % 8 in {0, 1, 7}
    assert summary["by_bucket"] == {"negative": 19, "positive": 11}
    assert {s["bucket"] for s in summary["shortfalls"]} == {"positive", "negative"}
    row = read_jsonl("cur/dataset_rows.jsonl")[0]
    assert row["input"]["input"]["message"].startswith("question")  # the root input


def test_invalid_facet_definitions_are_rejected_with_the_field(run_cli) -> None:
    load(make_spans(5))
    Path("facets.yaml").write_text("facets:\n  - name: issues\n    positve_limit: 3\n")
    code, out, err = run_cli("curate", "--project", "support", "--facets", "facets.yaml", "--labeler", "score",
                             "--label-score", "resolution", "--out", "cur")
    assert code == 2
    assert err.startswith("error: facets.yaml: $.facets[0].positve_limit: unexpected property (allowed: captured, description, ")


def test_interactive_mode_shows_a_sample_and_asks_before_writing(run_cli, monkeypatch) -> None:
    load(make_spans(30))
    args = [a for a in SCORE_ARGS if a != "--yes"] + ["--per-bucket", "3", "--out", "cur", "--dataset", "ds"]
    answers = iter(["n"])
    monkeypatch.setattr("builtins.input", lambda: next(answers))
    code, out, err = run_cli(*args)
    assert code == 1 and "A sample of the labels" in err and "insert 6" in err
    assert "not written (declined" in err
    assert dataset_rows() == []
    assert Path("cur/dataset_rows.jsonl").exists()  # local artifacts are written either way
    monkeypatch.setattr("builtins.input", lambda: "y")
    assert run_cli(*args)[0] == 0 and len(dataset_rows()) == 6


def test_autonomous_mode_never_asks(run_cli, monkeypatch) -> None:
    load(make_spans(30))
    monkeypatch.setenv("FLYWHEEL_AUTONOMOUS", "1")

    def no_input() -> str:
        raise AssertionError("asked in autonomous mode")

    monkeypatch.setattr("builtins.input", no_input)
    args = [a for a in SCORE_ARGS if a != "--yes"] + ["--per-bucket", "3", "--out", "cur", "--dataset", "ds"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert len(dataset_rows()) == 6


def test_closed_stdin_in_interactive_mode_writes_nothing(run_cli, monkeypatch) -> None:
    load(make_spans(30))

    def eof() -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    args = [a for a in SCORE_ARGS if a != "--yes"] + ["--per-bucket", "3", "--out", "cur", "--dataset", "ds"]
    assert run_cli(*args)[0] == 1 and dataset_rows() == []


RUBRIC = "---\nversion: refund-v1\nlabels: [pass, fail]\n---\nfail when the customer asks for a refund, else pass\n"


def test_agent_labeler_round_trip_through_export_and_apply(run_cli) -> None:
    load(make_spans(30))
    Path("rubric.md").write_text(RUBRIC)
    base = ["curate", "--project", "support", "--score", "resolution", "--window-days", "30", "--per-bucket", "4",
            "--labeler", "agent", "--rubric", "rubric.md", "--out", "cur", "--dataset", "ds", "--yes"]
    code, out, err = run_cli(*base)
    assert code == 0, err
    assert "fill cur/label_export.json" in out
    assert dataset_rows() == []  # nothing uploaded while labels are pending
    export = json.loads(Path("cur/label_export.json").read_text())
    assert len(export["rows"]) == 8 and export["rubric"]["version"] == "refund-v1"
    for row in export["rows"][:5]:
        row["label"] = "fail" if "refund" in row["input"]["message"] else "pass"
    export["labeler_model"] = "claude-code-session"
    Path("cur/label_export.json").write_text(json.dumps(export))
    code, out, err = run_cli("label", "apply", "cur/label_export.json", "--dataset-rows", "cur/dataset_rows.jsonl")
    assert code == 0, err
    assert "applied 5" in out and "3 row(s) still without a label" in out
    code, out, err = run_cli(*base, "--json")  # a rerun reuses the applied labels and uploads them
    summary = json.loads(out)
    assert summary["labeling"]["reused"] == 5 and summary["dataset"]["plan"]["insert"] == 5
    assert summary["dataset"]["plan"]["not_uploaded_pending"] == 3
    stored = dataset_rows()
    assert len(stored) == 5
    assert {r["metadata"]["label"]["labeler_model"] for r in stored} == {"claude-code-session"}
    # the rest via `label export` + apply, then publish the rows file
    run_cli("label", "export", "--dataset-rows", "cur/dataset_rows.jsonl", "--rubric", "rubric.md", "--out", "e2.json")
    e2 = json.loads(Path("e2.json").read_text())
    assert len(e2["rows"]) == 3
    for row in e2["rows"]:
        row["label"] = "pass"
    Path("e2.json").write_text(json.dumps(e2))
    assert run_cli("label", "apply", "e2.json", "--dataset-rows", "cur/dataset_rows.jsonl")[0] == 0
    code, out, err = run_cli("curate", "--project", "support", "--from-rows", "cur/dataset_rows.jsonl",
                             "--out", "cur", "--dataset", "ds", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["dataset"]["plan"] == {"insert": 3, "update": 0, "unchanged": 5, "not_uploaded_pending": 0,
            "label_changes": {}, "kept_stronger_labels": {}}
    assert len(dataset_rows()) == 8


def test_malformed_labels_file_is_rejected_by_row_and_nothing_stored_is_lost(run_cli) -> None:
    load(make_spans(30))
    Path("rubric.md").write_text(RUBRIC)
    base = ["curate", "--project", "support", "--score", "resolution", "--window-days", "30", "--per-bucket", "3",
            "--labeler", "agent", "--rubric", "rubric.md", "--out", "cur", "--dataset", "ds", "--yes"]
    run_cli(*base)
    export = json.loads(Path("cur/label_export.json").read_text())
    for row in export["rows"]:
        row["label"] = "pass"
    Path("cur/label_export.json").write_text(json.dumps(export))
    run_cli("label", "apply", "cur/label_export.json", "--dataset-rows", "cur/dataset_rows.jsonl")
    run_cli(*base)
    stored_before = dataset_rows()
    rows_before = Path("cur/dataset_rows.jsonl").read_text()
    assert len(stored_before) == 6
    bad = json.loads(Path("cur/label_export.json").read_text())
    bad["rows"][0]["label"] = "great"
    bad["rows"][1]["label"] = None
    bad["rows"][2] = {"id": "0" * 32, "label": "fail"}
    Path("bad.json").write_text(json.dumps(bad))
    code, out, err = run_cli("label", "apply", "bad.json", "--dataset-rows", "cur/dataset_rows.jsonl")
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == f"bad row: bad.json: rows[0] (id {bad['rows'][0]['id']}): label 'great' is not one of pass, fail"
    assert lines[1] == f"bad row: bad.json: rows[2] (id {'0' * 32}): unknown id (not in cur/dataset_rows.jsonl)"
    assert lines[2].startswith("error: bad.json: 2 bad row(s); nothing applied")
    assert Path("cur/dataset_rows.jsonl").read_text() == rows_before
    assert dataset_rows() == stored_before
    Path("broken.json").write_text("{not json")
    code, out, err = run_cli("label", "apply", "broken.json", "--dataset-rows", "cur/dataset_rows.jsonl")
    assert code == 2 and err.startswith("error: broken.json:1:2: invalid JSON")
    assert Path("cur/dataset_rows.jsonl").read_text() == rows_before


def test_llm_labeler_via_the_cli_and_a_rerun_pays_nothing(run_cli, monkeypatch) -> None:
    load(make_spans(30))
    Path("rubric.md").write_text(RUBRIC)

    def responder(text: str) -> str:
        return '{"label": "fail", "rationale": "asks for a refund"}' if "please refund" in text else '{"label": "pass"}'

    with FakeOpenAI(responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-test-0000000000")
        args = ["curate", "--project", "support", "--score", "resolution", "--window-days", "30", "--per-bucket", "5",
                "--labeler", "llm", "--model", "judge-1", "--rubric", "rubric.md", "--concurrency", "4",
                "--out", "cur", "--dataset", "ds", "--yes", "--json"]
        code, out, err = run_cli(*args)
        assert code == 0, err
        assert server.calls == 10
        rows = dataset_rows()
        assert {r["metadata"]["label"]["labeler_model"] for r in rows} == {"judge-1"}
        assert {r["metadata"]["label"]["rubric_version"] for r in rows} == {"refund-v1"}
        fails = {r["metadata"]["source"]["trace_id"] for r in rows if r["expected"] == "fail"}
        assert fails and all("refund" in r["input"]["message"] for r in rows if r["expected"] == "fail")
        code, out, err = run_cli(*args)
        assert server.calls == 10 and json.loads(out)["dataset"]["plan"]["unchanged"] == 10
        Path("cur/dataset_rows.jsonl").unlink()
        other = [a if a != "ds" else "ds2" for a in args]
        code, out, err = run_cli(*other)  # new dataset, no rows file: the label cache answers
        assert code == 0 and server.calls == 10 and json.loads(out)["labeling"]["cached"] == 10
    assert "sk-loopback" not in Path("cur/label_cache.jsonl").read_text() + Path("cur/summary.json").read_text()


def test_errors_are_one_line(run_cli) -> None:
    code, out, err = run_cli("curate", "--project", "support", "--score", "resolution", "--labeler", "score",
                             "--out", "cur")
    assert code == 2 and err.startswith("error: .flywheel/store.duckdb: no local store here yet")
    load(make_spans(3))
    code, out, err = run_cli("curate", "--project", "nope", "--score", "resolution", "--labeler", "score",
                             "--out", "cur")
    assert code == 2 and "project 'nope' not found" in err
    code, out, err = run_cli("curate", "--project", "support", "--score", "resolution", "--labeler", "llm",
                             "--out", "cur")
    assert code == 2 and "--labeler llm needs --rubric" in err
    code, out, err = run_cli("curate", "--project", "support", "--score", "resolution", "--lo", "0.9", "--hi",
                             "0.1", "--labeler", "score", "--out", "cur")
    assert code == 2 and "--lo 0.9 must be below --hi 0.1" in err
    assert len(err.strip().splitlines()) == 1


def test_explicit_trace_ids_in_facet_mode_scope_the_facet_query() -> None:
    from bt_flywheel.curate.select import select_facets
    from bt_flywheel.dataset.facets import FacetDefinition

    asked: list[str] = []

    def run(query: str) -> list[dict[str, Any]]:
        asked.append(query)
        return []

    facet = FacetDefinition("issues", span_filter="span_attributes.type = 'llm' OR is_root = true")
    selection = select_facets(run, project="a WHERE b", project_id="p", facets=[facet], per_bucket=1,
                              window_days=None, trace_ids=["t-1"])
    assert ("SELECT root_span_id, span_id, created, output AS facet_value FROM project_logs('a WHERE b') "
            "WHERE root_span_id IN ('t-1') AND (span_attributes.type = 'llm' OR is_root = true)") in asked
    assert selection.missing_trace_ids == ["t-1"]


def test_recurating_never_downgrades_labels_silently(run_cli) -> None:
    """Hand labels (file) in the dataset survive a re-curation with the weak score labeler; the plan
    says what was kept; --relabel replaces them and the plan names the change."""
    load(make_spans(60))
    base = ["curate", "--project", "support", "--score", "resolution", "--window-days", "30", "--per-bucket", "10",
            "--yes", "--dataset", "ds", "--json"]
    roots = [f"trace-{i:05d}" for i in range(60)]
    Path("labels.jsonl").write_text("".join(json.dumps({"root_span_id": r, "label": "reviewed"}) + "\n" for r in roots))
    code, out, err = run_cli(*base, "--labeler", "file", "--labels", "labels.jsonl", "--out", "a")
    assert code == 0, err
    stored = {r["id"]: r for r in dataset_rows()}
    assert {r["metadata"]["label"]["labeler"] for r in stored.values()} == {"file"}

    code, out, err = run_cli(*base, "--labeler", "score", "--out", "b", "--dry-run")
    plan = json.loads(out)["dataset"]["plan"]
    assert code == 0 and plan["update"] == 0 and plan["kept_stronger_labels"] == {"file": 20}
    code, out, err = run_cli(*base[:-1], "--labeler", "score", "--out", "b")
    assert code == 0 and "kept 20 stronger file label(s)" in out
    assert {r["id"]: r["expected"] for r in dataset_rows()} == {i: r["expected"] for i, r in stored.items()}

    code, out, err = run_cli(*base, "--labeler", "score", "--out", "c", "--relabel")
    summary = json.loads(out)
    assert code == 0, err
    assert summary["dataset"]["plan"]["label_changes"] == {"file -> score": 20}
    assert summary["labeling"]["downgraded"] == 20
    assert {r["metadata"]["label"]["labeler"] for r in dataset_rows()} == {"score"}
