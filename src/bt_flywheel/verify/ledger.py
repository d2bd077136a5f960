"""The loop ledger: one JSON file recording every loop and validation look (DESIGN.md §8).

A loop is one candidate: an edit made against train, one validation measurement (a
``flywheel compare`` of baseline vs candidate), and the routing decision. The ledger is how a run
proves it did not tune on validation, and it is the only place the loop limit is counted:
:meth:`Ledger.should_stop` returns ``"no_convergence"`` after ``max_loops`` (default 3)
consecutive loops without a kept improvement; a kept candidate resets the count.

The file (``schemas/ledger.schema.json``, contract ``bt-flywheel-ledger/v1``) is rewritten
atomically after every change and validated on load and save, so a killed run resumes from it::

    {"contract": "bt-flywheel-ledger/v1", "run_id": str | null, "target": str | null,
     "created_at": iso, "updated_at": iso, "max_loops": 3,
     "loops": [{"loop": 1, "recorded_at": iso, "candidate": str | null, "change": str | null,
                "route": "agent" | "dataset" | "measurement" | "instrumentation" | "none",
                "verdict": str | null, "kept": bool, "note": str | null,
                "validation": {"baseline", "candidate", "target", "split", "status", "verdict",
                               "effect", "ci", "p", "n", "guards_ok"} | null,
                "conditions": [str], "decision": {"action", "stop", "outcome", "route", "reason"}}],
     "summary": {"loops": int, "validation_looks": int, "kept": int,
                 "consecutive_without_improvement": int, "stopped": str | null}}

Each loop entry carries the handoff's ``loops.ledger[]`` keys (loop, kept, route, candidate,
verdict, note), so :meth:`Ledger.handoff_entries` can be embedded in the handoff as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bt_flywheel.core import schemas
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import atomic_write_json, read_json_file
from bt_flywheel.verify.comparison_model import ComparisonDoc, as_comparison
from bt_flywheel.verify.ledger_model import (
    CONTRACT,
    SCHEMA_NAME,
    LedgerDoc,
    Look,
    LoopDecision,
    LoopEntry,
    Summary,
    Validation,
)

__all__ = ["CONTRACT", "DEFAULT_MAX_LOOPS", "DEFAULT_PATH", "Ledger", "LedgerDoc", "schema_path", "validate_ledger"]

DEFAULT_MAX_LOOPS = 3
DEFAULT_PATH = ".flywheel/ledger.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def schema_path() -> Path:
    """`schemas/ledger.schema.json` (see bt_flywheel.core.schemas for where schemas are found)."""
    return schemas.schema_path(SCHEMA_NAME)


def validate_ledger(doc: Any, *, source: str = "ledger") -> None:
    """Raise InputError naming the first violation's JSON path."""
    LedgerDoc.from_dict(doc, source=source)


class Ledger:
    """The loop ledger file. Open with :meth:`open`; every append saves atomically."""

    def __init__(self, path: str | os.PathLike[str], doc: LedgerDoc) -> None:
        self.path = Path(path)
        self.doc = doc

    # ------------------------------------------------------------------ open / save

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_PATH, *, max_loops: int | None = None,
             target: str | None = None, run_id: str | None = None, create: bool = True) -> Ledger:
        """Load the ledger at ``path`` (validated), or start a new one if it does not exist.

        ``max_loops`` given for an existing ledger replaces the stored value (saved on the next
        append)."""
        p = Path(path)
        if max_loops is not None and (isinstance(max_loops, bool) or not isinstance(max_loops, int) or max_loops < 1):
            raise InputError(f"max_loops: must be an integer >= 1; got {max_loops!r}")
        if p.exists():
            ledger = cls(p, LedgerDoc.from_dict(read_json_file(p), source=str(p)))
            if max_loops is not None:
                ledger.doc = replace(ledger.doc, max_loops=max_loops)
            if target and not ledger.doc.target:
                ledger.doc = replace(ledger.doc, target=target)
            return ledger
        if not create:
            raise InputError(f"{p}: no ledger here", hint="`flywheel route decide --ledger FILE` creates one")
        now = _now()
        ledger = cls(p, LedgerDoc(created_at=now, updated_at=now, max_loops=max_loops or DEFAULT_MAX_LOOPS,
                                  loops=(), summary=Summary(0, 0, 0, 0, None), run_id=run_id, target=target))
        ledger._refresh_summary()
        return ledger

    @property
    def data(self) -> dict[str, Any]:
        """The document as written (a fresh dict; change the ledger through its methods)."""
        return self.doc.to_dict()

    def save(self) -> Path:
        self.doc = replace(self.doc, updated_at=_now())
        self._refresh_summary()
        data = self.doc.to_dict()
        validate_ledger(data, source=str(self.path))
        return atomic_write_json(self.path, data)

    def _refresh_summary(self) -> None:
        looks = self.doc.looks
        self.doc = replace(self.doc, summary=Summary(
            loops=self.loop_count, validation_looks=self.validation_looks,
            kept=sum(1 for e in self.loops if e.kept),
            consecutive_without_improvement=self.consecutive_without_improvement,
            stopped=self.should_stop() or self._last_stop(),
            eval_looks=len(looks) if looks else None, repeated_looks=self.repeated_looks() if looks else None))

    def _last_stop(self) -> str | None:
        last = self.loops[-1].decision if self.loops else None
        return last.outcome if last is not None and last.stop else None

    # ------------------------------------------------------------------ counts

    @property
    def loops(self) -> tuple[LoopEntry, ...]:
        return self.doc.loops

    @property
    def max_loops(self) -> int:
        return self.doc.max_loops

    @property
    def target(self) -> str | None:
        return self.doc.target

    @property
    def loop_count(self) -> int:
        return len(self.loops)

    @property
    def validation_looks(self) -> int:
        return sum(1 for e in self.loops if e.validation is not None)

    @property
    def consecutive_without_improvement(self) -> int:
        count = 0
        for entry in reversed(self.loops):
            if entry.kept:
                break
            count += 1
        return count

    def should_stop(self) -> str | None:
        """``"no_convergence"`` once ``max_loops`` consecutive loops kept nothing, else None."""
        return "no_convergence" if self.consecutive_without_improvement >= self.max_loops else None

    @property
    def looks(self) -> tuple[Look, ...]:
        """Validation evals recorded by `flywheel eval` itself (:meth:`record_look`)."""
        return self.doc.looks or ()

    def looks_for(self, candidate: str | None) -> int:
        """How many validation looks this candidate already had: validation evals recorded for
        it, else (for ledgers without them) the loops that compared it."""
        if candidate is None:
            return 0
        evals = sum(1 for look in self.looks if look.candidate == candidate)
        if evals:
            return evals
        return sum(1 for e in self.loops if e.validation is not None and e.candidate == candidate)

    def repeated_looks(self) -> dict[str, int]:
        """Candidates (the unchanged baseline aside) with more than one validation eval."""
        counts: dict[str, int] = {}
        for look in self.looks:
            if look.candidate and not look.candidate.startswith("base:"):
                counts[look.candidate] = counts.get(look.candidate, 0) + 1
        return {c: n for c, n in sorted(counts.items()) if n > 1}

    def candidate_of(self, experiment: str | None) -> str | None:
        """The candidate fingerprint a recorded look gives this experiment (name or id)."""
        for look in reversed(self.looks):
            if experiment and experiment in (look.experiment, look.experiment_id):
                return look.candidate
        return None

    def record_look(self, *, candidate: str | None, experiment: str, experiment_id: str | None = None,
                    split: str | None = "validation", files: Iterable[str] = (), rows: int | None = None,
                    trials: int | None = None) -> tuple[dict[str, Any], int]:
        """Record one validation eval (once per experiment); saves. Returns the entry and how many
        looks this candidate had before it."""
        for look in self.looks:
            if experiment_id and look.experiment_id == experiment_id:
                return look.to_dict(), self.looks_for(candidate) - 1
        before = sum(1 for look in self.looks if candidate is not None and look.candidate == candidate)
        entry = Look(recorded_at=_now(), candidate=candidate, files=tuple(files), experiment=experiment,
                     experiment_id=experiment_id, split=split, rows=rows, trials=trials)
        self.doc = replace(self.doc, looks=(*self.looks, entry))
        self.save()
        return entry.to_dict(), before

    def find_loop(self, candidate: str | None, comparison: ComparisonDoc | None) -> LoopEntry | None:
        """The last loop, if it recorded this same candidate and comparison (a rerun after a crash)."""
        if not self.loops:
            return None
        last = self.loops[-1]
        if last.candidate != candidate:
            return None
        val = last.validation
        if comparison is None:
            return last if val is None else None
        if val is None:
            return None
        same = (val.baseline == comparison.baseline and val.candidate == comparison.candidate
                and val.target == comparison.target)
        return last if same else None

    # ------------------------------------------------------------------ append

    def append_loop(self, *, candidate: str | None, kept: bool, change: str | None = None,
                    change_artifact: str | None = "agent", comparison: Any = None,
                    conditions: Iterable[str] = (), decision: Any = None, note: str | None = None) -> dict[str, Any]:
        """Record one loop (and its validation look when ``comparison``, a ComparisonDoc or the
        `compare --json` dict, is given); saves. Returns the entry as written."""
        if comparison is not None:
            comparison = as_comparison(comparison)
        validation = _validation(comparison) if comparison is not None else None
        entry = LoopEntry(loop=self.loop_count + 1, recorded_at=_now(), candidate=candidate, change=change,
                          route=change_artifact or "none", verdict=validation.verdict if validation else None,
                          kept=bool(kept), note=note, validation=validation, conditions=tuple(conditions),
                          decision=_decision(decision))
        self.doc = replace(self.doc, loops=(*self.loops, entry))
        if comparison is not None and not self.doc.target:
            self.doc = replace(self.doc, target=comparison.target)
        self.save()
        return entry.to_dict()

    def handoff_entries(self) -> list[dict[str, Any]]:
        """The loops in the handoff's ``loops.ledger[]`` shape, each with its candidate's count of
        validation looks (`looks`) when the ledger recorded evals."""
        out = []
        for e in self.loops:
            entry: dict[str, Any] = {"loop": e.loop, "kept": e.kept, "route": e.route, "candidate": e.candidate,
                                     "verdict": e.verdict,
                                     "note": e.note or (e.decision.reason if e.decision is not None else None)}
            if self.looks and e.candidate:
                entry["looks"] = self.looks_for(e.candidate)
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        self._refresh_summary()
        return self.doc.to_dict()


def _validation(comparison: ComparisonDoc) -> Validation:
    """The validation look as the ledger records it; status and guards_ok from the keep rule."""
    target = comparison.target_score
    decision = comparison.decision
    return Validation(baseline=comparison.baseline, candidate=comparison.candidate, target=comparison.target,
                      split=comparison.split, status=decision.status, verdict=target.verdict, effect=target.effect,
                      ci=None if target.ci is None else (target.ci.low, target.ci.high), p=target.p, n=target.n, guards_ok=decision.guards_ok)


def _decision(decision: Any) -> LoopDecision | None:
    if decision is None:
        return None
    route = getattr(decision, "route", None)
    return LoopDecision(decision.action, decision.stop, decision.outcome,
                        route.condition if route is not None else None, decision.reason)
