"""The exit handoff (DESIGN.md §9): build, validate, write.

Contract `bt-flywheel-handoff/v1`, schema `schemas/handoff.schema.json`. Callers never
hand-assemble the dict: `HandoffBuilder` fills every field, computes idempotency keys and
artifact hashes, redacts secrets, and `build()` validates. `validate_handoff()` returns every
violation with its JSON path; `write_handoff()` writes bt-flywheel-summary.json and
bt-flywheel-narrative.md atomically. Rendering lives in `handoff_render`, the gate in `gate`.

Checks beyond the JSON Schema (done here, reported like schema violations):
- `next_steps[i].idempotency_key` must equal `idempotency_key(intent, title, project.name)`;
- `finished_at` is not before `started_at`;
- finding ids and idempotency keys are unique;
- no string anywhere looks like a secret: `redact()` would change it (sk-... keys, bearer
  tokens, `api_key=...` pairs, or a secret value known from the environment or `.env`).
  The schema also rejects sk-/bearer shapes in free-text fields with `not` patterns so that
  validators in other languages catch the common case.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bt_flywheel.core import schemas
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.redact import redact, redact_obj
from bt_flywheel.core.schemas import Violation, is_rfc3339, json_path, walk_strings

CONTRACT_VERSION = "bt-flywheel-handoff/v1"
SUMMARY_FILENAME = "bt-flywheel-summary.json"
NARRATIVE_FILENAME = "bt-flywheel-narrative.md"

OUTCOMES = ("healthy", "improved", "needs_work", "blocked", "no_convergence")
SEVERITIES = ("none", "low", "medium", "high", "critical")
CONFIDENCE_LEVELS = ("low", "medium", "high")
PLANES = ("reliability", "quality", "coverage", "behavior", "performance", "cost", "change", "eval_alignment")
ROUTES = ("measurement", "dataset", "instrumentation", "agent", "none")
CHANGE_ARTIFACTS = ("measurement", "dataset", "instrumentation", "agent")
VERIFICATION_STATUSES = ("passed", "failed", "inconclusive", "not_run")
VERDICTS = ("improved", "regressed", "equivalent", "inconclusive", "non_inferior", "inferior")
INTENTS = ("no_action", "review_change", "investigate", "label_data", "rerun", "notify", "block_release", "rollback")
PRIORITIES = ("p0", "p1", "p2", "p3")
DESTINATIONS = ("local_summary", "code_review", "issue_tracker", "chat", "release_gate", "scheduler",
                "app_ui", "external_system", "none")
MULTIPLICITY_METHODS = ("none", "holm", "benjamini_hochberg", "bonferroni")

_SCHEMA_NAME = "handoff.schema.json"


# ---------------------------------------------------------------------------- schema + checks

def schema_path() -> Path:
    """`schemas/handoff.schema.json` (see bt_flywheel.core.schemas for where schemas are found)."""
    return schemas.schema_path(_SCHEMA_NAME)


def load_schema() -> dict[str, Any]:
    return schemas.load_schema(_SCHEMA_NAME)


def idempotency_key(intent: str, title: str, project: str) -> str:
    """sha256 hex of `intent + "\\n" + title + "\\n" + project` (project = project.name)."""
    return hashlib.sha256(f"{intent}\n{title}\n{project}".encode()).hexdigest()


def _semantic_violations(doc: Mapping[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    project = doc.get("project")
    project_name = project.get("name") if isinstance(project, dict) else None
    steps = doc.get("next_steps")
    seen_keys: dict[str, int] = {}
    if isinstance(steps, list) and isinstance(project_name, str):
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            intent, title, key = step.get("intent"), step.get("title"), step.get("idempotency_key")
            if not (isinstance(intent, str) and isinstance(title, str) and isinstance(key, str)):
                continue
            if key != idempotency_key(intent, title, project_name):
                out.append(Violation(json_path(["next_steps", i, "idempotency_key"]),
                                     "does not match sha256(intent + '\\n' + title + '\\n' + project.name)"))
            elif key in seen_keys:
                out.append(Violation(json_path(["next_steps", i, "idempotency_key"]),
                                     f"duplicate of next_steps[{seen_keys[key]}] (same intent and title)"))
            seen_keys.setdefault(key, i)
    findings = doc.get("findings")
    if isinstance(findings, list):
        seen_ids: dict[str, int] = {}
        for i, finding in enumerate(findings):
            fid = finding.get("id") if isinstance(finding, dict) else None
            if isinstance(fid, str):
                if fid in seen_ids:
                    out.append(Violation(json_path(["findings", i, "id"]),
                                         f"duplicate finding id {fid!r} (also findings[{seen_ids[fid]}])"))
                seen_ids.setdefault(fid, i)
    started, finished = doc.get("started_at"), doc.get("finished_at")
    if is_rfc3339(started) and is_rfc3339(finished):
        if parse_time(finished) < parse_time(started):
            out.append(Violation("$.finished_at", f"{finished} is before started_at {started}"))
    for path, text in walk_strings(doc):
        if redact(text) != text:
            out.append(Violation(json_path(path), "looks like a secret (a known key or a key-shaped value); "
                                                  "remove it"))
    return out


def validate_handoff(doc: Any) -> list[Violation]:
    """Every violation of the contract, schema and semantic, sorted by path then message."""
    if not isinstance(doc, dict):
        return [Violation("$", f"expected a JSON object, got {type(doc).__name__}")]
    found = [*schemas.violations(doc, _SCHEMA_NAME), *_semantic_violations(doc)]
    unique = sorted(set(found), key=lambda v: (v.path, v.message))
    # a secret flagged by both the schema `not` and the walk is one problem
    secret_paths = {v.path for v in unique if v.message.startswith("looks like a secret (sk-")}
    return [v for v in unique if not (v.path in secret_paths and v.message.startswith("looks like a secret (a known"))]


def check_handoff(doc: Any, *, source: str = "handoff") -> dict[str, Any]:
    """Return `doc` if valid; otherwise raise InputError naming the first violation and the count."""
    violations = validate_handoff(doc)
    if violations:
        more = f" (and {len(violations) - 1} more; run `flywheel handoff validate`)" if len(violations) > 1 else ""
        raise InputError(f"{source}: invalid handoff: {violations[0]}{more}")
    return doc


def load_handoff(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a handoff file; InputError (exit 2) when missing, unparseable or invalid."""
    from bt_flywheel.core.fileio import read_json_file

    return check_handoff(read_json_file(path), source=str(path))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))


def format_time(value: datetime | str | None = None) -> str:
    """UTC RFC 3339 with a Z, seconds precision (`now` when None)."""
    if isinstance(value, str):
        if not is_rfc3339(value):
            raise InputError(f"timestamp {value!r} is not RFC 3339 (e.g. 2025-06-01T12:00:00Z)")
        return value
    moment = value or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------- builder

def _clean_number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _choice(field: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InputError(f"{field}: {value!r} is not one of {list(allowed)}")
    return value


def _first(mapping: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in mapping and mapping[name] is not None:
            return mapping[name]
    return default


def score_entry(raw: Mapping[str, Any], *, role: str | None = None) -> dict[str, Any]:
    """One `verification.scores[]` item from a comparison's per-score dict.

    Reads `verdict.ScoreComparison.to_dict()` directly (effect, ci, p, n, verdict, method, role,
    baseline_mean, candidate_mean, confidence_level, min_effect/margin, missing, power,
    bootstrap, mcnemar, tost, noninferiority, p_holm) and tolerates simpler shapes: `mean_diff`
    for effect, `ci_low`/`ci_high`, `p_value`, a `threshold`, a `secondary` dict. NaN becomes null.
    """
    if hasattr(raw, "to_dict"):
        raw = raw.to_dict()
    ci = _first(raw, "ci", "confidence_interval")
    if ci is None:
        ci = [_first(raw, "ci_low", "ci_lower", "lo"), _first(raw, "ci_high", "ci_upper", "hi")]
    if isinstance(ci, Mapping):
        ci = [_first(ci, "low", "lower", "lo"), _first(ci, "high", "upper", "hi")]
    name = _first(raw, "name", "score")
    role = _choice("score role", _first(raw, "role", default=role or "target"), ("target", "guard"))
    entry: dict[str, Any] = {
        "name": str(name),
        "role": role,
        "effect": _clean_number(_first(raw, "effect", "mean_diff", "diff", "delta")),
        "ci": [_clean_number(ci[0]), _clean_number(ci[1])],
        "p": _clean_number(_first(raw, "p", "p_value", "pvalue")),
        "n": int(_first(raw, "n", "n_rows", default=0)),
        "verdict": _choice(f"score {name!r} verdict", raw.get("verdict"), VERDICTS),
        "method": str(_first(raw, "method", default="paired t-test on per-row trial means")),
    }
    threshold = _first(raw, "threshold", *(("margin",) if role == "guard" else ("min_effect",)))
    for key, value in (("baseline_mean", raw.get("baseline_mean")), ("candidate_mean", raw.get("candidate_mean")),
                       ("threshold", threshold)):
        if value is not None:
            entry[key] = _clean_number(value)
    if raw.get("confidence_level") is not None:
        entry["confidence_level"] = float(raw["confidence_level"])
    power = raw.get("power") if isinstance(raw.get("power"), Mapping) else {}
    required = _first(raw, "required_n", default=power.get("required_n"))
    if required is not None:
        entry["required_n"] = int(required)
    missing = _first(raw, "missing", "n_missing")
    if isinstance(missing, Mapping):
        missing = int(missing.get("baseline_only") or 0) + int(missing.get("candidate_only") or 0)
    if missing is not None:
        entry["missing"] = int(missing)
    secondary = dict(raw["secondary"]) if isinstance(raw.get("secondary"), Mapping) else {}
    pick = {"p_holm": raw.get("p_holm"),
            "bootstrap_ci": (raw.get("bootstrap") or {}).get("ci"),
            "mcnemar_p": (raw.get("mcnemar") or {}).get("p"),
            "tost_p": (raw.get("tost") or {}).get("p"),
            "noninferiority_lower_bound": (raw.get("noninferiority") or {}).get("lower_bound")}
    secondary.update({k: v for k, v in pick.items() if v is not None})
    if secondary:
        entry["secondary"] = _jsonable(secondary)
    return entry


def _jsonable(value: Any) -> Any:
    """numpy scalars, tuples and NaN into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    if isinstance(value, float):
        return _clean_number(value)
    return value


def verification_status(scores: Sequence[Mapping[str, Any]]) -> str:
    """The status `flywheel compare` gives (verdict.decision_status); not_run without scores."""
    if not scores:
        return "not_run"
    from bt_flywheel.verify.verdict import decision_status

    target = next((s.get("verdict") for s in scores if s.get("role") == "target"), None)
    return decision_status(target, [s.get("verdict") for s in scores if s.get("role") == "guard"])


class HandoffBuilder:
    """Assemble a valid handoff step by step; `build()` validates and raises InputError if not.

    Example:
        b = HandoffBuilder(goal="improve refusals", project="support-bot", mode=mode)
        b.add_finding("Misses refusals on quoted instructions", plane="behavior", severity="high",
                      route="agent", evidence="38 of 212 ...", queries=["SELECT ..."])
        b.add_change("agent", ["examples/support-bot/config.yaml"], description="...", why_safe="...")
        b.set_verification(comparison)          # the `flywheel compare --json` dict
        b.set_outcome("improved", severity="low", confidence="high", why="CI excludes 0 ...",
                      summary="...")
        b.add_next_step("review_change", "Review the refusal prompt change", "...", priority="p1",
                        destination="code_review")
        handoff = b.build()
    """

    def __init__(self, *, goal: str, project: str, mode: Any, mode_reason: str | None = None,
                 project_id: str | None = None, run_id: str | None = None,
                 started_at: datetime | str | None = None) -> None:
        name = getattr(mode, "name", mode)
        reason = mode_reason if mode_reason is not None else getattr(mode, "reason", None)
        self.started_at = format_time(started_at)
        self.project = {"name": project, **({"id": project_id} if project_id else {})}
        self.run_id = run_id or self._default_run_id(goal, project)
        self.mode = {"name": name, "reason": reason or "not given"}
        self.goal = goal
        self.outcome: dict[str, Any] | None = None
        self.findings: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.verification: dict[str, Any] = {
            "status": "not_run", "baseline": None, "candidate": None, "target": None, "scores": [],
            "guards": {"passed": None, "margin": 0.02}, "regressions": [], "multiplicity": {"method": "none"},
        }
        self.loops: dict[str, Any] = {"count": 0, "max": 3, "ledger": []}
        self.links: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.next_steps: list[dict[str, Any]] = []
        self.extensions: dict[str, Any] = {}

    def _default_run_id(self, goal: str, project: str) -> str:
        stamp = re.sub(r"[^0-9TZ]", "", self.started_at)
        digest = hashlib.sha256(f"{project}|{goal}|{self.started_at}".encode()).hexdigest()[:8]
        return f"fw-{stamp}-{digest}"

    def set_outcome(self, outcome: str, *, severity: str, confidence: str, why: str, summary: str,
                    blocking: bool = False) -> HandoffBuilder:
        self.outcome = {
            "outcome": _choice("outcome", outcome, OUTCOMES),
            "severity": _choice("severity", severity, SEVERITIES),
            "blocking": bool(blocking),
            "confidence": {"level": _choice("confidence", confidence, CONFIDENCE_LEVELS), "why": why},
            "summary": summary,
        }
        return self

    def add_finding(self, title: str, *, plane: str, severity: str, route: str, evidence: str,
                    queries: Sequence[str] = (), links: Sequence[Mapping[str, str]] = (),
                    trace_ids: Sequence[str] = (), id: str | None = None) -> str:
        """Add a finding; returns its id (F1, F2, ... unless given)."""
        fid = id or f"F{len(self.findings) + 1}"
        self.findings.append({
            "id": fid,
            "title": title,
            "evidence": {"summary": evidence, "queries": list(queries),
                         "links": [self._link(**dict(link)) for link in links], "trace_ids": list(trace_ids)},
            "plane": _choice("finding plane", plane, PLANES),
            "severity": _choice("finding severity", severity, SEVERITIES),
            "route": _choice("finding route", route, ROUTES),
        })
        return fid

    def add_change(self, artifact: str, files: Sequence[str | os.PathLike[str]], *, description: str,
                   why_safe: str) -> HandoffBuilder:
        self.changes.append({
            "artifact": _choice("change artifact", artifact, CHANGE_ARTIFACTS),
            "files": [str(f) for f in files],
            "description": description,
            "why_safe": why_safe,
        })
        return self

    def set_verification(self, comparison: Any = None, *, status: str | None = None,
                         baseline: str | None = None, candidate: str | None = None, target: str | None = None,
                         split: str | None = None, note: str | None = None) -> HandoffBuilder:
        """Fill `verification` from a comparison: `compare.Comparison`, its `to_dict()` (what
        `flywheel compare --json` prints), or any dict of the same shape.

        Reads `baseline`, `candidate`, `target`, `scores` (list, or a {name: result} mapping;
        the target is the score named `target` or with role target, the rest are guards),
        `regressions` ({row_id, baseline, candidate, drop[, score]}), `guard_margin`/`margin`,
        `multiplicity` ("holm" or {"method", "applies_to"}), `split`. `status` defaults to
        `verification_status(scores)`. Keyword arguments override the dict.
        """
        if hasattr(comparison, "to_dict"):  # compare.Comparison
            comparison = comparison.to_dict()
        comp = dict(comparison or {})
        target_name = target or _first(comp, "target", "target_score")
        raw_scores = comp.get("scores") or []
        if isinstance(raw_scores, Mapping):
            raw_scores = [{"name": k, **dict(v)} for k, v in raw_scores.items()]
        raw_scores = [r.to_dict() if hasattr(r, "to_dict") else r for r in raw_scores]
        scores = []
        for raw in raw_scores:
            role = raw.get("role") or ("target" if _first(raw, "name", "score") == target_name else "guard")
            scores.append(score_entry(raw, role=role))
        if target_name is None:
            target_name = next((s["name"] for s in scores if s["role"] == "target"), None)
        guards = [s for s in scores if s["role"] == "guard"]
        margin = _first(comp, "guard_margin", "margin")
        if margin is None and isinstance(comp.get("guards"), Mapping):
            margin = comp["guards"].get("margin")
        multiplicity = comp.get("multiplicity")
        if multiplicity is None:
            holm_used = len(scores) > 1 and any(r.get("p_holm") is not None for r in raw_scores)
            multiplicity = ({"method": "holm", "applies_to": f"regression claims across {len(scores)} scores"}
                            if holm_used else "none")
        if isinstance(multiplicity, str):
            multiplicity = {"method": multiplicity}
        raw_regressions = comp.get("regressions")
        if raw_regressions is None:  # per-score regressions (ScoreComparison.to_dict) tagged with the score
            raw_regressions = [{**r, "score": raw.get("name")} for raw in raw_scores
                               for r in raw.get("regressions") or []]
        regressions = []
        for row in raw_regressions:
            entry = {"row_id": str(_first(row, "row_id", "id")), "baseline": float(row["baseline"]),
                     "candidate": float(row["candidate"]),
                     "drop": float(row.get("drop", float(row["baseline"]) - float(row["candidate"])))}
            if row.get("score"):
                entry["score"] = str(row["score"])
            regressions.append(entry)
        verification: dict[str, Any] = {
            "status": _choice("verification status", status or comp.get("status") or verification_status(scores),
                              VERIFICATION_STATUSES),
            "baseline": _str_or_none(baseline or _first(comp, "baseline", "baseline_experiment")),
            "candidate": _str_or_none(candidate or _first(comp, "candidate", "candidate_experiment")),
            "target": _str_or_none(target_name),
            "scores": scores,
            "guards": {
                "passed": (all(s["verdict"] in ("non_inferior", "equivalent", "improved") for s in guards)
                           if guards else None),
                "margin": float(margin if margin is not None else 0.02),
            },
            "regressions": regressions,
            "multiplicity": {k: v for k, v in dict(multiplicity).items() if k in ("method", "applies_to")},
        }
        chosen_split = split or comp.get("split")
        if chosen_split:
            verification["split"] = chosen_split
        if comp.get("regression_threshold") is not None:
            verification["regression_threshold"] = float(comp["regression_threshold"])
        notes = [str(n) for n in comp.get("notes") or []]
        notes += [str(n) for raw in raw_scores for n in raw.get("notes") or []]
        note = note or comp.get("note") or ("; ".join(dict.fromkeys(notes)) if notes else None)
        if note:
            verification["note"] = note
        self.verification = _jsonable(verification)
        return self

    def set_loops(self, count: int, *, max_loops: int = 3,
                  ledger: str | os.PathLike[str] | Sequence[Mapping[str, Any]] = ()) -> HandoffBuilder:
        """Loop count, the cap, and the ledger (its file path, or its entries inline)."""
        self.loops = {"count": int(count), "max": int(max_loops),
                      "ledger": str(ledger) if isinstance(ledger, str | os.PathLike) else
                      [_jsonable(dict(e)) for e in ledger]}
        return self

    @staticmethod
    def _link(title: str, url: str, kind: str | None = None) -> dict[str, str]:
        link = {"title": title, "url": url}
        if kind:
            link["kind"] = kind
        return link

    def add_link(self, title: str, url: str, *, kind: str | None = None) -> HandoffBuilder:
        self.links.append(self._link(title, url, kind))
        return self

    def add_artifact(self, path: str | os.PathLike[str], kind: str, *,
                     base_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Record a file the run produced, with its sha256 and size; path relative to base_dir if given."""
        from bt_flywheel.core.fileio import sha256_file

        file = Path(path)
        if not file.is_file():
            raise InputError(f"{file}: artifact file not found")
        shown = file
        if base_dir is not None:
            try:
                shown = file.resolve().relative_to(Path(base_dir).resolve())
            except ValueError:
                shown = file
        entry = {"path": shown.as_posix(), "kind": kind, "sha256": sha256_file(file),
                 "bytes": file.stat().st_size}
        self.artifacts.append(entry)
        return entry

    def add_next_step(self, intent: str, title: str, body: str, *, priority: str = "p2",
                      destination: str = "none") -> str:
        """Add a next step; returns its idempotency key (sha256 of intent, title, project name)."""
        intent = _choice("next step intent", intent, INTENTS)
        title = redact(" ".join(title.split()))
        self.next_steps.append({
            "intent": intent,
            "priority": _choice("next step priority", priority, PRIORITIES),
            "title": title,
            "body": body,
            "suggested_destination": _choice("next step destination", destination, DESTINATIONS),
            "idempotency_key": idempotency_key(intent, title, self.project["name"]),
        })
        return self.next_steps[-1]["idempotency_key"]

    def extend(self, key: str, value: Any) -> HandoffBuilder:
        """An `x-` extension field at the top level."""
        if not key.startswith("x-"):
            raise InputError(f"extension key {key!r} must start with 'x-'")
        self.extensions[key] = _jsonable(value)
        return self

    def build(self, *, finished_at: datetime | str | None = None) -> dict[str, Any]:
        """The redacted, validated handoff dict; InputError names the first violation."""
        return check_handoff(self.assemble(finished_at=finished_at), source="handoff")

    def assemble(self, *, finished_at: datetime | str | None = None) -> dict[str, Any]:
        """The redacted handoff dict, not validated (`validate_handoff` lists every violation)."""
        if self.outcome is None:
            raise InputError("handoff: set_outcome() was not called (outcome, severity, confidence, summary)")
        doc: dict[str, Any] = {
            "contract_version": CONTRACT_VERSION,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": format_time(finished_at),
            "mode": self.mode,
            "goal": self.goal,
            "project": self.project,
            "outcome": self.outcome["outcome"],
            "severity": self.outcome["severity"],
            "blocking": self.outcome["blocking"],
            "confidence": self.outcome["confidence"],
            "summary": self.outcome["summary"],
            "findings": self.findings,
            "changes": self.changes,
            "verification": self.verification,
            "loops": self.loops,
            "links": self.links,
            "artifacts": self.artifacts,
            "next_steps": self.next_steps,
            **self.extensions,
        }
        doc = redact_obj(_jsonable(doc))
        for step in doc["next_steps"]:  # redaction may have changed a title: keys follow the final text
            step["idempotency_key"] = idempotency_key(step["intent"], step["title"], doc["project"]["name"])
        return doc


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class HandoffPaths:
    summary: Path
    narrative: Path


def write_handoff(handoff: Mapping[str, Any] | HandoffBuilder,
                  out_dir: str | os.PathLike[str]) -> HandoffPaths:
    """Validate, then atomically write bt-flywheel-summary.json and bt-flywheel-narrative.md."""
    from bt_flywheel.core.fileio import atomic_write_json, atomic_write_text
    from bt_flywheel.handoff.narrative import render_narrative

    doc = handoff.build() if isinstance(handoff, HandoffBuilder) else redact_obj(dict(handoff))
    check_handoff(doc, source="handoff")
    out = Path(out_dir)
    summary = atomic_write_json(out / SUMMARY_FILENAME, doc)
    narrative = atomic_write_text(out / NARRATIVE_FILENAME, render_narrative(doc))
    return HandoffPaths(summary=summary, narrative=narrative)
