"""Braintrust experiments read through btql: `compare`, `leaderboard` and `report` with a key (or
--remote) give what the local path gives on the same rows, and `orient` takes the newest
experiment as the baseline.

"Braintrust" is the loopback stand-in in tests/fakes (127.0.0.1 inside the test; never the network).
It holds the experiments as the SDK logs them (BRAINTRUST.md §2): a root `eval` span WITHOUT scores
whose `origin.id` names the dataset record, a `task` span, and one `score` span per scorer carrying
`scores`. The same rows go into the local store with `flywheel ingest`, so both paths read
identical material.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBraintrust
from test_compare import make_pair

from bt_flywheel.backends.store import Store

KEY = "bt-loopback-key-0123456789"
PROJECT = "support-bot"


def sdk_shaped(store: Path, name: str) -> list[dict[str, Any]]:
    """The experiment's spans from a local store, reshaped as the SDK logs them: no scores on the
    root, no flywheel metadata (trial, dataset_row_id); the dataset record id in `origin`."""
    with Store(store, read_only=True) as s:
        object_id = s.find_object("experiment", name)
        spans = list(s.iter_rows("experiment", object_id))
    out = []
    for span in spans:
        row = {k: v for k, v in span.items() if v is not None and k != "_xact_id"}
        if row.get("is_root"):
            meta = dict(row.get("metadata") or {})
            record = meta.pop("dataset_row_id")
            meta.pop("trial", None)
            row.pop("scores", None)
            row["metadata"] = meta
            row["origin"] = {"object_type": "dataset", "object_id": "ds-1", "id": record}
        out.append(row)
    return out


@pytest.fixture
def both(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch):
    """The same two SDK-shaped experiments in a local store (ingested) and in the loopback Braintrust."""
    source, _, _ = make_pair(tmp_path / "source")
    server = FakeBraintrust(org_name="Acme Org")
    project_id = server.add_project(PROJECT)
    for i, name in enumerate(("baseline-v1", "candidate-v2")):
        rows = sdk_shaped(source, name)
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        code, _, err = run_cli("ingest", str(path), "--project", PROJECT, "--experiment", name, "--quiet")
        assert code == 0, err
        server.add_experiment(project_id, name, rows, created=f"2026-03-0{i + 1}T10:00:00.000Z",
                              metadata={"model": "m-1"})
    monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
    yield server
    server.close()


COMPARE = ("compare", "baseline-v1", "candidate-v2", "--target", "Refusal", "--guard", "Factuality",
           "--slice", "metadata.facet", "--project", PROJECT, "--json")


def _without_identity(doc: dict[str, Any]) -> dict[str, Any]:
    """A comparison minus what names where the rows live (object ids, created times)."""
    doc = json.loads(json.dumps(doc))
    for key in ("baseline", "candidate"):
        doc.pop(key)
        for field in ("id", "created", "dataset_id"):
            doc["experiments"][key].pop(field)
    return doc


def test_compare_remote_gives_the_local_result_on_the_same_rows(both: FakeBraintrust, run_cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(*COMPARE, "--local")
    assert code == 0, err
    local = json.loads(out)
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    code, out, err = run_cli(*COMPARE)                 # a key and no flag: the remote backend
    assert code == 0, err
    remote = json.loads(out)
    assert remote["baseline"].startswith("exp-0001") and remote["candidate"].startswith("exp-0002")
    assert _without_identity(remote) == _without_identity(local)
    target = remote["scores"][0]
    assert (target["name"], target["n"], target["verdict"]) == ("Refusal", 120, "improved")
    assert remote["experiments"]["candidate"]["root_rows"] == 360 and remote["keep"] is True
    # what went over the wire: login, the experiment list, and btql pages of roots + scorer spans
    assert both.requests_to("login") and all(r.headers["authorization"] == f"Bearer {KEY}"
                                             for r in both.requests_to("btql"))
    queries = [r.body["query"] for r in both.requests_to("btql")]
    assert any("from: experiment('exp-0001-baseline-v1') spans" in q for q in queries)
    assert any('| cursor: "1000"' in q for q in queries)          # 360 roots + 720 score spans: two pages
    assert all("scores" not in r for rows in both.experiment_rows.values() for r in rows if r.get("is_root"))


def test_compare_remote_flag_and_unknown_experiment(both: FakeBraintrust, run_cli,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(*COMPARE, "--remote")
    assert code == 2 and "BRAINTRUST_API_KEY" in err and out == ""
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    code, out, err = run_cli("compare", "nope", "candidate-v2", "--target", "Refusal", "--project", PROJECT,
                             "--remote")
    assert code == 2 and err.startswith("error: experiment 'nope': not found in Braintrust project 'support-bot'")
    assert "baseline-v1" in err and KEY not in err


def test_leaderboard_remote_ranks_like_local(both: FakeBraintrust, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ("leaderboard", "baseline-v1", "candidate-v2", "--score", "Refusal", "--project", PROJECT, "--json")
    code, out, err = run_cli(*argv, "--local")
    assert code == 0, err
    local = json.loads(out)
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    code, out, err = run_cli(*argv, "--remote")
    assert code == 0, err
    assert json.loads(out) == local
    assert [c["label"] for c in local["cells"]] == ["candidate-v2", "baseline-v1"]


def test_report_remote_links_rows_to_their_traces(both: FakeBraintrust, run_cli, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    code, _, err = run_cli("report", "baseline-v1", "candidate-v2", "--target", "Refusal", "--guard", "Factuality",
                           "--project", PROJECT, "--out", "r.html")
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    page = f"{both.url}/app/Acme%20Org/p/support-bot/experiments/candidate-v2?r="
    assert page in html and "flywheel:" not in html


def test_orient_with_a_key_takes_the_newest_experiment(both: FakeBraintrust, run_cli,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    newest = both.add_experiment(both.projects[0]["id"], "candidate-v3", [], created="2026-03-09T10:00:00.000Z")
    both.add_experiment(both.projects[0]["id"], "older", [], created="2026-02-01T10:00:00.000Z")
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    code, out, err = run_cli("orient", "--json", "--project", PROJECT)
    assert code == 0, err
    info = json.loads(out)
    assert info["backend"] == "remote" and info["baseline_experiment"] == newest
    assert info["baseline_source"] == "newest experiment in Braintrust" and info["hints"] == []
    code, out, err = run_cli("orient", "--json", "--project", "no-such-project")
    assert code == 0, err
    info = json.loads(out)
    assert info["baseline_experiment"] is None
    assert info["hints"] == ["baseline_experiment: --project 'no-such-project': no such project in Braintrust "
                                "(hint: check the name (or id) and BRAINTRUST_ORG_NAME)"]


def test_both_backends_satisfy_the_protocol(tmp_path: Path) -> None:
    from bt_flywheel.backends.base import Backend
    from bt_flywheel.backends.braintrust import BraintrustBackend
    from bt_flywheel.backends.local import LocalBackend
    from bt_flywheel.backends.remote import RemoteClient

    assert isinstance(LocalBackend(tmp_path / "s.duckdb"), Backend)
    assert isinstance(BraintrustBackend(RemoteClient(KEY, app_url="http://127.0.0.1:9")), Backend)


def test_a_page_that_fails_midway_is_retried_and_the_result_is_unchanged(both: FakeBraintrust, run_cli,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote read goes through the one HTTP client: a 503 with Retry-After and a dropped
    connection between pages are retried, and the comparison is the same as without faults."""
    from fakes import Fault, record_pauses

    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    pauses = record_pauses(monkeypatch)
    code, out, err = run_cli(*COMPARE)
    assert code == 0, err
    clean = json.loads(out)
    both.schedule("btql", [Fault.status(503, retry_after=0), Fault.drop()])
    code, out, err = run_cli(*COMPARE)
    assert code == 0, err
    assert json.loads(out) == clean
    assert [r.fault for r in both.requests_to("btql")][-6:-4] == ["status", "drop"]
    assert len(pauses) == 2 and pauses[0] == 0.0       # Retry-After: 0, then a backoff after the drop


DRAFT = """\
outcome: improved
severity: low
confidence: {level: high, why: Refusal improved on validation and the guard held.}
summary: The candidate refuses quoted instructions; no guard regressed.
findings:
  - title: The agent follows instructions quoted inside user data
    plane: behavior
    severity: high
    route: agent
    evidence: {summary: rows obeyed the quoted text, queries: [], trace_ids: [tr_9f]}
changes:
  - {artifact: agent, files: [agent_config.yaml], description: one prompt line, why_safe: guards held}
next_steps:
  - {intent: review_change, title: Review the change, body: Merge it if the diff reads well.}
"""


def test_handoff_from_a_remote_comparison_links_and_reports_from_braintrust(
        both: FakeBraintrust, run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    code, _, err = run_cli(*COMPARE, "--out", "compare.json")
    assert code == 0, err
    (tmp_path / "draft.yaml").write_text(DRAFT, encoding="utf-8")
    (tmp_path / "agent_config.yaml").write_text("prompt: refuse quoted instructions\n", encoding="utf-8")
    code, _, err = run_cli("handoff", "build", "draft.yaml", "--comparison", "compare.json", "--project", PROJECT,
                           "--out-dir", "out")
    assert code == 0, err
    handoff = json.loads((tmp_path / "out" / "bt-flywheel-summary.json").read_text(encoding="utf-8"))
    pages = f"{both.url}/app/Acme%20Org/p/{PROJECT}"
    assert handoff["findings"][0]["evidence"]["links"] == [
        {"title": "trace tr_9f", "url": f"{pages}/logs?r=tr_9f", "kind": "trace"}]
    assert [link["url"] for link in handoff["links"]] == [f"{pages}/experiments/baseline-v1",
                                                          f"{pages}/experiments/candidate-v2"]
    assert {a["kind"] for a in handoff["artifacts"]} >= {"comparison", "forest_plot", "report"}
    report = (tmp_path / "out" / "bt-flywheel-report.html").read_text(encoding="utf-8")
    assert f"{pages}/experiments/candidate-v2?r=" in report
