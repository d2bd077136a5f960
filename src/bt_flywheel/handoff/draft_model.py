"""The handoff draft (the input of `flywheel handoff build`, schemas/handoff-draft.schema.json) as
one typed model: only the judgement of a run (outcome, findings, changes, next steps, artifacts,
links, `x-` extensions, optionally goal and project).

``HandoffDraft.from_dict`` is the one reader: every schema violation plus any string that looks
like a secret is collected, and ``HandoffInvalid`` lists them all (its message names the source,
the first JSON path and how many more). ``load_draft`` reads YAML or JSON from a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bt_flywheel.core import schemas
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.redact import redact
from bt_flywheel.core.schemas import Violation, json_path, walk_strings

SCHEMA_NAME = "handoff-draft.schema.json"
_COMPUTED = {"idempotency_key": "computed by `handoff build` from intent, title and project; remove it",
             "sha256": "computed by `handoff build` from the file; remove it",
             "bytes": "computed by `handoff build` from the file; remove it",
             "suggested_destination": "the draft calls it `destination`"}


class HandoffInvalid(InputError):
    """The draft or the handoff built from it breaks the contract; `.violations` has every one."""

    def __init__(self, source: str, violations: list[Violation], what: str = "invalid handoff draft") -> None:
        count = len(violations)
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{source}: {what}: {violations[0]}{more}" if violations else f"{source}: {what}")
        self.source = source
        self.violations = violations


@dataclass(frozen=True)
class Link:
    title: str
    url: str
    kind: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Link:
        return cls(d["title"], d["url"], d.get("kind"))

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "url": self.url, **({"kind": self.kind} if self.kind is not None else {})}


@dataclass(frozen=True)
class Evidence:
    summary: str
    queries: tuple[str, ...] = ()
    trace_ids: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        return cls(d["summary"], tuple(d.get("queries") or ()), tuple(d.get("trace_ids") or ()),
                   tuple(Link.from_dict(x) for x in d.get("links") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "queries": list(self.queries), "trace_ids": list(self.trace_ids),
                "links": [x.to_dict() for x in self.links]}


@dataclass(frozen=True)
class Finding:
    title: str
    plane: str
    severity: str
    route: str
    evidence: Evidence
    id: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        return cls(d["title"], d["plane"], d["severity"], d["route"], Evidence.from_dict(d["evidence"]), d.get("id"))

    def to_dict(self) -> dict[str, Any]:
        out = {"title": self.title, "plane": self.plane, "severity": self.severity, "route": self.route,
               "evidence": self.evidence.to_dict()}
        return {"id": self.id, **out} if self.id is not None else out


@dataclass(frozen=True)
class Change:
    artifact: str
    files: tuple[str, ...]
    description: str
    why_safe: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        return cls(d["artifact"], tuple(d["files"]), d["description"], d["why_safe"])

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "files": list(self.files), "description": self.description,
                "why_safe": self.why_safe}


@dataclass(frozen=True)
class NextStep:
    intent: str
    title: str
    body: str
    priority: str = "p2"
    destination: str = "none"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NextStep:
        return cls(d["intent"], d["title"], d["body"], d.get("priority", "p2"), d.get("destination", "none"))

    def to_dict(self) -> dict[str, Any]:
        return {"intent": self.intent, "priority": self.priority, "title": self.title, "body": self.body,
                "destination": self.destination}


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact the draft lists: a path (relative to the draft's folder) and a kind; hashes are computed."""

    path: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind}


@dataclass(frozen=True)
class HandoffDraft:
    outcome: str
    severity: str
    confidence_level: str
    confidence_why: str
    summary: str
    goal: str | None = None
    project: str | None = None
    blocking: bool = False
    findings: tuple[Finding, ...] = ()
    changes: tuple[Change, ...] = ()
    next_steps: tuple[NextStep, ...] = ()
    artifacts: tuple[ArtifactRef, ...] = ()
    links: tuple[Link, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "draft") -> HandoffDraft:
        """Validate ``doc``; HandoffInvalid lists every violation (schema and secret-looking strings)."""
        found = validate_draft(doc)
        if found:
            raise HandoffInvalid(source, found)
        confidence = doc["confidence"]
        return cls(outcome=doc["outcome"], severity=doc["severity"], confidence_level=confidence["level"],
                   confidence_why=confidence["why"], summary=doc["summary"], goal=doc.get("goal"),
                   project=doc.get("project"), blocking=doc.get("blocking", False),
                   findings=tuple(Finding.from_dict(x) for x in doc.get("findings") or ()),
                   changes=tuple(Change.from_dict(x) for x in doc.get("changes") or ()),
                   next_steps=tuple(NextStep.from_dict(x) for x in doc.get("next_steps") or ()),
                   artifacts=tuple(ArtifactRef(x["path"], x["kind"]) for x in doc.get("artifacts") or ()),
                   links=tuple(Link.from_dict(x) for x in doc.get("links") or ()),
                   extensions={k: v for k, v in doc.items() if k.startswith("x-")})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.goal is not None:
            out["goal"] = self.goal
        if self.project is not None:
            out["project"] = self.project
        out.update(outcome=self.outcome, severity=self.severity, blocking=self.blocking,
                   confidence={"level": self.confidence_level, "why": self.confidence_why}, summary=self.summary,
                   findings=[x.to_dict() for x in self.findings], changes=[x.to_dict() for x in self.changes],
                   next_steps=[x.to_dict() for x in self.next_steps],
                   artifacts=[x.to_dict() for x in self.artifacts], links=[x.to_dict() for x in self.links])
        return {**out, **self.extensions}


def validate_draft(doc: Any) -> list[Violation]:
    """Every violation of the draft schema, plus any string that looks like a secret."""
    if not isinstance(doc, Mapping):
        return [Violation("$", f"expected a mapping of fields, got {type(doc).__name__}")]
    found = schemas.violations(doc, SCHEMA_NAME, hints=_COMPUTED)
    flagged = {v.path for v in found if v.message.startswith("looks like a secret")}
    for path, text in walk_strings(doc):
        where = json_path(path)
        if where not in flagged and redact(text) != text:
            found.append(Violation(where, "looks like a secret (a known key or a key-shaped value); remove it"))
    return sorted(set(found), key=lambda v: (v.path, v.message))


def as_draft(value: HandoffDraft | Mapping[str, Any], *, source: str = "draft") -> HandoffDraft:
    """A HandoffDraft from a HandoffDraft or its dict (validated)."""
    return value if isinstance(value, HandoffDraft) else HandoffDraft.from_dict(value, source=source)


def load_draft(path: str | os.PathLike[str]) -> HandoffDraft:
    """Read a YAML or JSON draft and validate it; HandoffInvalid lists every violation."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: draft file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the draft ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML or JSON"
        raise InputError(f"{p}{where}: cannot parse the draft ({problem})") from None
    return HandoffDraft.from_dict(doc, source=str(p))
