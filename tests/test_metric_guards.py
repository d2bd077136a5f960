"""Metric guards (`compare --guard-metric tokens|cost|latency|duration[:max_increase]`) read the
span metrics of every trace, in the span shape the Braintrust SDK logs (root eval span, task span,
an LLM span with token metrics and metadata.model), and can fail a candidate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bt_flywheel.backends.store import Store
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.mode import Mode
from bt_flywheel.handoff.contract import HandoffBuilder
from bt_flywheel.verify.compare import compare_experiments
from bt_flywheel.verify.comparison_model import ComparisonDoc
from bt_flywheel.verify.metrics import fieller_ratio, parse_metric_guard, parse_prices
from bt_flywheel.verify.route import decide

STORE = ".flywheel/store.duckdb"  # where the CLI looks by default (tests run in tmp_path)
ROWS = 40


def write_traces(store: Path, name: str, *, accuracy: list[float], token_scale: float = 1.0,
                 latency_scale: float = 1.0, model: str = "gpt-4o-mini", with_cost: bool = False,
                 trials: int = 2, noise: float = 0.03) -> None:
    """An experiment of ROWS rows x `trials` traces: root (eval, scores) -> task -> llm (tokens)."""
    rng = np.random.default_rng(sum(map(ord, name)))
    rows = []
    with Store(store) as s:
        pid = s.ensure_project("support-bot")
        oid = s.create_object("experiment", name, pid, metadata={"trials": trials, "split": "validation"})
        for i in range(ROWS):
            prompt = 400 + 20 * i
            for t in range(trials):
                root = f"{name}-{i}-{t}"
                start = 1_700_000_000.0 + 100 * i + 10 * t
                took = (1.0 + 0.02 * i) * latency_scale * (1 + 0.05 * rng.standard_normal())
                p_tok = round(prompt * token_scale * rng.lognormal(0, noise))
                c_tok = round(120 * token_scale * rng.lognormal(0, noise))
                llm_metrics = {"start": start + 0.1, "end": start + 0.1 + took * 0.8, "prompt_tokens": p_tok,
                               "completion_tokens": c_tok, "tokens": p_tok + c_tok}
                if with_cost:
                    llm_metrics["estimated_cost"] = (p_tok * 0.15 + c_tok * 0.6) / 1e6
                common = {"root_span_id": root, "created": "2026-01-01T00:00:00Z"}
                rows += [
                    {"id": root, "span_id": root, "span_parents": None, "is_root": True, **common,
                     "input": {"q": i}, "output": "a", "metadata": {"dataset_row_id": f"r{i:02d}", "trial": t},
                     "scores": {"acc": accuracy[i]}, "metrics": {"start": start, "end": start + took + 0.3},
                     "span_attributes": {"name": "eval", "type": "eval"}},
                    {"id": root + "-task", "span_id": root + "-task", "span_parents": [root], "is_root": False,
                     **common, "metrics": {"start": start + 0.05, "end": start + took + 0.05},
                     "span_attributes": {"name": "task", "type": "task"}},
                    {"id": root + "-llm", "span_id": root + "-llm", "span_parents": [root + "-task"],
                     "is_root": False, **common, "metrics": llm_metrics, "metadata": {"model": model},
                     "span_attributes": {"name": "Chat Completion", "type": "llm"}},
                ]
        s.upsert_rows("experiment", oid, rows)


def _store(tmp_path: Path, **cand: object) -> Path:
    store = tmp_path / STORE
    write_traces(store, "base", accuracy=[float(i % 3 == 0) for i in range(ROWS)])
    write_traces(store, "cand", accuracy=[float(i % 3 != 2) for i in range(ROWS)], **cand)  # target up
    return store


def test_a_cost_guard_fails_a_candidate_that_raises_tokens_by_half_and_the_handoff_says_why(tmp_path):
    store = _store(tmp_path, token_scale=1.5)
    comp = compare_experiments(store, "base", "cand", target="acc", n_resamples=0,
                               metric_guards=[parse_metric_guard("cost"), parse_metric_guard("tokens:0.6")])
    doc = comp.to_dict()
    ComparisonDoc.from_dict(doc)
    target, cost, tokens = doc["scores"]
    assert target["verdict"] == "improved"
    assert cost["kind"] == "metric" and cost["verdict"] == "regressed"
    assert cost["metric"]["ratio"] == pytest.approx(1.5, abs=0.02) and cost["metric"]["ratio_ci"][0] > 1.1
    assert tokens["verdict"] == "non_inferior"  # +50% is within an allowed +60%
    assert (doc["status"], doc["keep"]) == ("failed", False)
    verification = HandoffBuilder(goal="g", project="support-bot", mode=Mode("autonomous", "CI=true")
                                  ).set_verification(doc).verification
    assert verification["status"] == "failed" and verification["guards"]["passed"] is False
    assert "guard cost regressed" in verification["note"] and "cost +5" in verification["note"]
    assert "allowed increase +10%: regressed" in verification["note"]
    cost_entry = verification["scores"][1]
    assert cost_entry["secondary"]["metric"] == "cost" and cost_entry["secondary"]["ratio"] == pytest.approx(1.5, abs=0.02)
    assert decide(comparison=doc).route.condition == "guard_failed"


def test_cost_is_estimated_cost_when_logged_and_tokens_times_prices_otherwise(tmp_path):
    store = tmp_path / STORE
    write_traces(store, "base", accuracy=[1.0] * ROWS, with_cost=True)
    write_traces(store, "cand", accuracy=[1.0] * ROWS, model="house-model")
    with pytest.raises(InputError, match="no price for model 'house-model'"):
        compare_experiments(store, "base", "cand", target="acc", n_resamples=0,
                            metric_guards=[parse_metric_guard("cost")])
    comp = compare_experiments(store, "base", "cand", target="acc", n_resamples=0,
                               metric_guards=[parse_metric_guard("cost")],
                               prices=parse_prices(["house-model=0.15,0.6"]))
    cost = comp.to_dict()["scores"][1]
    # the same tokens at the same prices cost the same, whether logged or computed
    assert cost["metric"]["ratio"] == pytest.approx(1.0, abs=0.03) and cost["verdict"] == "non_inferior"


def test_latency_and_duration_read_the_root_and_the_task_span(tmp_path):
    store = _store(tmp_path, latency_scale=1.3)
    doc = compare_experiments(store, "base", "cand", target="acc", n_resamples=0,
                              metric_guards=[parse_metric_guard("latency:0.5"),
                                             parse_metric_guard("duration")]).to_dict()
    latency, duration = doc["scores"][1:]
    assert latency["baseline_mean"] == pytest.approx(np.mean([1 + 0.02 * i for i in range(ROWS)]) + 0.3, rel=0.02)
    assert latency["verdict"] == "non_inferior" and duration["verdict"] == "regressed"
    assert duration["metric"]["ratio"] == pytest.approx(1.3, abs=0.03)


def test_a_metric_short_of_rows_asks_for_rows_with_the_same_bound(tmp_path):
    """Noisy token counts (±40% per trace), no real change, an allowance of +5%: neither held nor
    regressed on 40 rows, so the guard asks for the rows its upper bound needs."""
    store = tmp_path / STORE
    write_traces(store, "base", accuracy=[float(i % 3 == 0) for i in range(ROWS)], noise=0.4)
    write_traces(store, "cand", accuracy=[float(i % 3 != 2) for i in range(ROWS)], noise=0.4)
    doc = compare_experiments(store, "base", "cand", target="acc", n_resamples=0,
                              metric_guards=[parse_metric_guard("tokens:0.05")]).to_dict()
    tokens = doc["scores"][1]
    power = tokens["power"]
    assert tokens["verdict"] == "not_enough_rows" and (power["bound"], power["side"]) == (1.05, "upper")
    assert tokens["metric"]["ratio_ci"][0] < 1 < 1.05 < tokens["metric"]["ratio_ci"][1]
    assert power["required_n"] > tokens["n"] and power["power_at_n"] < 0.8
    assert doc["needs_rows"] and decide(comparison=doc).route.condition == "guard_not_enough_rows"


def test_fieller_interval_inverts_the_t_test_on_the_linear_combination():
    rng = np.random.default_rng(3)
    b = rng.lognormal(6, 0.4, 50)
    c = b * rng.lognormal(0.1, 0.1, 50)
    ratio, low, high = fieller_ratio(b, c, alpha=0.05)
    from scipy import stats as st
    for rho, inside in ((low, True), (high, True), (low - 1e-6, False), (high + 1e-6, False)):
        p = st.ttest_1samp(c - rho * b, 0.0).pvalue
        assert (p >= 0.05 - 1e-6) == inside
    assert ratio == pytest.approx(c.mean() / b.mean())


def test_cli_guard_metric_and_price_flags(tmp_path, run_cli):
    _store(tmp_path, token_scale=1.5)
    code, out, err = run_cli("compare", "base", "cand", "--target", "acc", "--guard-metric", "tokens",
                             "--resamples", "0", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["metric_guards"] == [{"metric": "tokens", "max_increase": 0.1}] and doc["status"] == "failed"
    code, _, err = run_cli("compare", "base", "cand", "--target", "acc", "--guard-metric", "vibes")
    assert code == 2 and "tokens, cost, latency, duration" in err and err.count("\n") == 1
    code, _, err = run_cli("compare", "base", "cand", "--target", "acc", "--guard-metric", "cost",
                           "--price", "gpt-4o-mini=cheap")
    assert code == 2 and "MODEL=INPUT,OUTPUT" in err


def test_remote_metric_guards_read_span_metrics_through_btql_like_local(tmp_path, run_cli, monkeypatch):
    """The same traces in the local store and in the loopback Braintrust (tests/fakes: 127.0.0.1
    inside the test, never the network): `--guard-metric` reads them through the backend's
    `experiment_span_metrics` (a btql `select:` of every span) and both give the same guard."""
    from fakes import FakeBraintrust

    store = _store(tmp_path, token_scale=1.5, latency_scale=1.3)
    argv = ("compare", "base", "cand", "--target", "acc", "--guard-metric", "tokens", "--guard-metric",
            "latency:0.5", "--guard-metric", "duration", "--resamples", "0", "--project", "support-bot", "--json")
    code, out, err = run_cli(*argv, "--local")
    assert code == 0, err
    local = json.loads(out)
    with FakeBraintrust() as server:
        project_id = server.add_project("support-bot")
        with Store(store, read_only=True) as s:
            for i, name in enumerate(("base", "cand")):
                rows = [{k: v for k, v in r.items() if v is not None and k != "_xact_id"}
                        for r in s.iter_rows("experiment", s.find_object("experiment", name))]
                server.add_experiment(project_id, name, rows, created=f"2026-03-0{i + 1}T10:00:00.000Z")
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        monkeypatch.setenv("BRAINTRUST_API_KEY", "bt-loopback-key-0123456789")
        code, out, err = run_cli(*argv, "--remote")
        assert code == 0, err
        remote = json.loads(out)
        queries = [r.body["query"] for r in server.requests_to("btql")]
    assert [s["verdict"] for s in remote["scores"]] == [s["verdict"] for s in local["scores"]] == [
        "improved", "regressed", "non_inferior", "regressed"]
    for r, lo in zip(remote["scores"][1:], local["scores"][1:], strict=True):
        assert (r["metric"], r["n"], r["effect"], r["ci"]) == (lo["metric"], lo["n"], lo["effect"], lo["ci"])
    assert any(q.startswith("select: id, span_id, root_span_id, is_root, span_attributes, metrics, metadata | "
                            "from: experiment('exp-0001-base') spans") for q in queries)
