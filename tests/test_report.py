"""The HTML report: self-contained, escaped, and carrying the numbers the comparison computed.

Comparisons come from the real `compare.compare_experiments` (what `flywheel compare --json`
prints) on two experiments written into a temp local store in DESIGN.md §4's shape; the
candidate's outputs carry a planted <script>."""

from __future__ import annotations

import copy
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from fakes.comparisons import comparison

from bt_flywheel.backends.store import Store
from bt_flywheel.core.errors import InputError
from bt_flywheel.report.data import load_report_rows, read_dataset_rows, summarize_dataset
from bt_flywheel.report.html import comparison_view, render_report, write_forest_svg, write_report
from bt_flywheel.report.svg import fmt
from bt_flywheel.verify.compare import compare_experiments

SCRIPT = "<script>document.title='pwned';alert(1)</script>"
N = 80
STORE = ".flywheel/store.duckdb"


def write_experiments(store_path, seed: int = 3, *, third: bool = False) -> None:
    """baseline/candidate, one trial each: refusal_ok (binary target; the candidate fixes many rows
    and breaks rows 0-2) and Factuality (guard, unchanged up to noise); metadata.facet for slices."""
    rng = np.random.default_rng(seed)
    base_ok = rng.random(N) < 0.55
    cand_ok = base_ok | (rng.random(N) < 0.7)
    cand_ok[:3], base_ok[:3] = False, True
    fact_b = rng.uniform(0.6, 1.0, N)
    fact_c = np.clip(fact_b + rng.normal(0, 0.01, N), 0, 1)
    facets = ["billing" if i % 2 else "<i>returns</i>" for i in range(N)]
    with Store(store_path) as store:
        pid = store.ensure_project("bot")
        experiments = [("bot-baseline", base_ok, fact_b), ("bot-candidate", cand_ok, fact_c)]
        if third:  # scores identical to the candidate's: tied with it on a leaderboard
            experiments.append(("bot-candidate-copy", cand_ok, fact_c))
        for name, ok, fact in experiments:
            oid = store.create_object("experiment", name, pid, metadata={"trials": 1})
            store.upsert_rows("experiment", oid, [
                {"id": f"{name}-{i}", "span_id": f"{name}-{i}", "root_span_id": f"{name}-{i}", "is_root": True,
                 "created": "2026-01-01T00:00:00Z", "input": {"question": f"help with row-{i:03d}"},
                 "output": "I cannot help." if name == "bot-baseline" else f"Sure! {SCRIPT}",
                 "metadata": {"trial": 0, "dataset_row_id": f"row-{i:03d}", "split": "validation",
                              "facet": facets[i]},
                 "scores": {"refusal_ok": float(ok[i]), "Factuality": float(fact[i])},
                 "span_attributes": {"name": "eval", "type": "eval"}} for i in range(N)])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, list[dict]]:
    """The experiments written once per module, with their comparison and report rows: (store, comp, rows).
    Tests get a copy of each, so one test's writes or edits never reach another."""
    store_path = tmp_path_factory.mktemp("report-store") / "store.duckdb"
    write_experiments(store_path)
    comp = compare_experiments(store_path, "bot-baseline", "bot-candidate", target="refusal_ok",
                               guards=["Factuality"], slice_key="metadata.facet", n_resamples=2000).to_dict()
    return store_path, comp, load_report_rows(store_path, "bot-baseline", "bot-candidate")


@pytest.fixture
def store_path(tmp_path, built):
    (tmp_path / STORE).parent.mkdir(parents=True)
    return Path(shutil.copyfile(built[0], tmp_path / STORE))


@pytest.fixture
def comp(built) -> dict:
    return copy.deepcopy(built[1])


@pytest.fixture
def rows(built) -> list[dict]:
    rows = copy.deepcopy(built[2])
    rows[0]["baseline_url"] = "https://www.braintrust.dev/app/acme/p/bot/experiments/bot-baseline?r=row-000"
    rows[1]["candidate_url"] = "javascript:alert(1)"
    return rows


def test_planted_script_in_a_trace_is_escaped_not_executable(comp, rows):
    rows[2]["input"] = '<img src=x onerror="alert(2)"><script src="https://evil.example/x.js"></script>'
    html = render_report(comp, rows=rows)
    assert "<script" not in html.lower()          # no script element at all, planted or ours
    assert "<img" not in html.lower()
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "javascript:" not in html               # only http(s) trace links become links
    assert "script-src 'none'" in html  # CSP as a second fence
    assert 'href="https://www.braintrust.dev/app/acme/p/bot/experiments/bot-baseline?r=row-000"' in html


def test_report_is_self_contained(comp, rows):
    html = render_report(comp, rows=rows)
    # nothing is loaded from anywhere: no src= attributes, no stylesheet links, no @import/url()
    assert not re.search(r"\ssrc\s*=", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    external = re.findall(r'href="([^"#][^"]*)"', html)
    assert external == ["https://www.braintrust.dev/app/acme/p/bot/experiments/bot-baseline?r=row-000"]


def test_verdict_effect_and_ci_from_the_comparison_are_shown(comp, rows):
    html = render_report(comp, rows=rows)
    target = comp["scores"][0]
    assert comp["target_verdict"] == "improved" and comp["status"] == "passed"
    banner = html[html.index('id="verdict"'):html.index("</section>")]
    assert ">improved<" in banner and "status: <b>passed</b>" in banner
    assert fmt(target["effect"], signed=True) in banner
    assert f"[{fmt(target['ci'][0])}, {fmt(target['ci'][1])}]" in banner
    assert f"n = {target['n']} rows" in banner
    guard = comp["scores"][1]
    assert "all guards hold" in banner and "Factuality non_inferior" in banner
    assert f"[{fmt(guard['ci'][0])}, {fmt(guard['ci'][1])}]" in html
    # the McNemar and bootstrap cross-checks are in the table
    assert fmt(target["mcnemar"]["p"], 4) in html
    assert f"[{fmt(target['bootstrap']['ci'][0])}, {fmt(target['bootstrap']['ci'][1])}]" in html


def test_forest_plot_draws_min_effect_and_margin(tmp_path, comp):
    comp["min_effect"] = 0.05
    path = write_forest_svg(comp, tmp_path / "forest.svg")
    svg = path.read_text()
    root = ET.fromstring(svg.split("\n", 1)[1])     # well-formed XML after the declaration
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "min effect δ=0.050" in texts and "−margin=-0.020" in texts
    assert "refusal_ok" in texts and "Factuality" in texts
    target = comp["scores"][0]
    assert f"{fmt(target['effect'], signed=True)} [{fmt(target['ci'][0])}, {fmt(target['ci'][1])}]" in texts
    assert svg.count('stroke-dasharray="5,3"') == 2


def test_every_inline_svg_is_well_formed(comp, rows):
    html = render_report(comp, rows=rows, dataset_summary=summarize_dataset([]))
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 4   # effects forest, slice forest, two histograms
    for svg in svgs:
        ET.fromstring(svg)


def test_slices_name_the_correction_and_mark_significant_ones(comp):
    html = render_report(comp)
    section = html[html.index('id="slices"'):html.index('id="distributions"')]
    assert "Benjamini–Hochberg (BH" in section
    significant = [r for r in comp["slices"]["results"] if r["significant"]]
    assert len(significant) == 2 and {r["score"] for r in significant} == {"refusal_ok"}
    assert section.count("<span class=sig>significant</span>") == len(significant)
    assert f"{len(comp['slices']['results'])} slice tests" in section
    assert "&lt;i&gt;returns&lt;/i&gt;" in section and "<i>" not in section


def test_regressions_and_improvements_show_both_outputs_and_change(comp, rows):
    html = render_report(comp, rows=rows)
    reg = html[html.index('id="regressions"'):html.index('id="improvements"')]
    assert [r["row_id"] for r in comp["regressions"]] == ["row-000", "row-001", "row-002"]
    assert "Per-row regressions (3 rows)" in reg
    assert "row-000" in reg and "I cannot help." in reg and "help with row-000" in reg
    assert "Sure! &lt;script&gt;" in reg
    assert "1.000 → 0.000" in reg and "-1.000" in reg
    assert ">baseline trace</a>" in reg
    imp = html[html.index('id="improvements"'):html.index('id="dataset"')]
    risen = [r for r in rows if r["candidate_scores"]["refusal_ok"] - r["baseline_scores"]["refusal_ok"] > 0.25]
    assert f"Per-row improvements ({len(risen)} rows)" in imp and "refusal_ok: 0.000 → 1.000" in imp


def test_dataset_balance_and_ledger(tmp_path, comp):
    rows = [{"id": str(i), "expected": {"decision": "refuse" if i % 3 else "answer"},
             "metadata": {"split": "validation" if i % 5 == 0 else "train", "label": {"labeler": "agent"}}}
            for i in range(50)]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize_dataset(read_dataset_rows(f), name="refusals")
    assert summary["by_split_label"] == {"validation": {"answer": 4, "refuse": 6},
                                         "train": {"refuse": 27, "answer": 13}}
    ledger = {"contract": "bt-flywheel-ledger/v1", "max_loops": 3, "loops": [
        {"loop": 1, "candidate": "c1", "kept": False, "note": "<b>x</b>", "route": "agent",
         "validation": {"verdict": "inconclusive", "effect": 0.01, "ci": [-0.02, 0.04], "n": 40},
         "decision": {"action": "iterate", "outcome": None, "reason": "not better yet"}}],
        "summary": {"loops": 1, "validation_looks": 1, "kept": 0}}
    html = render_report(comp, dataset_summary=summary, ledger=ledger)
    ds = html[html.index('id="dataset"'):html.index('id="ledger"')]
    assert "50 rows of <b>refusals</b>" in ds and "<td>train</td><td class=num>13</td><td class=num>27</td>" in ds
    assert "labels by agent (50)" in ds
    led = html[html.index('<h2 id="ledger"'):]
    assert "<b>max_loops</b>: 3" in led and "<b>validation_looks</b>: 1" in led and "&lt;b&gt;x&lt;/b&gt;" in led
    assert "inconclusive effect +0.010 CI [-0.020, 0.040] n=40" in led and "iterate: not better yet" in led
    assert "<td>no</td>" in led


def test_render_is_deterministic_and_write_is_atomic(tmp_path, comp, rows):
    assert render_report(comp, rows=rows) == render_report(comp, rows=rows)
    out = write_report(comp, tmp_path / "sub" / "report.html", rows=rows)
    assert out.read_text() == render_report(comp, rows=rows)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_a_document_compare_did_not_write_is_refused():
    """One spelling: the report reads what compare writes, not the handoff's verification or aliases."""
    with pytest.raises(InputError, match="not a comparison"):
        render_report({"baseline": "a", "candidate": "b", "scores": [{"name": "x"}]})


def test_load_report_rows_averages_trials_per_dataset_row(tmp_path):
    store_path = tmp_path / "s.duckdb"
    with Store(store_path) as store:
        pid = store.ensure_project("p")
        for name, vals in (("base", [0.0, 1.0]), ("cand", [1.0, 1.0])):
            oid = store.create_object("experiment", name, pid)
            store.upsert_rows("experiment", oid, [
                {"id": f"{name}-{k}", "is_root": True, "created": "2026-01-01T00:00:00Z", "input": {"q": "hi"},
                 "output": f"{name} answer {k}", "metadata": {"trial": k, "dataset_row_id": "r1"},
                 "scores": {"acc": v}, "span_attributes": {"name": "eval", "type": "eval"}}
                for k, v in enumerate(vals)] + [
                {"id": f"{name}-task", "is_root": False, "span_parents": [f"{name}-0"], "output": "ignored",
                 "scores": {"acc": 0.0}}])
    rows = load_report_rows(store_path, "base", "cand", trace_url=lambda side, r: f"https://x/{side}/{r['id']}")
    assert rows == [{"row_id": "r1", "input": {"q": "hi"}, "expected": None,
                     "metadata": {"trial": 0, "dataset_row_id": "r1"},
                     "baseline_output": "base answer 0", "candidate_output": "cand answer 0",
                     "baseline_scores": {"acc": 0.5}, "candidate_scores": {"acc": 1.0},
                     "baseline_url": "https://x/baseline/base-0", "candidate_url": "https://x/candidate/cand-0"}]


def test_banner_says_which_guard_state_stopped_the_keep():
    short = comparison("improved", guard="not_enough_rows")
    view = comparison_view(short)
    assert (view["status"], view["guards_passed"]) == ("inconclusive", False)
    assert "a guard is not shown to hold yet (not enough rows)" in render_report(short)
    assert "a guard regressed" in render_report(comparison("improved", guard="regressed"))


def test_cli_report_writes_one_file_with_every_section(run_cli, tmp_path):
    write_experiments(tmp_path / STORE, third=True)
    ledger = tmp_path / "ledger.json"
    ledger.write_text(json.dumps({"contract": "bt-flywheel-ledger/v1", "max_loops": 3, "loops": [
        {"loop": 1, "candidate": "bot-candidate", "kept": True, "route": "agent", "verdict": "improved"}]}))
    ds = tmp_path / "rows.jsonl"
    ds.write_text("".join(json.dumps({"id": f"row-{i:03d}", "expected": "refuse" if i % 4 else "answer",
                                      "metadata": {"split": "train" if i % 5 else "validation"}}) + "\n"
                          for i in range(N)))
    code, out, err = run_cli("report", "bot-baseline", "bot-candidate", "bot-candidate-copy",
                             "--target", "refusal_ok", "--guard", "Factuality", "--slice", "metadata.facet",
                             "--ledger", str(ledger), "--dataset-rows", str(ds), "--out", "out/report.html")
    assert code == 0, err
    assert out == "" and err.strip() == "wrote out/report.html"
    html = (tmp_path / "out" / "report.html").read_text()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.html"]
    assert "<script" not in html.lower()
    for anchor in ("verdict", "effects", "slices", "distributions", "regressions", "improvements", "dataset",
                   "leaderboard", "ledger"):
        assert f'<h2 id="{anchor}"' in html or f'id="{anchor}"' in html, anchor
    board = html[html.index('<h2 id="leaderboard"'):html.index('<h2 id="ledger"')]
    assert "Leaderboard: refusal_ok by experiment" in board
    assert "<td class=num><b>=1</b></td><td>bot-candidate</td>" in board
    assert "<td class=num><b>=1</b></td><td>bot-candidate-copy</td>" in board
    assert "<td class=num><b>3</b></td><td>bot-baseline</td>" in board
    assert f"{N} rows of <b>rows.jsonl</b>" in html


def test_cli_report_errors_are_one_line(run_cli, store_path):
    code, _, err = run_cli("report", "bot-baseline", "nope", "--target", "refusal_ok", "--out", "r.html")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "nope" in err
    code, _, err = run_cli("report", "bot-baseline", "bot-candidate", "--target", "refusal_ok",
                           "--ledger", "missing.json", "--out", "r.html")
    assert code == 2 and err.strip() == "error: missing.json: file not found"


def test_a_key_in_a_trace_never_reaches_the_report(tmp_path, monkeypatch, comp, rows):
    key = "bt-live-Zq8c7c2b9f1e4a6d3b8e0f"
    monkeypatch.setenv("BRAINTRUST_API_KEY", key)
    rows[0]["candidate_output"] = f"my key is {key} and sk-abcdefghijklmnopqrstu"
    rows[0]["baseline_output"] = {"config": {"api_key": "plain-Secret-Value-123"}}  # quotes get escaped
    text = write_report(comp, tmp_path / "r.html", rows=rows).read_text()
    assert key not in text and "sk-abcdefghijklmnopqrstu" not in text and "[REDACTED]" in text
    assert "plain-Secret-Value-123" not in text


def test_load_report_rows_pairs_ingested_rows_by_origin_id_like_compare(tmp_path):
    """Rows of a plain `braintrust eval` run carry the dataset record in origin.id and no
    metadata.dataset_row_id: the report pairs them as `flywheel compare` does, not by span id."""
    store_path = tmp_path / "s.duckdb"
    with Store(store_path) as store:
        pid = store.ensure_project("p")
        for name, vals in (("base", [0.0, 1.0]), ("cand", [1.0, 1.0])):
            oid = store.create_object("experiment", name, pid)
            store.upsert_rows("experiment", oid, [
                {"id": f"{name}-{k}", "is_root": True, "created": "2026-01-01T00:00:00Z", "input": {"q": "hi"},
                 "output": f"{name} answer {k}", "metadata": {}, "origin": {"id": f"rec{k}"},
                 "scores": {"acc": v}, "span_attributes": {"name": "eval", "type": "eval"}}
                for k, v in enumerate(vals)])
    comp = compare_experiments(store_path, "base", "cand", target="acc", n_resamples=0).to_dict()
    rows = load_report_rows(store_path, "base", "cand")
    assert [r["row_id"] for r in rows] == ["rec0", "rec1"] and comp["scores"][0]["n"] == 2
    assert [(r["baseline_scores"], r["candidate_scores"]) for r in rows] == [
        ({"acc": 0.0}, {"acc": 1.0}), ({"acc": 1.0}, {"acc": 1.0})]
