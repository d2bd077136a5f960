"""The one page a person opens: a self-contained HTML report of a baseline/candidate comparison.

No network and no JavaScript: inline CSS, inline SVG (report_svg.py), and every piece of text
from traces, datasets or names passes through `html.escape`, so a trace containing markup or
`<script>` renders as text. A Content-Security-Policy meta tag forbids scripts as a second fence.

Input is the comparison `flywheel compare --json` writes, read through
`verify.comparison_model.ComparisonDoc` (validated, one spelling per field); `comparison_view()`
turns it into what the page needs.

Public API (used by the CLI, the demo and the handoff step):
    render_report(comparison, *, rows=None, ledger=None, dataset_summary=None,
                  leaderboard=None, title=None, generated_at=None) -> str
    write_report(comparison, out_path, **same keywords) -> Path          (atomic, redacted)
    forest_svg_for(comparison) -> str
    write_forest_svg(comparison, path) -> Path                            (atomic, redacted)
    report_data.load_report_rows(backend_or_store_path, baseline, candidate, *, project=None, trace_url=None)
    report_data.summarize_dataset(rows, *, name=None) -> dict
    report_data.build_report_inputs(backend_or_store_path, baseline, candidate, ...) -> dict   (what the CLI uses)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bt_flywheel.core.fileio import atomic_write_text
from bt_flywheel.core.redact import redact
from bt_flywheel.report.svg import COLORS, Forest, ForestItem, RefLine, esc, fmt, forest_svg, histogram_svg
from bt_flywheel.verify.comparison_model import ComparisonDoc, RowChange, as_comparison

VERDICT_COLORS = {
    "improved": COLORS["improved"], "regressed": COLORS["regressed"], "equivalent": COLORS["equivalent"],
    "inconclusive": COLORS["inconclusive"], "pass": COLORS["pass"], "fail": COLORS["fail"],
    "passed": COLORS["pass"], "failed": COLORS["fail"], "non_inferior": COLORS["pass"],
    "not_enough_rows": COLORS["inconclusive"],
}
MAX_ROWS_SHOWN = 25
EXCERPT = 280


# --------------------------------------------------------------------------------------------
# the adapter: comparison dict -> what the page needs


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def comparison_view(comparison: Any) -> dict[str, Any]:
    """What the page needs from a comparison (a `ComparisonDoc`, a `compare.Comparison` or the
    dict `flywheel compare --json` writes, validated by `ComparisonDoc.from_dict`). The keep
    decision comes from the keep rule, never from the page."""
    doc = as_comparison(comparison)
    decision = doc.decision
    scores = []
    for s in doc.scores:
        scores.append({
            "name": s.name, "role": s.role, "n": s.n, "baseline_mean": s.baseline_mean,
            "candidate_mean": s.candidate_mean, "effect": s.effect, "ci_low": s.ci.low, "ci_high": s.ci.high,
            "p": s.p, "p_adj": s.p_holm, "verdict": s.verdict,
            "required_n": s.power.required_n if s.power else None,
            "mcnemar_p": (s.mcnemar or {}).get("p"),
            "bootstrap": tuple((s.bootstrap or {}).get("ci") or (None, None)),
            "margin": s.margin, "notes": list(s.notes),
            "regressions": [_change_view(r) for r in s.regressions],
        })
    missing = [s.name for s in doc.scores if s.missing_exceeds_limit]
    return {
        "baseline": doc.baseline_name, "candidate": doc.candidate_name,
        "status": decision.status, "keep": decision.keep, "threshold": doc.regression_threshold,
        "multiplicity": {"method": doc.multiplicity_method, "applies_to": doc.multiplicity_applies_to},
        "stuck_scores": list(doc.stuck_scores),
        "target": doc.target, "verdict": doc.target_score.verdict, "reason": decision.reason,
        "alpha": doc.alpha, "min_effect": doc.min_effect, "margin": doc.margin, "scores": scores,
        "target_row": scores[0], "guards": scores[1:], "guards_passed": decision.guards_ok,
        "missing_warning": (f"more than 5% of rows are scored on one side only ({', '.join(missing)}); they are "
                            "excluded" if missing else ""),
        "slices": _slices_view(doc),
        "regressions": [_change_view(r) for r in doc.regressions],
        "notes": [n for n in doc.notes if n],
    }


def _slices_view(doc: ComparisonDoc) -> dict[str, Any]:
    if doc.slice_key is None:
        return {"key": "", "correction": "", "items": []}
    items = [{"key": doc.slice_key, "value": s.value, "score": s.score, "n": s.n, "effect": s.effect,
              "ci_low": s.ci.low, "ci_high": s.ci.high, "p": s.p, "q": s.q, "significant": s.significant}
             for s in doc.slices]
    return {"key": doc.slice_key, "correction": "benjamini_hochberg", "alpha": doc.alpha, "items": items}


def _change_view(r: RowChange) -> dict[str, Any]:
    return {"row_id": r.row_id, "score": r.score, "baseline": r.baseline, "candidate": r.candidate,
            "delta": -r.drop}


# --------------------------------------------------------------------------------------------
# plots


def forest_for_view(view: Mapping[str, Any]) -> Forest:
    items = []
    for s in view["scores"]:
        margin = s["margin"] if s["margin"] is not None else view["margin"]
        color = VERDICT_COLORS.get(s["verdict"], COLORS["inconclusive"])
        items.append(ForestItem(
            label=s["name"], estimate=s["effect"], low=s["ci_low"], high=s["ci_high"], color=color,
            sublabel=f"{s['role']} · n={s['n'] if s['n'] is not None else '?'} · {s['verdict'] or '?'}",
            note=f"{fmt(s['effect'], signed=True)} [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]",
            tooltip=f"{s['name']}: effect {fmt(s['effect'], signed=True)}, {100 * (1 - view['alpha']):.0f}% CI "
                    f"[{fmt(s['ci_low'])}, {fmt(s['ci_high'])}], p={fmt(s['p'], 4)}, margin {fmt(margin)}"))
    refs = [RefLine(0.0, "0", COLORS["axis"])]
    if view["min_effect"]:
        refs.append(RefLine(view["min_effect"], f"min effect δ={fmt(view['min_effect'])}", COLORS["delta"], "5,3"))
    else:
        refs[0].label = "0 = min effect δ"
    refs.append(RefLine(-view["margin"], f"−margin={fmt(-view['margin'])}", COLORS["margin"], "5,3"))
    ci_pct = f"{100 * (1 - view['alpha']):.0f}%"
    return Forest(items=items, refs=refs, title=f"Paired effect per score ({ci_pct} CI)",
                  x_label="candidate − baseline (per-row trial means, paired by dataset row id)")


def forest_svg_for(comparison: Mapping[str, Any]) -> str:
    """The forest plot of every score's paired effect, as a standalone SVG document."""
    return forest_svg(forest_for_view(comparison_view(comparison)))


def write_forest_svg(comparison: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the forest plot next to narrative.md (embed it as `![forest plot](forest.svg)`)."""
    return atomic_write_text(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + forest_svg_for(comparison) + "\n")


def _short_correction(name: str) -> str:
    key = (name or "bh").lower().replace("–", "-")
    return "BH" if key in ("bh", "fdr_bh", "benjamini_hochberg", "benjamini-hochberg") else name


def _slice_forest(view: Mapping[str, Any]) -> str:
    sl = view["slices"]
    items = []
    for it in sl["items"]:
        color = COLORS["improved"] if (it["effect"] or 0) > 0 else COLORS["regressed"]
        if not it["significant"]:
            color = COLORS["inconclusive"]
        items.append(ForestItem(
            label=f"{it['value']}", sublabel=f"{it['score']} · n={it['n'] if it['n'] is not None else '?'}",
            estimate=it["effect"], low=it["ci_low"], high=it["ci_high"], color=color, filled=it["significant"],
            note=f"{fmt(it['effect'], signed=True)} [{fmt(it['ci_low'])}, {fmt(it['ci_high'])}]"
                 + (" *" if it["significant"] else "")))
    return forest_svg(Forest(items=items, refs=[RefLine(0.0, "0", COLORS["axis"])],
                             title=f"Effect by {sl['key'] or 'slice'} (filled = significant after "
                                   f"{_short_correction(sl['correction'])})"))


# --------------------------------------------------------------------------------------------
# rows: per-row outputs and scores for the regression tables and the distributions


def _as_text(value: Any) -> str:
    """Trace/ledger content as text, redacted before it is escaped (escaping would hide
    `"api_key": "..."` shapes from the redaction the file write applies)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return redact(text)


def _excerpt_html(value: Any, limit: int = EXCERPT) -> str:
    text = _as_text(value)
    if not text:
        return '<span class="muted">(empty)</span>'
    if len(text) <= limit:
        return f'<pre class="cell">{esc(text)}</pre>'
    return (f'<pre class="cell">{esc(text[:limit])}…</pre><details><summary>full text ({len(text)} chars)'
            f'</summary><pre class="cell">{esc(text)}</pre></details>')


def _rows_by_id(rows: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if rows is None:
        return {}
    if isinstance(rows, Mapping):
        return {str(k): v for k, v in rows.items()}
    return {str(r["row_id"]): r for r in rows}


def _distributions(view: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[list, list]]:
    dist: dict[str, tuple[list[float], list[float]]] = {}
    sources: list[Mapping[str, Any]] = list(rows.values())
    names = [s["name"] for s in view["scores"]]
    for name in names:
        base, cand = [], []
        for r in sources:
            b = _num((r.get("baseline_scores") or {}).get(name))
            c = _num((r.get("candidate_scores") or {}).get(name))
            if b is not None and c is not None:  # the paired rows, as the statistics use them
                base.append(b)
                cand.append(c)
        if base:
            dist[name] = (base, cand)
    return dist


# --------------------------------------------------------------------------------------------
# the page

CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 34px 0 8px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.banner { border-radius: 8px; padding: 16px 20px; color: #fff; margin: 12px 0 8px; }
.banner .verdict { font-size: 26px; font-weight: 700; letter-spacing: .5px; text-transform: uppercase; }
.banner .figures { font-size: 16px; margin-top: 4px; }
.banner .reason, .banner .status { margin-top: 6px; opacity: .95; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff;
        font-weight: 600; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px; font-size: 13px; }
table.scores { font-size: 12px; } table.scores td, table.scores th { padding: 4px 6px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre.cell { white-space: pre-wrap; word-break: break-word; margin: 0; font: 12px/1.4 ui-monospace,
           SFMono-Regular, Menlo, Consolas, monospace; max-width: 330px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.muted { color: var(--muted); } .note { color: var(--muted); font-size: 13px; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
svg.plot { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
.sig { font-weight: 700; color: #1a7f37; } .neg { color: #c62828; } .pos { color: #1a7f37; }
nav a { margin-right: 12px; }
.scroll { overflow-x: auto; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'"


def _pill(text: str) -> str:
    color = VERDICT_COLORS.get(text, COLORS["inconclusive"])
    return f'<span class="pill" style="background:{color}">{esc(text or "?")}</span>'


STATUS_TEXT = {"passed": "keep: the target improved and every guard holds",
               "failed": "do not keep: the target or a guard regressed",
               "inconclusive": "not shown either way: curate more rows or try another change"}


def _banner(view: Mapping[str, Any]) -> str:
    t = view["target_row"] or {}
    verdict = view["verdict"]
    status = view["status"]
    color = VERDICT_COLORS.get(verdict, COLORS["inconclusive"])
    if status == "failed":
        color = COLORS["fail"]
    ci = f"{100 * (1 - view['alpha']):.0f}% CI"
    figures = (f"{esc(view['target'] or t.get('name', ''))}: effect <b>{fmt(t.get('effect'), signed=True)}</b> "
               f"({ci} [{fmt(t.get('ci_low'))}, {fmt(t.get('ci_high'))}]), p = {fmt(t.get('p'), 4)}, "
               f"n = {esc(t.get('n') if t.get('n') is not None else '?')} rows") if t else "no target score"
    guards = ""
    if view["guards"]:
        state = ("all guards hold" if view["guards_passed"] else "a guard regressed"
                 if any(g["verdict"] == "regressed" for g in view["guards"])
                 else "a guard is not shown to hold yet (not enough rows)")
        guards = (f'<div class="figures">{state}: ' + ", ".join(
            f"{esc(g['name'])} {esc(g['verdict'] or '?')} (lower bound {fmt(g['ci_low'])} vs −margin "
            f"{fmt(-(g['margin'] if g['margin'] is not None else view['margin']))})" for g in view["guards"])
            + "</div>")
    decision = ""
    if status:
        decision = (f'<div class="status">status: <b>{esc(status)}</b>'
                    f'{" · " + esc(STATUS_TEXT[status]) if status in STATUS_TEXT else ""}</div>')
    reason = f'<div class="reason">{esc(view["reason"])}</div>' if view["reason"] else ""
    return (f'<section class="banner" id="verdict" style="background:{color}">'
            f'<div class="verdict">{esc(verdict)}</div><div class="figures">{figures}</div>{guards}{decision}'
            f'{reason}</section>')


def _scores_table(view: Mapping[str, Any]) -> str:
    power = any(s["required_n"] is not None for s in view["scores"])
    head = ("<tr><th>score</th><th>role</th><th class=num>n</th><th class=num>baseline</th>"
            "<th class=num>candidate</th><th class=num>effect</th><th class=num>CI</th><th class=num>p</th>"
            "<th class=num>p (Holm)</th><th class=num>McNemar p</th><th class=num>bootstrap CI</th>"
            "<th>verdict</th>" + ("<th class=num>rows for 80% power</th>" if power else "") + "</tr>")
    body = []
    for s in view["scores"]:
        b_lo, b_hi = s["bootstrap"]
        body.append(
            f"<tr><td>{esc(s['name'])}</td><td>{esc(s['role'])}</td><td class=num>{esc(s['n'])}</td>"
            f"<td class=num>{fmt(s['baseline_mean'])}</td><td class=num>{fmt(s['candidate_mean'])}</td>"
            f"<td class=num>{fmt(s['effect'], signed=True)}</td>"
            f"<td class=num>[{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]</td><td class=num>{fmt(s['p'], 4)}</td>"
            f"<td class=num>{fmt(s['p_adj'], 4)}</td><td class=num>{fmt(s['mcnemar_p'], 4)}</td>"
            f"<td class=num>{'[' + fmt(b_lo) + ', ' + fmt(b_hi) + ']' if b_lo is not None else 'n/a'}</td>"
            f"<td>{_pill(s['verdict'])}</td>"
            + (f"<td class=num>{esc(s['required_n'] if s['required_n'] is not None else '')}</td>" if power else "")
            + "</tr>")
    notes = [f"<li><b>{esc(s['name'])}</b>: {esc(n)}</li>" for s in view["scores"] for n in s["notes"]]
    notes += [f"<li>{esc(n)}</li>" for n in view["notes"]]
    mult = view["multiplicity"]
    if isinstance(mult, Mapping) and mult.get("method"):
        notes.insert(0, f"<li>Multiplicity across scores: <b>{esc(mult['method'])}</b>"
                        f"{' (' + esc(mult['applies_to']) + ')' if mult.get('applies_to') else ''}</li>")
    if view["stuck_scores"]:
        notes.append(f"<li>Scores that never moved (every row the same 0 or 1 on both sides): "
                     f"{esc(', '.join(view['stuck_scores']))}</li>")
    return f"<div class=scroll><table class=scores>{head}{''.join(body)}</table></div>" + (
        f'<ul class="note">{"".join(notes)}</ul>' if notes else "")


def _slices_section(view: Mapping[str, Any]) -> str:
    sl = view["slices"]
    if not sl["items"]:
        return ""
    n_sig = sum(1 for it in sl["items"] if it["significant"])
    correction = _short_correction(sl["correction"])
    named = "Benjamini–Hochberg (BH, false discovery rate)" if correction == "BH" else correction
    rows = "".join(
        f"<tr><td>{esc(it['value'])}</td><td>{esc(it['score'])}</td><td class=num>{esc(it['n'])}</td>"
        f"<td class=num>{fmt(it['effect'], signed=True)}</td><td class=num>[{fmt(it['ci_low'])}, {fmt(it['ci_high'])}]"
        f"</td><td class=num>{fmt(it['p'], 4)}</td><td class=num>{fmt(it['q'], 4)}</td>"
        f"<td>{'<span class=sig>significant</span>' if it['significant'] else '<span class=muted>no</span>'}</td></tr>"
        for it in sl["items"])
    return (f'<h2 id="slices">Effects by {esc(sl["key"] or "slice")}</h2>'
            f'<p class="note">Multiplicity correction across the {len(sl["items"])} slice tests: <b>{esc(named)}</b>'
            f' at q &lt; {fmt(sl.get("alpha", view["alpha"]), 2)}; {n_sig} slice(s) significant (marked). '
            'Slice findings are for diagnosis; the verdict rests on the whole-dataset test above.</p>'
            f'{_slice_forest(view)}'
            '<table><tr><th>slice</th><th>score</th><th class=num>n</th><th class=num>effect</th>'
            '<th class=num>CI</th><th class=num>p</th><th class=num>q (BH)</th><th>significant</th></tr>'
            f'{rows}</table>')


def _improvements_from_rows(view: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]],
                            threshold: float) -> list[dict[str, Any]]:
    """Rows whose trial-mean score rose by more than the regression threshold (mirror of regressions)."""
    out = []
    for s in view["scores"]:
        for row_id, r in rows.items():
            b = _num((r.get("baseline_scores") or {}).get(s["name"]))
            c = _num((r.get("candidate_scores") or {}).get(s["name"]))
            if b is not None and c is not None and c - b > threshold + 1e-12:
                out.append({"row_id": row_id, "score": s["name"], "baseline": b, "candidate": c, "delta": c - b})
    return sorted(out, key=lambda r: (-r["delta"], r["score"], r["row_id"]))


def _changes_section(title: str, anchor: str, changes: list[dict[str, Any]],
                     rows: Mapping[str, Mapping[str, Any]], empty: str, threshold: float) -> str:
    """One table row per dataset row (its score changes listed together), largest change first."""
    if not changes:
        return f'<h2 id="{anchor}">{esc(title)}</h2><p class="note">{esc(empty)}</p>'
    grouped: dict[str, list[dict[str, Any]]] = {}
    for ch in sorted(changes, key=lambda c: (-abs(c["delta"] or 0), c["row_id"], c["score"])):
        grouped.setdefault(ch["row_id"], []).append(ch)
    shown = list(grouped.items())[:MAX_ROWS_SHOWN]
    more = (f'<p class="note">{len(grouped) - len(shown)} more rows not shown (see <code>flywheel compare '
            '--json</code>).</p>' if len(grouped) > len(shown) else "")
    body = []
    for row_id, row_changes in shown:
        r = rows.get(row_id, {})
        links = []
        for side in ("baseline", "candidate"):
            url = r.get(f"{side}_url")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                links.append(f'<a href="{esc(url)}" rel="noopener noreferrer">{side} trace</a>')
        change_html = "<br>".join(
            f"{esc(ch['score'])}: {fmt(ch['baseline'])} → {fmt(ch['candidate'])} "
            f"<span class={'neg' if (ch['delta'] or 0) < 0 else 'pos'}>({fmt(ch['delta'], signed=True)})</span>"
            for ch in row_changes)
        body.append(
            f"<tr><td class=mono title=\"{esc(row_id)}\">{esc(row_id[:12])}{'…' if len(row_id) > 12 else ''}"
            f"{'<br>' + ' · '.join(links) if links else ''}</td>"
            f"<td>{_excerpt_html(r.get('input'), 200)}</td>"
            f"<td>{_excerpt_html(r.get('baseline_output'))}</td><td>{_excerpt_html(r.get('candidate_output'))}</td>"
            f"<td class=num>{change_html}</td></tr>")
    n_rows = len(grouped)
    return (f'<h2 id="{anchor}">{esc(title)} ({n_rows} row{"s" if n_rows != 1 else ""})</h2>'
            f'<p class="note">Rows whose score (mean over trials) moved by more than {fmt(threshold, 2)}, '
            'largest change first; outputs are from the first trial.</p>'
            '<table><tr><th>row id</th><th>input</th><th>baseline output</th><th>candidate output</th>'
            f'<th class=num>score change</th></tr>{"".join(body)}</table>{more}')


def _dataset_section(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return ('<h2 id="dataset">Dataset balance</h2><p class="note">No dataset summary given '
                '(pass <code>--dataset-rows FILE</code>, or run against experiments that record their dataset).</p>')
    splits = summary.get("by_split_label") or {}
    labels = sorted({lab for per in splits.values() for lab in per})
    split_names = sorted(splits, key=lambda s: (s not in ("train", "validation"), s))
    head = "<tr><th>split</th>" + "".join(f"<th class=num>{esc(lab)}</th>" for lab in labels) + \
           "<th class=num>total</th><th class=num>share</th></tr>"
    total = sum(sum(per.values()) for per in splits.values()) or 1
    body = []
    for sp in split_names:
        per = splits[sp]
        n = sum(per.values())
        body.append(f"<tr><td>{esc(sp)}</td>" + "".join(
            f"<td class=num>{per.get(lab, 0)}</td>" for lab in labels)
            + f"<td class=num>{n}</td><td class=num>{100 * n / total:.1f}%</td></tr>")
    name = f" of <b>{esc(summary['name'])}</b>" if summary.get("name") else ""
    note = f'<p class="note">{esc(summary.get("label_source", ""))}</p>' if summary.get("label_source") else ""
    return (f'<h2 id="dataset">Dataset balance</h2><p class="note">{summary.get("rows", total)} rows{name}, '
            'by split and label.</p>'
            f'<div class=scroll><table>{head}{"".join(body)}</table></div>{note}')


LEDGER_COLUMNS = ("loop", "candidate", "change", "route", "verdict", "kept", "validation", "decision", "note")


def _ledger_section(ledger: Any) -> str:
    if ledger is None:
        return ('<h2 id="ledger">Loop ledger</h2><p class="note">No ledger given (pass <code>--ledger FILE</code>).'
                '</p>')
    entries: Any = ledger
    head_bits = []
    if isinstance(ledger, Mapping):
        entries = ledger.get("loops") or []
        summary = ledger.get("summary") if isinstance(ledger.get("summary"), Mapping) else {}
        for key, value in [*ledger.items(), *summary.items()]:
            if not isinstance(value, list | dict) and value is not None and key not in ("contract",):
                head_bits.append(f"<b>{esc(key)}</b>: {esc(value)}")
    entries = [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []
    columns = [c for c in LEDGER_COLUMNS if any(c in e for e in entries)]
    columns += [k for e in entries for k in e if k not in columns and k not in ("recorded_at", "conditions")]
    columns = list(dict.fromkeys(columns))
    table = ""
    if entries:
        table = ("<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{_ledger_cell(c, e.get(c))}</td>" for c in columns) + "</tr>" for e in entries)
            + "</table>")
    summary_html = f'<p class="note">{" · ".join(head_bits)}</p>' if head_bits else ""
    return f'<h2 id="ledger">Loop ledger</h2>{summary_html}{table or "<p class=note>(no entries)</p>"}'


def _ledger_cell(column: str, value: Any) -> str:
    if column == "validation" and isinstance(value, Mapping):
        return esc(f"{value.get('verdict') or value.get('status') or ''} effect {fmt(_num(value.get('effect')), signed=True)}"
                   f" CI [{fmt(_num((value.get('ci') or [None, None])[0]))}, "
                   f"{fmt(_num((value.get('ci') or [None, None])[-1]))}] n={value.get('n')}")
    if column == "decision" and isinstance(value, Mapping):
        bits = [str(value[k]) for k in ("action", "outcome") if value.get(k)]
        reason = f": {value['reason']}" if value.get("reason") else ""
        return esc(_short(" / ".join(bits) + reason, 200))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return esc(_short(value))


def _short(value: Any, limit: int = 160) -> str:
    text = _as_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_report(comparison: Mapping[str, Any], *, rows: Any = None, ledger: Any = None,
                  dataset_summary: Mapping[str, Any] | None = None, leaderboard: Mapping[str, Any] | None = None,
                  title: str | None = None, generated_at: str | None = None) -> str:
    """The whole HTML page as a string (deterministic for the same inputs).

    comparison: `compare.Comparison.to_dict()` (see `comparison_view` for the keys read).
    rows: per-row records, a list of {row_id, input, expected, baseline_output, candidate_output,
          baseline_scores: {score: trial mean}, candidate_scores: {...}, baseline_url, candidate_url}
          or a dict row_id -> record (`load_report_rows` builds it from a backend).
    ledger: the loop ledger document (route/ledger), rendered as a table of its entries.
    dataset_summary: `summarize_dataset(...)`. leaderboard: `leaderboard.Leaderboard.to_dict()`.
    """
    view = comparison_view(comparison)
    by_id = _rows_by_id(rows)
    parts = [
        *_page_head(view, title or f"{view['baseline']} → {view['candidate']}", generated_at=generated_at,
                    with_leaderboard=bool(leaderboard)),
        _banner(view),
        *([f'<div class="warn">{esc(view["missing_warning"])}</div>'] if view["missing_warning"] else []),
        _effects_section(view),
        _distributions_section(view, by_id),
        *_row_changes_sections(view, by_id),
        _dataset_section(dataset_summary),
    ]
    if leaderboard:
        from bt_flywheel.report.leaderboard import leaderboard_html

        parts.append(leaderboard_html(leaderboard))
    parts.append(_ledger_section(ledger))
    parts.append('<p class="note" style="margin-top:40px">Written by <code>flywheel report</code>. '
                 'Self-contained: no scripts, no network.</p></main></body></html>')
    return "\n".join(parts) + "\n"


def _page_head(view: Mapping[str, Any], title: str, *, generated_at: str | None, with_leaderboard: bool) -> list[str]:
    """The document head (CSS, the script-forbidding CSP), the title, the run's parameters and the nav."""
    return [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>bt-flywheel report: {esc(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>bt-flywheel report: {esc(title)}</h1>",
        f'<p class="sub">baseline <b>{esc(view["baseline"])}</b> vs candidate <b>{esc(view["candidate"])}</b>'
        f' · target <b>{esc(view["target"])}</b> · α = {fmt(view["alpha"], 2)} · min effect δ = '
        f'{fmt(view["min_effect"])} · margin = {fmt(view["margin"])}'
        + (f" · generated {esc(generated_at)}" if generated_at else "") + "</p>",
        '<nav><a href="#verdict">verdict</a><a href="#effects">effects</a><a href="#slices">slices</a>'
        '<a href="#distributions">distributions</a><a href="#regressions">regressions</a>'
        '<a href="#improvements">improvements</a><a href="#dataset">dataset</a>'
        + ('<a href="#leaderboard">leaderboard</a>' if with_leaderboard else "") + '<a href="#ledger">ledger</a></nav>',
    ]


def _effects_section(view: Mapping[str, Any]) -> str:
    """The forest plot and table of every score's paired effect, then the effects by slice."""
    return "\n".join([
        '<h2 id="effects">Paired effects</h2>',
        '<p class="note">Each row of the dataset is scored by both experiments; trials are averaged per row, '
        'then the candidate − baseline differences are tested (t-interval over rows). Guards must stay above '
        '−margin (non-inferiority); the target must clear the minimum effect. p (Holm) corrects the regression '
        'claims across scores.</p>',
        forest_svg(forest_for_view(view)), _scores_table(view),
        _slices_section(view) or '<h2 id="slices">Effects by slice</h2><p class="note">No slice key given '
                                 '(<code>--slice KEY</code>).</p>',
    ])


def _distributions_section(view: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> str:
    dist = _distributions(view, rows)
    if not dist:
        return '<h2 id="distributions">Score distributions</h2>\n<p class="note">No per-row scores available.</p>'
    return ('<h2 id="distributions">Score distributions</h2>\n'
            '<p class="note">Per-row scores (mean over trials) on the paired rows.</p><div class="plots">'
            + "".join(histogram_svg(name, b, c) for name, (b, c) in dist.items()) + "</div>")


def _row_changes_sections(view: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per-row regressions (from the comparison) and improvements (mirrored from the rows)."""
    threshold = view["threshold"] if view["threshold"] is not None else 0.25
    return [
        _changes_section("Per-row regressions", "regressions", view["regressions"], rows,
                         f"No row's score dropped by more than {fmt(threshold, 2)}.", threshold),
        _changes_section("Per-row improvements", "improvements", _improvements_from_rows(view, rows, threshold),
                         rows, f"No row's score rose by more than {fmt(threshold, 2)}.", threshold),
    ]


def write_report(comparison: Mapping[str, Any], out_path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Render and write atomically (secrets redacted); keywords as for `render_report`."""
    return atomic_write_text(out_path, render_report(comparison, **kwargs))
