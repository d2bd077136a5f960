"""The narrative (bt-flywheel-narrative.md) rendered from a handoff dict.

Deterministic: the same JSON gives the same bytes (no clock, no locale, fixed number formats,
lists in the order the handoff gives them). Five sections, as DESIGN.md §9 asks: what we looked
at, what we found, what we changed, how we know, what next. `x-` extensions are not rendered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bt_flywheel.core.redact import redact

_OUTCOME_LINE = {
    "healthy": "Production looks healthy; no change was needed.",
    "improved": "The target improved and was verified; a change is ready for review.",
    "needs_work": "Something needs work; see the findings and next steps.",
    "blocked": "The run could not finish; see what blocked it.",
    "no_convergence": "Several loops did not produce a kept improvement; the run stopped.",
}


def _cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _num(value: Any, *, signed: bool = False, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if value is None:
        return "n/a"
    if value < 0.0001:
        return "<0.0001"
    return f"{value:.4f}"


def _ci(ci: Sequence[Any]) -> str:
    return f"[{_num(ci[0], signed=True)}, {_num(ci[1], signed=True)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _links(links: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"- [{link['title']}]({link['url']})" + (f" ({link['kind']})" if link.get("kind") else "")
            for link in links]


def _looked_at(doc: Mapping[str, Any]) -> list[str]:
    ver = doc["verification"]
    loops = doc["loops"]
    project = doc["project"]
    lines = [
        "## What we looked at",
        "",
        f"- Goal: {doc['goal']}",
        f"- Project: {project['name']}" + (f" (`{project['id']}`)" if project.get("id") else ""),
        f"- Mode: {doc['mode']['name']} ({doc['mode']['reason']})",
        f"- Run: `{doc['run_id']}`, {doc['started_at']} to {doc['finished_at']}",
        f"- Loops: {loops['count']} of at most {loops['max']}"
        + (f"; ledger `{loops['ledger']}`" if isinstance(loops["ledger"], str) else
           f"; {len(loops['ledger'])} ledger entr{'y' if len(loops['ledger']) == 1 else 'ies'}"),
    ]
    if ver.get("baseline") or ver.get("candidate"):
        lines.append(f"- Experiments: baseline `{ver.get('baseline') or 'n/a'}`, "
                     f"candidate `{ver.get('candidate') or 'n/a'}`")
    queries = []
    for finding in doc["findings"]:
        for query in finding["evidence"]["queries"]:
            if query not in queries:
                queries.append(query)
    if queries:
        lines += ["", "Queries behind the findings:"]
        for query in queries:
            lines += ["", "```sql", query.strip(), "```"]
    return lines


def _found(doc: Mapping[str, Any]) -> list[str]:
    lines = ["## What we found", ""]
    if not doc["findings"]:
        return [*lines, "No findings."]
    for finding in doc["findings"]:
        ev = finding["evidence"]
        lines += [
            f"### {finding['id']}: {finding['title']}",
            "",
            f"Plane: {finding['plane']}; severity: {finding['severity']}; route: {finding['route']}.",
            "",
            ev["summary"],
        ]
        if ev["trace_ids"]:
            lines += ["", "Traces: " + ", ".join(f"`{t}`" for t in ev["trace_ids"])]
        if ev["links"]:
            lines += ["", *_links(ev["links"])]
        lines.append("")
    return lines[:-1]


def _changed(doc: Mapping[str, Any]) -> list[str]:
    lines = ["## What we changed", ""]
    if not doc["changes"]:
        return [*lines, "Nothing was changed."]
    for i, change in enumerate(doc["changes"], 1):
        files = ", ".join(f"`{f}`" for f in change["files"]) or "(no files)"
        lines += [
            f"{i}. **{change['artifact']}**: {change['description']}",
            f"   - Files: {files}",
            f"   - Why it is safe: {change['why_safe']}",
        ]
    return lines


def _know(doc: Mapping[str, Any]) -> list[str]:
    ver = doc["verification"]
    lines = ["## How we know", ""]
    status = f"Verification: **{ver['status']}**"
    if ver.get("target"):
        status += f" (target `{ver['target']}`"
        status += f", {ver['split']} split)" if ver.get("split") else ")"
    lines += [status + ".", ""]
    plots = [a["path"] for a in doc["artifacts"] if a["kind"] == "forest_plot"]
    for path in plots:  # written next to the narrative, so the relative path resolves
        lines += [f"![forest plot: each score's paired effect with its 95% CI]({path})", ""]
    reports = [a["path"] for a in doc["artifacts"] if a["kind"] == "report"]
    for path in reports:
        lines += [f"The full report (forest plot, slices, distributions, per-row changes): [{path}]({path})", ""]
    if ver["scores"]:
        rows = []
        for s in ver["scores"]:
            rows.append([s["name"], s["role"], _num(s["effect"], signed=True), _ci(s["ci"]), _p(s["p"]),
                         s["n"], s["verdict"], s["method"]])
        lines += _table(["score", "role", "effect", "95% CI", "p", "n", "verdict", "method"], rows)
        lines.append("")
        inconclusive = [s for s in ver["scores"] if s["verdict"] == "inconclusive" and s.get("required_n")]
        for s in inconclusive:
            lines += [f"`{s['name']}` is inconclusive; about {s['required_n']} rows would give 80% power "
                      "at the observed variance.", ""]
    guards = ver["guards"]
    verdict = {True: "all non-inferior", False: "not all shown non-inferior", None: "none checked"}[guards["passed"]]
    lines.append(f"- Guards (non-inferiority margin {_num(guards['margin'])}): {verdict}.")
    mult = ver["multiplicity"]
    lines.append(f"- Multiplicity correction: {mult['method']}"
                 + (f" ({mult['applies_to']})" if mult.get("applies_to") else "") + ".")
    regressions = ver["regressions"]
    threshold = f" by more than {_num(ver['regression_threshold'])}" if "regression_threshold" in ver else ""
    lines.append(f"- Per-row regressions (score dropped{threshold}): {len(regressions)}.")
    if ver.get("note"):
        lines.append(f"- Note: {ver['note']}")
    if regressions:
        lines.append("")
        rows = [[f"`{r['row_id']}`", r.get("score", ver.get("target") or ""), _num(r["baseline"]),
                 _num(r["candidate"]), _num(r["drop"])] for r in regressions]
        lines += _table(["row", "score", "baseline", "candidate", "drop"], rows)
    return lines


def _next(doc: Mapping[str, Any]) -> list[str]:
    lines = ["## What next", ""]
    if not doc["next_steps"]:
        return [*lines, "No next steps."]
    for i, step in enumerate(doc["next_steps"], 1):
        lines += [
            f"{i}. **[{step['priority']}] {step['intent']}**: {step['title']}",
            f"   {step['body']}",
            f"   (destination: {step['suggested_destination']}; key `{step['idempotency_key'][:12]}`)",
        ]
    return lines


def render_narrative(doc: Mapping[str, Any]) -> str:
    """Markdown narrative for a valid handoff (validate first; this does not)."""
    confidence = doc["confidence"]
    header = [
        f"# bt-flywheel: {doc['outcome']} for {doc['project']['name']}",
        "",
        f"**Outcome:** {doc['outcome']} | **Severity:** {doc['severity']} | "
        f"**Blocking:** {'yes' if doc['blocking'] else 'no'} | **Confidence:** {confidence['level']}",
        "",
        _OUTCOME_LINE[doc["outcome"]],
        "",
        doc["summary"],
        "",
        f"Confidence is {confidence['level']}: {confidence['why']}",
    ]
    sections = [header, _looked_at(doc), _found(doc), _changed(doc), _know(doc), _next(doc)]
    if doc["links"]:
        sections.append(["## Links", "", *_links(doc["links"])])
    if doc["artifacts"]:
        rows = [[f"`{a['path']}`", a["kind"], f"`{a['sha256'][:16]}`"] for a in doc["artifacts"]]
        sections.append(["## Artifacts", "", *_table(["path", "kind", "sha256 (first 16)"], rows)])
    text = "\n\n".join("\n".join(section) for section in sections) + "\n"
    return redact(text)
