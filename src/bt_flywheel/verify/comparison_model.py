"""The comparison document as one typed model: what `flywheel compare --json` writes and every
reader reads (the handoff, the report, the router, the ledger, the demo).

``ComparisonDoc.from_dict(doc)`` validates ``doc`` against ``schemas/comparison.schema.json``
(one line per violation, with its JSON path, via :mod:`bt_flywheel.core.schemas`) and checks
that its ``status``/``keep``/``guards_ok`` are what the keep rule gives for its verdicts. There
is one spelling of every field: the one `compare` writes. Sub-objects that readers only pass on
(bootstrap, McNemar, TOST, the reported statistics) stay plain mappings, already validated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bt_flywheel.core import schemas
from bt_flywheel.core.errors import InputError
from bt_flywheel.verify.keep import KeepDecision, keep_decision

CONTRACT = "bt-flywheel-comparison/v1"
SCHEMA_NAME = "comparison.schema.json"


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None

    @classmethod
    def of(cls, pair: Any) -> Interval | None:
        return None if pair is None else cls(pair[0], pair[1])

    def as_list(self) -> list[float | None]:
        return [self.low, self.high]


@dataclass(frozen=True)
class Power:
    """Rows for 80% power for the CI bound the verdict waits on (``side`` bound vs ``bound``)."""

    effect: float | None
    sd: float | None
    n: int
    power_at_n: float | None
    required_n: int | None
    target_power: float
    note: str
    bound: float | None
    side: str | None


@dataclass(frozen=True)
class RowChange:
    score: str
    row_id: str
    baseline: float
    candidate: float
    drop: float


@dataclass(frozen=True)
class ScoreResult:
    """One entry of ``scores[]`` (see ``verify.verdict.ScoreComparison.to_dict``)."""

    name: str
    role: str
    kind: str
    n: int
    baseline_mean: float | None
    candidate_mean: float | None
    effect: float | None
    ci: Interval
    confidence_level: float
    se: float | None
    sd: float | None
    p: float | None
    p_holm: float | None
    method: str
    verdict: str
    binary: bool
    min_effect: float
    margin: float
    missing: int
    missing_exceeds_limit: bool
    bootstrap: Mapping[str, Any] | None
    mcnemar: Mapping[str, Any] | None
    tost: Mapping[str, Any] | None
    noninferiority: Mapping[str, Any] | None
    power: Power | None
    metric: Mapping[str, Any] | None
    reported: Mapping[str, Any] | None
    regressions: tuple[RowChange, ...]
    notes: tuple[str, ...]

    @property
    def threshold(self) -> float:
        """The minimum effect (target) or the non-inferiority margin (guard)."""
        return self.margin if self.role == "guard" else self.min_effect

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoreResult:
        power = d["power"]
        missing = d["missing"]
        return cls(
            name=d["name"], role=d["role"], kind=d["kind"], n=d["n"], baseline_mean=d["baseline_mean"],
            candidate_mean=d["candidate_mean"], effect=d["effect"], ci=Interval.of(d["ci"]),
            confidence_level=d["confidence_level"], se=d["se"], sd=d["sd"], p=d["p"], p_holm=d["p_holm"], method=d["method"],
            verdict=d["verdict"], binary=d["binary"], min_effect=d["min_effect"], margin=d["margin"],
            missing=missing["baseline_only"] + missing["candidate_only"],
            missing_exceeds_limit=missing["exceeds_limit"], bootstrap=d["bootstrap"],
            mcnemar=d["mcnemar"], tost=d["tost"], noninferiority=d["noninferiority"],
            power=Power(**power) if power is not None else None, metric=d.get("metric"), reported=d.get("reported"),
            regressions=tuple(RowChange(d["name"], r["id"], r["baseline"], r["candidate"], r["drop"])
                              for r in d["regressions"]),
            notes=tuple(d["notes"]))


@dataclass(frozen=True)
class SliceResult:
    value: str
    score: str
    role: str
    n: int
    effect: float | None
    ci: Interval
    p: float | None
    q: float | None
    significant: bool
    direction: str | None
    reported: Mapping[str, Any] | None


@dataclass(frozen=True)
class ComparisonDoc:
    """A validated comparison document; ``raw`` is the dict it was read from (for writing it on)."""

    baseline: str
    candidate: str
    baseline_name: str
    candidate_name: str
    candidate_fingerprint: str | None
    split: str | None
    target: str
    alpha: float
    min_effect: float
    margin: float
    regression_threshold: float
    scores: tuple[ScoreResult, ...]
    regressions: tuple[RowChange, ...]
    multiplicity_method: str
    multiplicity_applies_to: str
    slice_key: str | None
    slices: tuple[SliceResult, ...]
    pooled: tuple[Mapping[str, Any], ...]
    stuck_scores: tuple[str, ...]
    notes: tuple[str, ...]
    raw: Mapping[str, Any]

    @property
    def target_score(self) -> ScoreResult:
        return self.scores[0]

    @property
    def guard_scores(self) -> tuple[ScoreResult, ...]:
        return self.scores[1:]

    @property
    def decision(self) -> KeepDecision:
        """The keep rule on this document's verdicts (the only place keep is decided)."""
        return keep_decision(self.target_score.verdict, {g.name: g.verdict for g in self.guard_scores})

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "comparison") -> ComparisonDoc:
        """Validate ``doc`` (schema + keep rule); InputError names the first violation."""
        problems = schemas.schema_errors(doc, SCHEMA_NAME)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InputError(f"{source}: not a comparison: {problems[0]}{more}",
                             hint="pass the JSON written by `flywheel compare --json` / --out")
        scores = tuple(ScoreResult.from_dict(s) for s in doc["scores"])
        if scores[0].role != "target" or scores[0].name != doc["target"]:
            raise InputError(f"{source}: $.scores[0]: must be the target score {doc['target']!r}")
        if any(s.role != "guard" for s in scores[1:]):
            raise InputError(f"{source}: $.scores: only the first score is the target; the rest are guards")
        slices = doc["slices"] or {}
        out = cls(
            baseline=doc["baseline"], candidate=doc["candidate"],
            baseline_name=doc["experiments"]["baseline"]["name"], candidate_name=doc["experiments"]["candidate"]["name"],
            candidate_fingerprint=doc["experiments"]["candidate"].get("candidate"),
            split=doc["experiments"]["candidate"]["split"], target=doc["target"], alpha=doc["alpha"],
            min_effect=doc["min_effect"], margin=doc["margin"], regression_threshold=doc["regression_threshold"],
            scores=scores,
            regressions=tuple(RowChange(r["score"], r["row_id"], r["baseline"], r["candidate"], r["drop"])
                              for r in doc["regressions"]),
            multiplicity_method=doc["multiplicity"]["method"], multiplicity_applies_to=doc["multiplicity"]["applies_to"],
            slice_key=slices.get("key"),
            slices=tuple(SliceResult(s["value"], s["score"], s["role"], s["n"], s["effect"], Interval.of(s["ci"]),
                                     s["p"], s["q"], s["significant"], s["direction"], s.get("reported"))
                         for s in slices.get("results", [])),
            pooled=tuple(doc.get("pooled") or ()), stuck_scores=tuple(doc["health"]["stuck_scores"]),
            notes=tuple(doc["notes"]), raw=doc)
        decision = out.decision
        stored = (doc["status"], doc["keep"], doc["guards_ok"], doc["target_verdict"])
        if stored != (decision.status, decision.keep, decision.guards_ok, scores[0].verdict):
            raise InputError(f"{source}: $.status: {doc['status']!r} (keep {doc['keep']}) is not what the keep rule "
                             f"gives for these verdicts ({decision.status}, keep {decision.keep})")
        return out


def load_comparison(path: str | os.PathLike[str]) -> ComparisonDoc:
    """Read and validate a comparison file (exit 2 with the file and JSON path when it is not one)."""
    from bt_flywheel.core.fileio import read_json_file

    return ComparisonDoc.from_dict(read_json_file(path), source=str(path))


def as_comparison(value: Any, *, source: str = "comparison") -> ComparisonDoc:
    """A ComparisonDoc from a ComparisonDoc, a ``compare.Comparison`` or its dict."""
    if isinstance(value, ComparisonDoc):
        return value
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return ComparisonDoc.from_dict(value, source=source)
