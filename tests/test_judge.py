"""The lazy judge of candidate outputs (seed 001, issue 13) on local experiments run by `flywheel eval`:
export the pending (row, trial) outputs with a multi-dimension versioned rubric, fill every dimension
with a rationale (here a rule standing in for the flywheel-judge subagent, with planted
disagreements), apply, and read the scores back through experiment() SQL, compare and the
leaderboard; κ is checked against statsmodels and the spot-check list holds exactly the planted
rows. The remote path goes to a loopback Braintrust (tests/fakes, never the network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeBraintrust, FakeModelServer
from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

from bt_flywheel.backends.sql import run_query
from bt_flywheel.core.schemas import schema_errors

STORE = ".flywheel/store.duckdb"
ROWS = 24
PLANTED_FORMAT = {3, 7, 11}     # the judge says the format is wrong where the automatic check passed
PLANTED_RELEVANCE = {5, 13}     # the judge is three levels away from the automatic score

EVAL_FILE = """\
from braintrust import Eval, Score

PROMPT = {prompt!r}
DATA = [{{"input": {{"question": f"tip {{i}}"}}, "metadata": {{"i": i}}}} for i in range({rows})]


def task(input):
    i = int(input["question"].split()[1])
    return {{"tip": f"Tip {{i}} ({{PROMPT}})", "level": min(4, i % 5 + {shift})}}


def auto_relevance(output, **_):
    return Score(name="auto_relevance", score=min(output["level"] / 4, 1.0))


def auto_format(output, **_):
    return Score(name="auto_format", score=float(output["level"] != 0))


Eval("tips", data=DATA, task=task, scores=[auto_relevance, auto_format],
     metadata={{"model": "tip-model", "prompt": PROMPT}})
"""

RUBRIC = """\
version: tip-v1
instructions: Judge the tip for the question. Relevance is how well it answers; format_ok is whether it is one line.
dimensions:
  - {name: relevance, scale: [1, 5], description: 1 off-topic, 5 exactly what was asked}
  - {name: format_ok, scale: [0, 1], description: 1 when the tip is one well-formed line}
"""


def _run_eval(run_cli, prompt: str, shift: int) -> None:
    Path(f"eval_{prompt}.py").write_text(EVAL_FILE.format(prompt=prompt, rows=ROWS, shift=shift))
    code, _, err = run_cli("eval", f"eval_{prompt}.py", "--name", f"tips-{prompt}", "--silent")
    assert code == 0, err


def _fill_like_the_subagent(path: str) -> dict:
    """Stand-in for the flywheel-judge subagent: score every dimension by rule, with a rationale."""
    doc = json.loads(Path(path).read_text())
    for row in doc["rows"]:
        i, level = int(row["input"]["question"].split()[1]), row["output"]["level"]
        relevance = 1 + level
        if i in PLANTED_RELEVANCE:
            relevance = 1 + (level + 3 if level < 2 else level - 3)
        elif i % 4 == 1:  # near misses: exactly one level (0.25) apart, not over the threshold
            relevance = relevance + 1 if relevance < 5 else relevance - 1
        format_ok = int(level != 0) if i not in PLANTED_FORMAT else int(level == 0)
        row["scores"] = {"relevance": relevance, "format_ok": format_ok}
        row["rationales"] = {"relevance": f"level {level} answer", "format_ok": "one line" if format_ok else "broken"}
    doc["judged_by"] = "claude-code-session"
    Path(path).write_text(json.dumps(doc))
    return doc


@pytest.fixture
def judged(run_cli) -> dict:
    Path("rubric.yaml").write_text(RUBRIC)
    for prompt, shift in (("v1", 0), ("v2", 1)):
        _run_eval(run_cli, prompt, shift)
        code, out, err = run_cli("judge", "export", f"tips-{prompt}", "--rubric", "rubric.yaml", "--out",
                                 f"judge-{prompt}.json", "--json")
        assert code == 0, err
        assert json.loads(out)["exported"] == ROWS
        _fill_like_the_subagent(f"judge-{prompt}.json")
        code, out, err = run_cli("judge", "apply", f"judge-{prompt}.json", "--json")
        assert code == 0, err
        assert json.loads(out)["applied"] == ROWS
    return json.loads(Path("judge-v1.json").read_text())


def test_export_is_valid_and_lists_every_pending_row_and_trial(run_cli) -> None:
    Path("rubric.yaml").write_text(RUBRIC)
    _run_eval(run_cli, "v1", 0)
    assert run_cli("judge", "export", "tips-v1", "--rubric", "rubric.yaml", "--out", "j.json")[0] == 0
    doc = json.loads(Path("j.json").read_text())
    assert schema_errors(doc, "judge.schema.json") == []
    assert doc["rubric"]["version"] == "tip-v1"
    assert [d["name"] for d in doc["rubric"]["dimensions"]] == ["relevance", "format_ok"]
    assert len(doc["rows"]) == ROWS and all(r["scores"] == {"relevance": None, "format_ok": None} for r in doc["rows"])
    assert all(r["output"]["tip"].startswith("Tip ") for r in doc["rows"])


def test_judged_scores_land_in_the_experiment_like_any_score(run_cli, judged: dict) -> None:
    rows = run_query(STORE, "SELECT metadata.dataset_row_id AS row_id, scores.relevance AS relevance, "
                            "scores.format_ok AS format_ok, metadata.judge.rubric_version AS rubric "
                            "FROM experiment('tips-v2') WHERE span_attributes.type = 'eval'").rows
    assert len(rows) == ROWS
    assert {r["rubric"] for r in rows} == {"tip-v1"}
    assert all(0.0 <= r["relevance"] <= 1.0 and r["format_ok"] in (0, 1) for r in rows)
    spans = run_query(STORE, "SELECT count(*) AS n, avg(scores.relevance) AS relevance FROM experiment('tips-v2') "
                             "WHERE span_attributes.name = 'judge'").rows
    assert spans[0]["n"] == ROWS
    # re-applying the same file changes nothing
    code, out, err = run_cli("judge", "apply", "judge-v2.json", "--json")
    assert code == 0 and json.loads(out)["written"]["local"]["inserted"] == 0
    # and nothing is pending any more
    code, out, _ = run_cli("judge", "export", "tips-v2", "--rubric", "rubric.yaml", "--out", "again.json", "--json")
    assert json.loads(out)["exported"] == 0

    code, out, err = run_cli("compare", "tips-v1", "tips-v2", "--target", "relevance", "--guard", "format_ok",
                             "--resamples", "0", "--json")
    assert code == 0, err
    comparison = json.loads(out)
    assert comparison["target"] == "relevance" and comparison["scores"][0]["n"] == ROWS

    code, out, err = run_cli("leaderboard", "tips-v1", "tips-v2", "--score", "relevance", "--by",
                             "metadata.model,metadata.prompt", "--json")
    assert code == 0, err
    board = json.loads(out)
    code, _, err = run_cli("report", "tips-v1", "tips-v2", "--target", "relevance", "--out", "report.html")
    assert code == 0, err
    assert "relevance" in Path("report.html").read_text(encoding="utf-8")

    # v2's answers are one level better on most rows: it ranks first on the judged dimension
    assert [(c["label"], c["rank"]) for c in board["cells"]] == [("tip-model · v2", 1), ("tip-model · v1", 2)]


def test_agreement_kappa_matches_statsmodels_and_lists_exactly_the_planted_rows(run_cli, judged: dict) -> None:
    code, out, err = run_cli("judge", "agreement", "tips-v1", "--pair", "auto_relevance=relevance",
                             "--pair", "auto_format=format_ok", "--json")
    assert code == 0, err
    report = json.loads(out)
    relevance, fmt = report["pairs"]
    assert report["rubric_versions"] == ["tip-v1"]

    # the same labels, tabulated here from the judge file and the automatic scores the task produced
    def table(pairs: list[tuple[int, int]], k: int) -> list[list[int]]:
        out = [[0] * k for _ in range(k)]
        for a, b in pairs:
            out[a][b] += 1
        return out

    rows = judged["rows"]
    rel_pairs = [(r["output"]["level"], r["scores"]["relevance"] - 1) for r in rows]
    fmt_pairs = [(int(r["output"]["level"] != 0), r["scores"]["format_ok"]) for r in rows]
    assert relevance["levels"] == 5 and fmt["levels"] == 2
    assert relevance["kappa"] == pytest.approx(sm_kappa(table(rel_pairs, 5)).kappa, abs=1e-9)
    assert fmt["kappa"] == pytest.approx(sm_kappa(table(fmt_pairs, 2)).kappa, abs=1e-9)
    assert relevance["mean_abs_delta"] == pytest.approx(sum(abs(a - b) for a, b in rel_pairs) / 4 / ROWS)

    def planted(pair: dict) -> set[int]:
        ids = {r["id"]: int(r["input"]["question"].split()[1]) for r in rows}
        return {ids[s["id"]] for s in pair["spot_check"]}

    assert planted(relevance) == PLANTED_RELEVANCE  # the one-level near misses (0.25) are not listed
    assert planted(fmt) == PLANTED_FORMAT
    assert all(s["rationale"] for s in relevance["spot_check"])


def test_a_bad_judgement_names_the_row_and_nothing_is_applied(run_cli) -> None:
    Path("rubric.yaml").write_text(RUBRIC)
    _run_eval(run_cli, "v1", 0)
    run_cli("judge", "export", "tips-v1", "--rubric", "rubric.yaml", "--out", "j.json")
    doc = _fill_like_the_subagent("j.json")
    doc["rows"][2]["scores"]["relevance"] = 9
    doc["rows"][4]["rationales"]["format_ok"] = ""
    Path("j.json").write_text(json.dumps(doc))
    code, out, err = run_cli("judge", "apply", "j.json")
    assert code == 2
    assert "rows[2]" in err and "scores.relevance: 9 is not a whole number in [1, 5]" in err
    assert "rows[4]" in err and "rationales.format_ok: missing" in err
    assert err.strip().endswith("(fix them, or --skip-bad to apply the rest)") or "nothing applied" in err
    assert run_query(STORE, "SELECT count(*) AS n FROM experiment('tips-v1') "
                            "WHERE span_attributes.name = 'judge'").rows[0]["n"] == 0


def test_an_llm_judge_fills_every_dimension_through_the_labelers_client(run_cli, monkeypatch) -> None:
    def judge(messages: list[dict]) -> dict:
        return {"scores": {"relevance": 4, "format_ok": 1}, "rationales": {"relevance": "on topic",
                                                                           "format_ok": "one line"}}

    Path("rubric.yaml").write_text(RUBRIC)
    _run_eval(run_cli, "v1", 0)
    run_cli("judge", "export", "tips-v1", "--rubric", "rubric.yaml", "--out", "j.json")
    with FakeModelServer(judge=judge) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        code, out, err = run_cli("judge", "fill", "j.json", "--model", "judge-model", "--json")
    assert code == 0, err
    assert json.loads(out) == {"filled": ROWS, "failed": 0}
    assert len(server.requests_to("chat")) == ROWS
    code, out, err = run_cli("judge", "apply", "j.json", "--json")
    assert code == 0 and json.loads(out)["applied"] == ROWS


def test_remote_apply_goes_through_the_sdk_feedback_path(run_cli, monkeypatch) -> None:
    """A loopback Braintrust (never the network) receives log_feedback merges on the same row ids."""
    Path("rubric.yaml").write_text(RUBRIC)
    _run_eval(run_cli, "v1", 0)
    run_cli("judge", "export", "tips-v1", "--rubric", "rubric.yaml", "--out", "j.json")
    doc = _fill_like_the_subagent("j.json")
    with FakeBraintrust() as server:
        monkeypatch.setenv("BRAINTRUST_API_KEY", "bt-loopback-key-0000000000")
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        monkeypatch.setenv("BRAINTRUST_API_URL", server.url)
        code, out, err = run_cli("judge", "apply", "j.json", "--json")
        assert code == 0, err
        sent = [row for request in server.requests_to("logs") if isinstance(request.body, dict)
                for row in request.body.get("rows") or []]
        created = [r.body for r in server.requests_to("experiment")]
    assert json.loads(out)["written"]["remote"]["sent"] == ROWS
    merges = {r["id"]: r for r in sent if r.get("_is_merge")}
    assert set(merges) == {r["id"] for r in doc["rows"]}
    first = doc["rows"][0]
    assert merges[first["id"]]["scores"] == {"relevance": (first["scores"]["relevance"] - 1) / 4,
                                             "format_ok": float(first["scores"]["format_ok"])}
    assert merges[first["id"]]["_audit_source"] == "external"
    assert merges[first["id"]]["_audit_metadata"]["rubric_version"] == "tip-v1"
    assert any(r.get("comment", {}).get("text") for r in sent if not r.get("_is_merge"))
    assert created and created[0]["ensure_new"] is False and created[0]["name"] == "tips-v1"  # the same experiment
