"""Topics on the local backend (issue 16): `flywheel topics run` on generated traces with three
planted user intents plus noise (tests/fakes/intents.py).

The model endpoint is a loopback OpenAI-compatible server inside the test (tests/fakes/loopback.py):
its chat route writes facet summaries and topic names, its embeddings route is a stand-in
embedding model. Nothing here touches the network; the offline tests also forbid any socket
connection outright.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import store_cache

from bt_flywheel.backends import sql
from bt_flywheel.backends.store import Store
from tests.fakes.intents import SECRET, intent_of, planted_traces, summarise
from tests.fakes.intents import embed as fake_embed
from tests.fakes.loopback import FakeModelServer

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC).replace(microsecond=0)
FAST = ("--max-topics", "6")   # behaviour tests (not the quality bounds) try fewer k
MODEL_ARI = 0.8          # the bar for the model path
TFIDF_ARI = 0.2          # the stated bound for TF-IDF alone (references/topics-patterns.md)


def _upsert(path: Path, rows: list[dict]) -> None:
    with Store(path) as store:
        store.upsert_rows("project_logs", store.ensure_project("shop"), rows)


def _store(path: Path, rows: list[dict]) -> Path:
    """A new store at path holding rows (a copy of one built once per session for these rows)."""
    store_cache.copy_of(path, store_cache.content_key("topics", rows), lambda built: _upsert(built, rows))
    return path


def _labels(store_path: Path, facet: str = "Task") -> dict[str, dict]:
    """root_span_id -> the first classification item of the facet (None when unclassified)."""
    with Store(store_path, read_only=True) as store:
        got = store.con.execute("SELECT root_span_id, classifications FROM spans WHERE is_root").fetchall()
    return {r: ((json.loads(c) or {}).get(facet) or [None])[0] if c else None for r, c in got}


def _ari(planted: dict[str, str], labels: dict[str, dict]) -> float:
    from sklearn.metrics import adjusted_rand_score  # here, not at collection in every test worker

    ids = sorted(planted)
    return adjusted_rand_score([planted[i] for i in ids], [(labels.get(i) or {}).get("id", "none") for i in ids])


def judge(messages: list[dict]) -> dict:
    """The loopback model: a facet summary per trace narrative, a name per topic."""
    text = messages[-1]["content"]
    if text.startswith("Summaries in one cluster"):
        return {"name": f"{intent_of('user: ' + text).title()} requests"}
    return {"expected": summarise(text.split("Input:", 1)[-1]), "rationale": "loopback"}


@pytest.fixture(scope="module")
def planted():
    return planted_traces(240, start=NOW, seed=11)


@pytest.fixture(scope="module")
def model_run(planted, tmp_path_factory):
    """One `topics run` through the CLI with the loopback model endpoint configured."""
    from bt_flywheel.cli import main

    rows, _ = planted
    folder = tmp_path_factory.mktemp("model")
    store_path = _store(folder / "store.duckdb", rows)
    with FakeModelServer(judge=judge, embedder=fake_embed) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_BASE_URL", server.base_url)
        mp.setenv("OPENAI_API_KEY", "sk-loopback-test-key-0123456789")
        mp.chdir(folder)
        out = folder / "report.json"
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()) as printed:
            code = main(["topics", "run", "--project", "shop", "--store", str(store_path), "--local",
                         "--concurrency", "16", "--json", "--quiet"])
        out.write_text(printed.getvalue())
        requests = list(server.requests)
    assert code == 0
    return store_path, json.loads(out.read_text()), requests


def test_model_path_recovers_the_planted_intents(planted, model_run) -> None:
    _, truth = planted
    store_path, report, _ = model_run
    facet = report["facets"][0]
    assert facet["status"] == "rebuilt" and facet["facet_writer"] == "llm:loopback-model"
    assert facet["vectors"] == "embedding:text-embedding-3-small" and facet["naming"].startswith("model:")
    names = {t["name"] for t in facet["topics"]}
    assert {"Password requests", "Refund requests", "Shipping requests"} <= names
    labels = _labels(store_path)
    assert _ari(truth, labels) >= MODEL_ARI
    # a planted intent is (almost) never left unassigned; one-off noise mostly is (a noise request
    # repeated often enough may form its own small topic, which is what a topic is)
    planted_ids = [r for r, intent in truth.items() if intent != "noise"]
    assert sum(labels[r]["label"] == "Unassigned" for r in planted_ids) <= 0.02 * len(planted_ids)
    noise = [r for r, intent in truth.items() if intent == "noise"]
    assert sum(labels[r]["label"] in names - {"Password requests", "Refund requests", "Shipping requests"}
               or labels[r]["label"] == "Unassigned" for r in noise) >= 0.8 * len(noise)
    best_k = max(facet["k_scores"], key=facet["k_scores"].get)
    assert int(best_k) >= 3 and len(facet["topics"]) == int(best_k)


def test_what_the_model_server_receives_is_redacted(planted, model_run) -> None:
    rows, _ = planted
    assert any(SECRET in json.dumps(r) for r in rows)  # the traces do carry the key
    *_, requests = model_run
    bodies = json.dumps([r.body for r in requests])
    routes = {r.route for r in requests}
    assert routes == {"chat", "embeddings"}
    assert SECRET not in bodies and "sk-live-" not in bodies
    assert "[REDACTED]" in bodies      # the sentence reached the model, the key did not
    assert all(r.headers.get("Authorization", r.headers.get("authorization", "")).startswith("Bearer ")
               for r in requests)


def test_topic_sql_recipe_shows_the_failing_intent_with_the_highest_failure_rate(planted, model_run) -> None:
    _, truth = planted
    store_path, *_ = model_run
    text = (REPO / "references" / "topics-patterns.md").read_text(encoding="utf-8")
    recipe = next(b for b in re.findall(r"```sql\n(.*?)```", text, re.S) if "failure_rate" in b)
    query = recipe.replace("<PROJECT>", "shop").replace("<SCORE>", "Factuality").replace("<DAYS>", "7")
    rows = sql.run_query(store_path, query).rows
    assert rows[0]["topic"] == "Refund requests"          # the planted failing intent, worst first
    assert rows[0]["failure_rate"] > 0.5 > max(r["failure_rate"] for r in rows[1:] if r["topic"] != "Unassigned")
    labels = _labels(store_path)
    refund = [r for r, i in truth.items() if i == "refund"]
    assert sum(labels[r]["label"] == "Refund requests" for r in refund) >= 0.95 * len(refund)


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Any attempt to open a network connection fails the test (and is recorded)."""
    attempts: list[tuple] = []

    def refuse(self, address, *args, **kwargs):  # noqa: ANN001
        attempts.append(address)
        raise AssertionError(f"network connection attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_without_an_endpoint_nothing_leaves_the_machine_and_tfidf_reaches_its_bound(
        planted, tmp_path, monkeypatch, run_cli) -> None:
    rows, truth = planted
    store_path = _store(tmp_path / "store.duckdb", rows)
    attempts = _offline(monkeypatch)
    code, out, err = run_cli("topics", "run", "--project", "shop", "--store", str(store_path), "--json", "--quiet")
    assert code == 0, err
    assert attempts == []
    facet = json.loads(out)["facets"][0]
    assert facet["facet_writer"] == "fallback:request_text" and facet["vectors"] == "tfidf"
    assert facet["model_calls"] == 0 and facet["naming"] == "top_terms"
    labels = _labels(store_path)
    assert all(item["source"]["facet_writer"] == "fallback:request_text" for item in labels.values() if item)
    assert _ari(truth, labels) >= TFIDF_ARI
    # the stored summary is the (redacted) request text
    with Store(store_path, read_only=True) as store:
        facets = [json.loads(f)["Task"] for (f,) in store.con.execute(
            "SELECT facets FROM spans WHERE is_root AND facets IS NOT NULL").fetchall()]
    assert len(facets) == len(truth) and not any(SECRET in f for f in facets)
    assert any("[REDACTED]" in f for f in facets)


def test_fallback_does_not_invent_sentiment(planted, tmp_path, run_cli) -> None:
    rows, _ = planted
    store_path = _store(tmp_path / "store.duckdb", rows)
    code, out, _ = run_cli("topics", "run", "--project", "shop", "--store", str(store_path), "--facet", "Sentiment",
                           "--json", "--quiet")
    assert code == 0
    facet = json.loads(out)["facets"][0]
    assert facet["status"] == "skipped" and "Sentiment needs a model endpoint" in facet["reason"]


def test_same_seed_same_topics(planted, tmp_path, run_cli) -> None:
    rows, _ = planted
    results = []
    for name in ("a", "b"):
        store_path = _store(tmp_path / f"{name}.duckdb", list(reversed(rows)) if name == "b" else rows)
        code, out, _ = run_cli("topics", "run", "--project", "shop", "--store", str(store_path), "--seed", "3",
                               "--json", "--quiet", *FAST)
        assert code == 0
        facet = json.loads(out)["facets"][0]
        labels = {r: (i["id"], i["distance"]) for r, i in _labels(store_path).items()}
        results.append((facet["topic_map"], facet["topics"], facet["k_scores"], labels))
    assert results[0] == results[1]


def test_rerun_classifies_new_traces_and_moves_no_old_classification(planted, tmp_path, run_cli) -> None:
    rows, _ = planted
    store_path = _store(tmp_path / "store.duckdb", rows)
    args = ("topics", "run", "--project", "shop", "--store", str(store_path), "--json", "--quiet", *FAST)
    code, out, _ = run_cli(*args)
    first = json.loads(out)["facets"][0]
    before = _labels(store_path)
    new_rows, new_truth = planted_traces(60, start=NOW + timedelta(minutes=5), days=0.002, seed=99, prefix="n")
    with Store(store_path) as store:
        store.upsert_rows("project_logs", store.find_project("shop"), new_rows)
    code, out, _ = run_cli(*args)
    assert code == 0
    second = json.loads(out)["facets"][0]
    after = _labels(store_path)
    assert second["status"] == "classified" and second["topic_map"] == first["topic_map"]
    assert second["kept"] == len(before) and second["classified"] == len(new_truth)
    assert {r: after[r] for r in before} == before                     # nothing old moved
    assert all(after[r]["source"]["topic_map_id"] == first["topic_map"] for r in new_truth)
    # a third run with nothing new changes nothing; --rebuild reclusters and reclassifies all
    code, out, _ = run_cli(*args)
    assert json.loads(out)["facets"][0]["classified"] == 0 and _labels(store_path) == after
    code, out, _ = run_cli(*args, "--rebuild")
    rebuilt = json.loads(out)["facets"][0]
    assert rebuilt["status"] == "rebuilt" and rebuilt["classified"] == len(before) + len(new_truth)


def test_waits_for_enough_summaries_like_braintrust(tmp_path, run_cli) -> None:
    rows, truth = planted_traces(40, start=NOW)
    store_path = _store(tmp_path / "store.duckdb", rows)
    code, out, _ = run_cli("topics", "run", "--project", "shop", "--store", str(store_path), "--json", "--quiet")
    facet = json.loads(out)["facets"][0]
    assert code == 0 and facet["status"] == "waiting_for_facets" and "at least 100" in facet["reason"]
    assert all(v is None for v in _labels(store_path).values())
    result = sql.run_query(store_path, "SELECT count(*) AS n FROM project_logs('shop') WHERE facets.Task IS NOT NULL "
                                       "AND created >= NOW() - INTERVAL 7 day")
    assert result.rows[0]["n"] == len(truth)


def test_agent_writer_round_trip_through_label_export_and_apply(planted, tmp_path, run_cli) -> None:
    rows, truth = planted
    store_path = _store(tmp_path / "store.duckdb", rows)
    args = ("topics", "run", "--project", "shop", "--store", str(store_path), "--writer", "agent",
            "--out-dir", str(tmp_path / "agent"), "--json", "--quiet", *FAST)
    code, out, _ = run_cli(*args)
    facet = json.loads(out)["facets"][0]
    assert code == 0 and facet["status"] == "waiting_for_facets" and facet["pending"] == len(truth)
    export_path = Path(facet["export"])
    export = json.loads(export_path.read_text())
    assert export["rubric"]["version"] == "topics-Task-v1" and SECRET not in export_path.read_text()
    for row in export["rows"]:          # the coding agent writes one summary per trace narrative
        row["expected"], row["rationale"] = summarise(row["input"]), "read the trace"
    export["labeler_model"] = "claude-test"
    export_path.write_text(json.dumps(export))
    code, _, err = run_cli("label", "apply", str(export_path), "--dataset-rows",
                           str(tmp_path / "agent" / "facet_rows_Task.jsonl"))
    assert code == 0, err
    code, out, _ = run_cli(*args)
    facet = json.loads(out)["facets"][0]
    assert facet["status"] == "rebuilt" and facet["facet_writer"] == "agent:claude-test"
    assert _ari(truth, _labels(store_path)) >= TFIDF_ARI     # agent summaries, TF-IDF vectors, no model


def test_llm_writer_without_an_endpoint_is_refused(tmp_path, run_cli, planted) -> None:
    store_path = _store(tmp_path / "store.duckdb", planted[0])
    code, _, err = run_cli("topics", "run", "--project", "shop", "--store", str(store_path), "--writer", "llm")
    assert code == 2 and "needs a model endpoint" in err


def test_unknown_project_names_the_flag(tmp_path, run_cli, planted) -> None:
    store_path = _store(tmp_path / "store.duckdb", planted[0][:3])
    code, _, err = run_cli("topics", "run", "--project", "nope", "--store", str(store_path))
    assert code == 2 and "--project: no project 'nope'" in err


# ------------------------------------------------------------------------------ the remote path

FAKE_BT = """#!{python}
import json, os, sys
with open(os.environ["FAKE_BT_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
print(json.dumps({{"state": "idle", "argv": sys.argv[1:]}}))
"""


@pytest.mark.parametrize(("rebuild", "action"), [(False, ["topics", "poke", "--json", "-p", "shop"]),
                                                 (True, ["topics", "rewind", "7d", "--json", "-p", "shop"])])
def test_remote_path_drives_braintrust_topics_through_bt(tmp_path, monkeypatch, run_cli, rebuild, action) -> None:
    """A stand-in `bt` records its argv; each argv is also checked against the real bt's parser
    (`bt <args> --help` rejects unknown flags) when bt is installed."""
    fake = tmp_path / "bt"
    fake.write_text(FAKE_BT.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("FLYWHEEL_BT", str(fake))
    monkeypatch.setenv("FAKE_BT_LOG", str(tmp_path / "bt.log"))
    monkeypatch.setenv("BRAINTRUST_API_KEY", "bt-test-key-0123456789")
    code, out, err = run_cli("topics", "run", "--project", "shop", "--json", *(["--rebuild"] if rebuild else []))
    assert code == 0, err
    calls = [json.loads(line) for line in (tmp_path / "bt.log").read_text().splitlines()]
    status = ["topics", "status", "--json", "-p", "shop"]
    assert calls == [status, action, status]
    report = json.loads(out)
    assert report["backend"] == "remote" and report["status"]["state"] == "idle"
    assert any("synchronously" in line for line in report["not_exposed"])
    real = shutil.which("bt")
    if real:
        import subprocess

        for argv in calls:
            proc = subprocess.run([real, *argv, "--help"], capture_output=True, text=True, timeout=60,
                                  env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                       "HTTPS_PROXY": "http://127.0.0.1:9"})
            assert proc.returncode == 0, f"real bt rejects {argv}: {proc.stderr[:300]}"
