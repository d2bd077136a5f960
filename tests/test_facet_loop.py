"""The facet-optimizer loop end to end (seed 000, issue 13) on generated traces with facet LLM spans:
bootstrap facet_definitions.yaml from the spans, curate per-facet weak buckets labeled from a file,
run a facet eval of two prompt versions against a loopback OpenAI-compatible model server (inside
the test, never the network), compare them by the chosen objective, route, and build a handoff.

The traces plant one false-positive pattern (polite "no problem" closings flagged as issues); the
candidate prompt adds one sentence about politeness. With --optimize fp it is verified improved
and kept; with --optimize fn the target is recall, which it does not move, and it is not kept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from facet_world import (
    FIX,
    ISSUES_PROMPT,
    SENTIMENT_PROMPT,
    WRAPPER,
    facet_model,
    label_file_lines,
    make_traces,
)
from fakes import FakeModelServer

from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.store import Store
from bt_flywheel.core.schemas import schema_errors
from bt_flywheel.handoff.contract import validate_handoff

PROJECT = "support"
STORE = ".flywheel/store.duckdb"
REPO = Path(__file__).resolve().parents[1]


def facet_metric_recipes() -> list[str]:
    """The SQL blocks of the 'Facet metrics' section of references/sql-patterns.md, as printed."""
    text = (REPO / "references" / "sql-patterns.md").read_text(encoding="utf-8")
    section = text.split("## Facet metrics", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    return blocks


def _ingest(n: int = 300) -> None:
    with Store(STORE) as store:
        store.upsert_rows("project_logs", store.ensure_project(PROJECT), make_traces(n))


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch):
    with FakeModelServer(judge=facet_model, model="brain-facet-1") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-secret-000000")
        yield server


def test_bootstrap_writes_one_valid_entry_per_facet_with_the_captured_call(run_cli) -> None:
    _ingest(12)
    code, out, err = run_cli("facets", "bootstrap", "--project", PROJECT, "--out", "facets.yaml")
    assert code == 0, err
    document = yaml.safe_load(Path("facets.yaml").read_text())
    assert schema_errors(document, "facet-definitions.schema.json") == []
    by_name = {f["name"]: f for f in document["facets"]}
    assert sorted(by_name) == ["issues", "sentiment"]
    issues = by_name["issues"]
    assert issues["messages"] == [WRAPPER]
    assert issues["suffix_messages"] == [{"role": "user", "content": ISSUES_PROMPT}]
    assert by_name["sentiment"]["suffix_messages"][0]["content"] == SENTIMENT_PROMPT
    assert issues["model"] == "brain-facet-1"
    assert issues["output_schema"]["json_schema"]["name"] == "facet"
    assert issues["span_filter"] == "span_attributes.type = 'llm' AND metadata.facet_name = 'issues'"
    assert issues["captured"] | {"first_seen": None, "last_seen": None} == {
        "spans": 12, "prefix_messages": 1, "suffix_messages": 1, "first_seen": None, "last_seen": None,
        "project": PROJECT}
    assert "wrote facets.yaml" in out


def test_bootstrap_without_facet_spans_is_one_line(run_cli) -> None:
    with Store(STORE) as store:
        store.upsert_rows("project_logs", store.ensure_project(PROJECT),
                          [r for r in make_traces(3) if r["is_root"]])
    code, out, err = run_cli("facets", "bootstrap", "--project", PROJECT, "--out", "facets.yaml")
    assert code == 2
    assert err.startswith("error: project 'support': no llm span with metadata.facet_name in the last 30 days")
    assert not Path("facets.yaml").exists()


def _curate(run_cli) -> list[dict]:
    """curate per-facet weak buckets, label them from a reviewer's file, upsert to 'facet-gt'."""
    args = ["curate", "--project", PROJECT, "--facets", "facets.yaml", "--window-days", "30",
            "--per-bucket", "80", "--validation-fraction", "0.3"]
    code, _, err = run_cli(*args, "--labeler", "agent", "--rubric", "rubric.md", "--out", "cur")
    assert code == 0, err
    rows = [json.loads(line) for line in Path("cur/dataset_rows.jsonl").read_text().splitlines()]
    Path("labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in label_file_lines(rows)))
    code, _, err = run_cli(*args, "--labeler", "file", "--labels", "labels.jsonl", "--out", "cur",
                           "--dataset", "facet-gt", "--yes")
    assert code == 0, err
    return [json.loads(line) for line in Path("cur/dataset_rows.jsonl").read_text().splitlines()]


def test_facet_loop_bootstrap_curate_eval_compare_handoff(run_cli, model_server: FakeModelServer) -> None:
    _ingest()
    Path("rubric.md").write_text("---\nversion: facet-v1\n---\nThe correct facet value, or none.\n")
    assert run_cli("facets", "bootstrap", "--project", PROJECT, "--out", "facets.yaml")[0] == 0
    rows = _curate(run_cli)
    assert {r["metadata"]["facet_name"] for r in rows} == {"issues", "sentiment"}
    assert {r["metadata"]["label"]["labeler"] for r in rows} == {"file"}

    # the candidate: one sentence added to the issues prompt (edited in a copy; the baseline file stays)
    document = yaml.safe_load(Path("facets.yaml").read_text())
    issues = next(f for f in document["facets"] if f["name"] == "issues")
    issues["suffix_messages"][0]["content"] += FIX
    Path("facets-v2.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    for name, path, version in (("issues-v1", "facets.yaml", "v1"), ("issues-v2", "facets-v2.yaml", "v2")):
        code, out, err = run_cli("facets", "eval", path, "--dataset", "facet-gt", "--project", PROJECT,
                                 "--split", "validation", "--name", name, "--prompt-version", version, "--json",
                                 "--silent")
        assert code == 0, err
        params = json.loads(out)["metadata"]["params"]
        assert params | {"prompt_sha256": None} == {"model": "brain-facet-1", "prompt_version": version,
                                                    "prompt_sha256": None, "facets_file": path,
                                                    "runner": "flywheel facets eval"}
        assert params["prompt_sha256"].startswith("sha256:")
    calls = model_server.requests_to("chat")
    validation = [r for r in rows if r["metadata"]["split"] == "validation"]
    assert len(calls) == 2 * len(validation)
    sent = calls[-1].body
    assert sent["model"] == "brain-facet-1" and sent["response_format"]["type"] == "json_schema"
    assert sent["messages"][0] == WRAPPER and sent["messages"][-1]["role"] == "user"
    assert sum(1 for m in sent["messages"] if "Facet:" in str(m.get("content"))) == 1  # old prompt cut out

    # rerunning a version pays nothing: answers come from the cache
    assert run_cli("facets", "eval", "facets.yaml", "--dataset", "facet-gt", "--project", PROJECT,
                   "--split", "validation", "--first", "10", "--name", "issues-v1-again", "--silent")[0] == 0
    assert len(model_server.requests_to("chat")) == len(calls)

    # the "Facet metrics" recipes of references/sql-patterns.md, on the experiment of curated rows
    for recipe in facet_metric_recipes():
        result = run_query(STORE, recipe.replace("<EXPERIMENT_ID>", "issues-v1")
                           .replace("<SCORER_NAME>", "binary_classification_scores")
                           .replace("<SCORE>", "binary_classification_scores").replace("<FACET>", "issues"))
        facets = [r.get("facet") for r in result.rows]
        if "facet" in result.columns:
            assert facets == ["issues", "sentiment"], recipe
        else:  # the failed-rows recipe: the planted false positives, all of them validation rows
            assert result.rows and {r["split"] for r in result.rows} == {"validation"}
            assert {json.dumps(r["output"]) for r in result.rows} == {json.dumps({"value": "problem reported"})}

    verdicts = {}
    for objective in ("fp", "fn"):
        # a guard whose rows never change is held only within what n rows can show (34 rows: about ±0.10)
        code, out, err = run_cli("compare", "issues-v1", "issues-v2", "--optimize", objective, "--margin", "0.15",
                                 "--resamples", "0", "--out", f"compare-{objective}.json", "--json")
        assert code == 0, err
        verdicts[objective] = json.loads(out)
    assert verdicts["fp"]["target"] == "negative_specificity" and verdicts["fp"]["guards"] == ["positive_recall"]
    assert verdicts["fn"]["target"] == "positive_recall" and verdicts["fn"]["guards"] == ["negative_specificity"]
    assert verdicts["fp"]["target_verdict"] == "improved" and verdicts["fp"]["keep"] is True
    assert verdicts["fn"]["target_verdict"] != "improved" and verdicts["fn"]["keep"] is False

    code, _, err = run_cli("route", "decide", "--ledger", "ledger.json", "--comparison", "compare-fp.json",
                           "--change", "issues prompt: politeness is not an issue")
    assert code == 0, err
    Path("draft.yaml").write_text(DRAFT)
    code, out, err = run_cli("handoff", "build", "draft.yaml", "--comparison", "compare-fp.json", "--ledger",
                             "ledger.json", "--out", "out", "--project", PROJECT, "--json")
    assert code == 0, err
    handoff = json.loads(Path("out/bt-flywheel-summary.json").read_text())
    assert validate_handoff(handoff) == []
    assert handoff["outcome"] == "improved"
    assert handoff["verification"]["status"] == "passed"


DRAFT = """\
outcome: improved
severity: medium
confidence: {level: high, why: "negative_specificity improved on validation; positive_recall held."}
summary: One sentence in the issues facet prompt stopped polite closings being flagged as issues.
findings:
  - title: The issues facet flags polite 'no problem' closings
    plane: quality
    severity: medium
    route: measurement
    evidence: {summary: "Weak positives labeled none by the reviewer were polite closings."}
changes:
  - {artifact: measurement, files: [facets-v2.yaml], description: "Politeness is not an issue.",
     why_safe: "One sentence; recall held on validation."}
next_steps:
  - {intent: review_change, priority: p1, title: Review the facet prompt change, body: "Ship facets-v2.yaml."}
"""
