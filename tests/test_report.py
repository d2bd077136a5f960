"""The HTML report: self-contained, escaped, and carrying the numbers the comparison computed.

The comparison documents here are built from stats.compare_paired (the real per-score shape
`flywheel compare --json` carries), on constructed per-row scores."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bt_flywheel.report import comparison_view, render_report, write_forest_svg, write_report
from bt_flywheel.report_data import load_report_rows, read_dataset_rows, summarize_dataset
from bt_flywheel.report_svg import fmt
from bt_flywheel.stats import compare_paired
from bt_flywheel.store import Store

SCRIPT = "<script>document.title='pwned';alert(1)</script>"
N = 80


def scores_by_row(seed: int = 3) -> tuple[dict, dict, dict, dict]:
    rng = np.random.default_rng(seed)
    base_ok = rng.random(N) < 0.55
    cand_ok = base_ok | (rng.random(N) < 0.45)  # the candidate fixes many rows...
    cand_ok[:3] = False                          # ...and breaks three
    base_ok[:3] = True
    fact_b = rng.uniform(0.6, 1.0, N)
    fact_c = np.clip(fact_b + rng.normal(0, 0.01, N), 0, 1)
    ids = [f"row-{i:03d}" for i in range(N)]
    tb = {i: [float(v)] for i, v in zip(ids, base_ok, strict=True)}
    tc = {i: [float(v)] for i, v in zip(ids, cand_ok, strict=True)}
    fb = {i: [float(v)] for i, v in zip(ids, fact_b, strict=True)}
    fc = {i: [float(v)] for i, v in zip(ids, fact_c, strict=True)}
    return tb, tc, fb, fc


def make_comparison() -> dict:
    tb, tc, fb, fc = scores_by_row()
    target = compare_paired(tb, tc, name="refusal_ok", role="target", rng=0, n_resamples=2000)
    guard = compare_paired(fb, fc, name="Factuality", role="guard", rng=0, n_resamples=2000)
    return {
        "baseline": {"name": "bot-baseline", "id": "e-b"}, "candidate": {"name": "bot-candidate", "id": "e-c"},
        "target": "refusal_ok", "verdict": target.verdict, "alpha": 0.05, "min_effect": 0.0, "margin": 0.02,
        "scores": [target.to_dict(), guard.to_dict()],
        "slices": {"key": "metadata.facet", "correction": "BH", "items": [
            {"value": "billing", "score": "refusal_ok", "n": 40, "effect": 0.3, "ci": [0.15, 0.45], "p": 0.0004,
             "q": 0.0008, "significant": True},
            {"value": "<i>returns</i>", "score": "refusal_ok", "n": 40, "effect": 0.05, "ci": [-0.1, 0.2],
             "p": 0.5, "q": 0.5, "significant": False}]},
    }


def report_rows() -> list[dict]:
    tb, tc, fb, fc = scores_by_row()
    rows = []
    for rid in tb:
        rows.append({"row_id": rid, "input": {"question": f"help with {rid}"},
                     "baseline_output": "I cannot help.", "candidate_output": f"Sure! {SCRIPT}",
                     "baseline_scores": {"refusal_ok": tb[rid][0], "Factuality": fb[rid][0]},
                     "candidate_scores": {"refusal_ok": tc[rid][0], "Factuality": fc[rid][0]}})
    rows[0]["baseline_url"] = "https://www.braintrust.dev/app/acme/p/bot/experiments/bot-baseline?r=row-000"
    rows[1]["candidate_url"] = "javascript:alert(1)"
    return rows


def test_planted_script_in_a_trace_is_escaped_not_executable():
    rows = report_rows()
    rows[2]["input"] = '<img src=x onerror="alert(2)"><script src="https://evil.example/x.js"></script>'
    html = render_report(make_comparison(), rows=rows)
    assert "<script" not in html.lower()          # no script element at all, planted or ours
    assert "<img" not in html.lower()
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "javascript:" not in html               # only http(s) trace links become links
    assert "script-src 'none'" in html  # CSP as a second fence
    assert 'href="https://www.braintrust.dev/app/acme/p/bot/experiments/bot-baseline?r=row-000"' in html


def test_report_is_self_contained():
    html = render_report(make_comparison(), rows=report_rows())
    # nothing is loaded from anywhere: no src= attributes, no stylesheet links, no @import/url()
    assert not re.search(r"\ssrc\s*=", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    external = re.findall(r'href="([^"#][^"]*)"', html)
    assert external == ["https://www.braintrust.dev/app/acme/p/bot/experiments/bot-baseline?r=row-000"]


def test_verdict_effect_and_ci_from_the_comparison_are_shown():
    comp = make_comparison()
    html = render_report(comp, rows=report_rows())
    target = comp["scores"][0]
    assert target["verdict"] == "improved"
    banner = html[html.index('id="verdict"'):html.index("</section>")]
    assert ">improved<" in banner
    assert fmt(target["effect"], signed=True) in banner
    assert f"[{fmt(target['ci'][0])}, {fmt(target['ci'][1])}]" in banner
    assert f"n = {target['n']} rows" in banner
    guard = comp["scores"][1]
    assert "all guards hold" in banner and "Factuality non_inferior" in banner
    assert f"[{fmt(guard['ci'][0])}, {fmt(guard['ci'][1])}]" in html
    # the McNemar and bootstrap cross-checks are in the table
    assert fmt(target["mcnemar"]["p"], 4) in html
    assert f"[{fmt(target['bootstrap']['ci'][0])}, {fmt(target['bootstrap']['ci'][1])}]" in html


def test_forest_plot_draws_min_effect_and_margin(tmp_path):
    comp = make_comparison()
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


def test_every_inline_svg_is_well_formed():
    html = render_report(make_comparison(), rows=report_rows(), dataset_summary=summarize_dataset([]))
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 4   # effects forest, slice forest, two histograms
    for svg in svgs:
        ET.fromstring(svg)


def test_slices_name_the_correction_and_mark_significant_ones():
    html = render_report(make_comparison())
    section = html[html.index('id="slices"'):html.index('id="distributions"')]
    assert "Benjamini–Hochberg (BH" in section
    assert section.count("<span class=sig>significant</span>") == 1
    assert "&lt;i&gt;returns&lt;/i&gt;" in section and "<i>" not in section


def test_regressions_and_improvements_show_both_outputs_and_change():
    comp = make_comparison()
    html = render_report(comp, rows=report_rows())
    reg = html[html.index('id="regressions"'):html.index('id="improvements"')]
    regressions = comp["scores"][0]["regressions"]
    assert len(regressions) == 3 and f"Per-row regressions ({len(regressions)})" in reg
    assert "row-000" in reg and "I cannot help." in reg and "help with row-000" in reg
    assert "1.000 → 0.000" in reg and "-1.000" in reg
    assert ">baseline trace</a>" in reg


def test_dataset_balance_and_ledger(tmp_path):
    rows = [{"id": str(i), "expected": {"decision": "refuse" if i % 3 else "answer"},
             "metadata": {"split": "validation" if i % 5 == 0 else "train", "label": {"labeler": "agent"}}}
            for i in range(50)]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    summary = summarize_dataset(read_dataset_rows(f), name="refusals")
    assert summary["by_split_label"] == {"validation": {"answer": 4, "refuse": 6},
                                         "train": {"refuse": 27, "answer": 13}}
    ledger = {"max_loops": 3, "entries": [{"loop": 1, "candidate": "c1", "kept": False, "note": "<b>x</b>"}]}
    html = render_report(make_comparison(), dataset_summary=summary, ledger=ledger)
    ds = html[html.index('id="dataset"'):html.index('id="ledger"')]
    assert "50 rows of <b>refusals</b>" in ds and "<td>train</td><td class=num>13</td><td class=num>27</td>" in ds
    assert "labels by agent (50)" in ds
    led = html[html.index('<h2 id="ledger"'):]
    assert "<b>max_loops</b>: 3" in led and "&lt;b&gt;x&lt;/b&gt;" in led


def test_render_is_deterministic_and_write_is_atomic(tmp_path):
    comp, rows = make_comparison(), report_rows()
    assert render_report(comp, rows=rows) == render_report(comp, rows=rows)
    out = write_report(comp, tmp_path / "sub" / "report.html", rows=rows)
    assert out.read_text() == render_report(comp, rows=rows)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_missing_fields_render_as_na_not_a_crash():
    html = render_report({"baseline": "a", "candidate": "b", "scores": [{"name": "x"}]})
    assert "inconclusive" in html and "n/a" in html


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


def test_view_accepts_the_handoff_verification_shape():
    """write_forest_svg also takes the handoff's `verification` (scores with name/role/effect/ci)."""
    view = comparison_view({"target": "acc", "scores": [
        {"name": "acc", "role": "target", "effect": 0.1, "ci": [0.02, 0.18], "p": 0.01, "n": 50,
         "verdict": "improved"}]})
    assert view["verdict"] == "improved" and view["target_row"]["ci_low"] == pytest.approx(0.02)
