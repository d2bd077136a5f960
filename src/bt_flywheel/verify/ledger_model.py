"""The loop ledger document (`bt-flywheel-ledger/v1`, schemas/ledger.schema.json) as one typed model.

``LedgerDoc.from_dict`` validates a document against the schema (one line naming the file and the
JSON path of the first violation) and is the only reader of its keys; ``to_dict`` is what
:class:`bt_flywheel.verify.ledger.Ledger` writes. ``x-`` extensions are kept as they were read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bt_flywheel.core import schemas

CONTRACT = "bt-flywheel-ledger/v1"
SCHEMA_NAME = "ledger.schema.json"


def _extensions(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k.startswith("x-")}


@dataclass(frozen=True)
class Validation:
    """A loop's one validation look: the target score's result in its comparison."""

    baseline: str | None
    candidate: str | None
    target: str | None
    verdict: str | None
    split: str | None = None
    status: str | None = None
    effect: float | None = None
    ci: tuple[float | None, float | None] | None = None
    p: float | None = None
    n: int | None = None
    guards_ok: bool | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Validation:
        ci = d.get("ci")
        return cls(d["baseline"], d["candidate"], d["target"], d["verdict"], d.get("split"), d.get("status"),
                   d.get("effect"), None if ci is None else (ci[0], ci[1]), d.get("p"), d.get("n"), d.get("guards_ok"))

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "candidate": self.candidate, "target": self.target, "split": self.split,
                "status": self.status, "verdict": self.verdict, "effect": self.effect,
                "ci": None if self.ci is None else list(self.ci), "p": self.p, "n": self.n,
                "guards_ok": self.guards_ok}


@dataclass(frozen=True)
class LoopDecision:
    """The routing decision recorded with a loop (`route` is the routing-table condition)."""

    action: str
    stop: bool
    outcome: str | None
    route: str | None
    reason: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoopDecision:
        return cls(d["action"], d["stop"], d["outcome"], d["route"], d["reason"])

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "stop": self.stop, "outcome": self.outcome, "route": self.route,
                "reason": self.reason}


@dataclass(frozen=True)
class LoopEntry:
    loop: int
    recorded_at: str
    candidate: str | None
    route: str
    verdict: str | None
    kept: bool
    validation: Validation | None
    conditions: tuple[str, ...]
    decision: LoopDecision | None
    change: str | None = None
    note: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoopEntry:
        validation, decision = d["validation"], d["decision"]
        return cls(loop=d["loop"], recorded_at=d["recorded_at"], candidate=d["candidate"], route=d["route"],
                   verdict=d["verdict"], kept=d["kept"],
                   validation=Validation.from_dict(validation) if validation is not None else None,
                   conditions=tuple(d["conditions"]),
                   decision=LoopDecision.from_dict(decision) if decision is not None else None,
                   change=d.get("change"), note=d.get("note"), extensions=_extensions(d))

    def to_dict(self) -> dict[str, Any]:
        return {"loop": self.loop, "recorded_at": self.recorded_at, "candidate": self.candidate,
                "change": self.change, "route": self.route, "verdict": self.verdict, "kept": self.kept,
                "note": self.note, "validation": self.validation.to_dict() if self.validation is not None else None,
                "conditions": list(self.conditions),
                "decision": self.decision.to_dict() if self.decision is not None else None, **self.extensions}


@dataclass(frozen=True)
class Look:
    """One validation eval `flywheel eval --split validation` recorded, keyed by the candidate."""

    recorded_at: str
    candidate: str | None
    experiment: str
    split: str | None
    experiment_id: str | None = None
    files: tuple[str, ...] = ()
    rows: int | None = None
    trials: int | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Look:
        return cls(recorded_at=d["recorded_at"], candidate=d["candidate"], experiment=d["experiment"],
                   split=d["split"], experiment_id=d.get("experiment_id"), files=tuple(d.get("files") or ()),
                   rows=d.get("rows"), trials=d.get("trials"), extensions=_extensions(d))

    def to_dict(self) -> dict[str, Any]:
        return {"recorded_at": self.recorded_at, "candidate": self.candidate, "files": list(self.files),
                "experiment": self.experiment, "experiment_id": self.experiment_id, "split": self.split,
                "rows": self.rows, "trials": self.trials, **self.extensions}


@dataclass(frozen=True)
class Summary:
    loops: int
    validation_looks: int
    kept: int
    consecutive_without_improvement: int
    stopped: str | None
    eval_looks: int | None = None
    repeated_looks: Mapping[str, int] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Summary:
        return cls(d["loops"], d["validation_looks"], d["kept"], d["consecutive_without_improvement"], d["stopped"],
                   d.get("eval_looks"), d.get("repeated_looks"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loops": self.loops, "validation_looks": self.validation_looks, "kept": self.kept,
                               "consecutive_without_improvement": self.consecutive_without_improvement,
                               "stopped": self.stopped}
        if self.eval_looks is not None:
            out["eval_looks"] = self.eval_looks
        if self.repeated_looks is not None:
            out["repeated_looks"] = dict(self.repeated_looks)
        return out


@dataclass(frozen=True)
class LedgerDoc:
    """A validated ledger. ``looks`` is None until `flywheel eval` recorded a validation eval."""

    created_at: str
    updated_at: str
    max_loops: int
    loops: tuple[LoopEntry, ...]
    summary: Summary
    run_id: str | None = None
    target: str | None = None
    looks: tuple[Look, ...] | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "ledger") -> LedgerDoc:
        """Validate ``doc`` against the schema; InputError names the first violation."""
        schemas.check(doc, SCHEMA_NAME, source=source)
        looks = doc.get("looks")
        return cls(created_at=doc["created_at"], updated_at=doc["updated_at"], max_loops=doc["max_loops"],
                   loops=tuple(LoopEntry.from_dict(e) for e in doc["loops"]), summary=Summary.from_dict(doc["summary"]),
                   run_id=doc.get("run_id"), target=doc.get("target"),
                   looks=None if looks is None else tuple(Look.from_dict(x) for x in looks),
                   extensions=_extensions(doc))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"contract": CONTRACT, "run_id": self.run_id, "target": self.target,
                               "created_at": self.created_at, "updated_at": self.updated_at,
                               "max_loops": self.max_loops, "loops": [e.to_dict() for e in self.loops],
                               "summary": self.summary.to_dict()}
        if self.looks is not None:
            out["looks"] = [x.to_dict() for x in self.looks]
        return {**out, **self.extensions}
