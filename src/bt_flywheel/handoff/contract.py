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

import copy
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
from bt_flywheel.verify.comparison_model import ScoreResult, as_comparison

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
VERDICTS = ("improved", "regressed", "equivalent", "inconclusive", "non_inferior", "not_enough_rows")
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


@dataclass(frozen=True)
class HandoffDoc:
    """A valid handoff, the one way a reader gets one: the fields decisions are made on, typed, and
    `raw`, the whole document as written (the narrative renders it; `to_dict` gives it back)."""

    outcome: str
    severity: str
    blocking: bool
    confidence: str
    verification_status: str
    project: str
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "handoff") -> HandoffDoc:
        """Validate (schema and the checks above); InputError naming the first violation."""
        valid = check_handoff(doc, source=source)
        return cls(outcome=valid["outcome"], severity=valid["severity"], blocking=valid["blocking"],
                   confidence=valid["confidence"]["level"], verification_status=valid["verification"]["status"],
                   project=valid["project"]["name"], raw=valid)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.raw))


def load_handoff(path: str | os.PathLike[str]) -> HandoffDoc:
    """Read and validate a handoff file; InputError (exit 2) when missing, unparseable or invalid."""
    from bt_flywheel.core.fileio import read_json_file

    return HandoffDoc.from_dict(read_json_file(path), source=str(path))


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


def score_entry(score: ScoreResult) -> dict[str, Any]:
    """One `verification.scores[]` item from a comparison's score (the model's one spelling)."""
    entry: dict[str, Any] = {
        "name": score.name, "role": score.role, "effect": score.effect, "ci": score.ci.as_list(), "p": score.p,
        "n": score.n, "verdict": score.verdict, "method": score.method,
    }
    for key, value in (("baseline_mean", score.baseline_mean), ("candidate_mean", score.candidate_mean),
                       ("threshold", score.threshold)):
        if value is not None:
            entry[key] = value
    entry["confidence_level"] = score.confidence_level
    if score.power is not None and score.power.required_n is not None:
        entry["required_n"] = score.power.required_n
    entry["missing"] = score.missing
    pick = {"p_holm": score.p_holm,
            "bootstrap_ci": (score.bootstrap or {}).get("ci"),
            "mcnemar_p": (score.mcnemar or {}).get("p"),
            "tost_p": (score.tost or {}).get("p"),
            "noninferiority_lower_bound": (score.noninferiority or {}).get("lower_bound")}
    secondary = {k: v for k, v in pick.items() if v is not None}
    secondary.update(_reported_secondary(score))
    if secondary:
        entry["secondary"] = _jsonable(secondary)
    return entry


def _reported_secondary(score: ScoreResult) -> dict[str, Any]:
    """The figures reported beside the verdict (never voting), and a metric guard's ratio."""
    out: dict[str, Any] = {}
    if score.mcnemar and score.mcnemar.get("odds_ratio_ci") is not None:
        out["mcnemar_odds_ratio"] = score.mcnemar.get("odds_ratio")
        out["mcnemar_odds_ratio_ci"] = score.mcnemar["odds_ratio_ci"]
    if score.power is not None:
        out["power_at_n"] = score.power.power_at_n
    if score.metric is not None:
        out.update({"metric": score.metric["metric"], "ratio": score.metric["ratio"],
                    "ratio_ci": score.metric["ratio_ci"], "max_increase": score.metric["max_increase"]})
    if score.reported:
        out["reported"] = dict(score.reported)
    return out


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
                         baseline: str | None = None, candidate: str | None = None,
                         split: str | None = None, note: str | None = None) -> HandoffBuilder:
        """Fill `verification` from a comparison: a `ComparisonDoc`, a `compare.Comparison` or
        the dict `flywheel compare --json` prints (validated by `ComparisonDoc.from_dict`).

        The status, `guards.passed` and every number come from the comparison and its keep rule;
        keyword arguments name the experiments or split differently, or set a status without a
        comparison (`not_run` by default).
        """
        verification: dict[str, Any] = dict(self.verification)
        if comparison is not None:
            doc = as_comparison(comparison)
            decision = doc.decision
            verification = {
                "status": decision.status,
                "baseline": doc.baseline, "candidate": doc.candidate, "target": doc.target,
                "scores": [score_entry(s) for s in doc.scores],
                "guards": {"passed": decision.guards_ok, "margin": doc.margin},
                "regressions": [{"row_id": r.row_id, "baseline": r.baseline, "candidate": r.candidate, "drop": r.drop,
                                 "score": r.score} for r in doc.regressions],
                "multiplicity": {"method": doc.multiplicity_method, "applies_to": doc.multiplicity_applies_to},
            }
            if doc.split in ("train", "validation", "all"):
                verification["split"] = doc.split
            verification["regression_threshold"] = doc.regression_threshold
            notes = [*doc.notes, *(n for s in doc.scores for n in s.notes)]
            if decision.status != "passed" and decision.reason:
                notes.append(f"not kept: {decision.reason}")
            if notes:
                verification["note"] = "; ".join(dict.fromkeys(notes))
        if status is not None:
            verification["status"] = _choice("verification status", status, VERIFICATION_STATUSES)
        for key, value in (("baseline", baseline), ("candidate", candidate)):
            if value is not None:
                verification[key] = str(value)
        if split:
            verification["split"] = split
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
