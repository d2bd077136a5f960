"""Checks that a handoff is honest beyond its schema: the draft's numbers agree with the
comparison, and no candidate was looked at on validation twice.

`number_warnings(draft, comparison)` reads the draft's free text (summary and confidence.why)
for the figures a reader trusts: confidence intervals in brackets (`[0.21, 0.75]`), signed
effects (`+0.48`, `-3%`), `n=16` and `p=0.002`. Each must match some score of the comparison
at the precision it was written (`+0.5` matches 0.479; `+0.6` does not). Unsigned numbers are
left alone: they are counts, means and margins as often as effects.

`look_warnings(handoff, ledger)` flags a candidate with two or more validation looks, from the
handoff's `loops.ledger[]` (each entry's `looks`, or one candidate in two entries) and, when
given, the ledger's own `summary.repeated_looks`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import read_json_file
from bt_flywheel.handoff.draft_model import HandoffDraft, as_draft
from bt_flywheel.verify.comparison_model import ComparisonDoc
from bt_flywheel.verify.ledger_model import LedgerDoc

_NUM = r"[+\-−]?\d+(?:\.\d+)?%?"
_CI = re.compile(r"\[\s*(" + _NUM + r")\s*(?:,|to|\.\.|–)\s*(" + _NUM + r")\s*\]")
_SIGNED = re.compile(r"(?<![\w.±\[])([+\-−]\d+(?:\.\d+)?)(%|\s*pp\b|\s*points?\b)?")
_N = re.compile(r"\bn\s*=\s*(\d+)\b")
_P = re.compile(r"\bp\s*=\s*(\d*\.\d+(?:e-?\d+)?)", re.IGNORECASE)


def _value(text: str) -> tuple[float, float]:
    """(value, tolerance) of a number as written: half a unit of its last digit; % and pp are /100."""
    raw = text.replace("−", "-").strip()
    percent = raw.endswith("%")
    raw = raw.rstrip("%")
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    value, tolerance = float(raw), 0.5 * 10 ** -decimals + 1e-9
    if percent:
        value, tolerance = value / 100, tolerance / 100
    return value, tolerance


def _close(written: tuple[float, float], actual: Any) -> bool:
    return isinstance(actual, int | float) and math.isfinite(actual) and abs(written[0] - actual) <= written[1]


def _texts(draft: HandoffDraft) -> list[tuple[str, str]]:
    return [("summary", draft.summary), ("confidence.why", draft.confidence_why)]


def number_warnings(draft: HandoffDraft | Mapping[str, Any], comparison: ComparisonDoc | None) -> list[str]:
    """One line per figure in the draft's summary/confidence text that no score in the comparison has."""
    if comparison is None:
        return []
    draft = as_draft(draft)
    scores = comparison.scores
    effects = [s.effect for s in scores]
    cis = [(s.ci.low, s.ci.high) for s in scores]
    ns = {s.n for s in scores}
    ps = [v for s in scores for v in (s.p, s.p_holm)]
    found: list[str] = []
    for where, text in _texts(draft):
        spans = []
        for match in _CI.finditer(text):
            spans.append(match.span())
            lo, hi = _value(match.group(1)), _value(match.group(2))
            if not any(_close(lo, a) and _close(hi, b) for a, b in cis):
                shown = ", ".join(f"[{_fmt(a)}, {_fmt(b)}]" for a, b in cis)
                found.append(f"draft {where}: CI {match.group(0)} matches no score in the comparison ({shown})")
        for match in _SIGNED.finditer(text):
            if any(start <= match.start() < end for start, end in spans):
                continue
            unit = (match.group(2) or "").strip()
            written = _value(match.group(1) + ("%" if unit else ""))
            if not any(_close(written, e) for e in effects):
                shown = ", ".join(f"{s.name} {_fmt(s.effect, signed=True)}" for s in scores)
                found.append(f"draft {where}: effect {match.group(0).strip()} matches no score's effect ({shown})")
        for match in _N.finditer(text):
            if int(match.group(1)) not in ns:
                found.append(f"draft {where}: {match.group(0)} but the comparison paired "
                             f"n={', '.join(str(n) for n in sorted(x for x in ns if x is not None))}")
        for match in _P.finditer(text):
            if not any(_close(_value(match.group(1)), p) for p in ps):
                found.append(f"draft {where}: {match.group(0)} matches no score's p value")
    return found


def _fmt(value: Any, *, signed: bool = False) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def look_warnings(handoff: Mapping[str, Any], ledger: LedgerDoc | None = None) -> list[str]:
    """One line per candidate looked at on validation more than once."""
    repeated: dict[str, int] = {}
    entries = ((handoff.get("loops") or {}).get("ledger"))
    if isinstance(entries, list):
        seen: dict[str, int] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or not entry.get("candidate") or str(entry["candidate"]).startswith("base:"):
                continue
            candidate = str(entry["candidate"])
            if isinstance(entry.get("looks"), int) and entry["looks"] > 1:
                repeated[candidate] = max(repeated.get(candidate, 0), entry["looks"])
            if entry.get("verdict") is not None:
                seen[candidate] = seen.get(candidate, 0) + 1
        for candidate, count in seen.items():
            if count > 1:
                repeated[candidate] = max(repeated.get(candidate, 0), count)
    recorded = ledger.summary.repeated_looks if ledger is not None else None
    for candidate, count in (recorded or {}).items():
        repeated[candidate] = max(repeated.get(candidate, 0), int(count))
    return [f"candidate {c} had {n} validation looks; a result after repeated looks at validation is "
            "optimistic (tune on train, look at validation once)" for c, n in sorted(repeated.items())]


def handoff_look_warnings(handoff: Mapping[str, Any], handoff_path: str | os.PathLike[str]) -> list[str]:
    """look_warnings for a handoff file, reading its `ledger` artifact when it sits next to it."""
    ledger = None
    base = Path(handoff_path).resolve().parent
    for artifact in handoff.get("artifacts") or []:
        if isinstance(artifact, Mapping) and artifact.get("kind") == "ledger":
            path = base / str(artifact.get("path"))
            try:  # a missing or invalid ledger only means no warnings from it: validate checks the handoff
                ledger = LedgerDoc.from_dict(read_json_file(path), source=str(path)) if path.is_file() else None
            except (OSError, InputError):
                ledger = None
            break
    return look_warnings(handoff, ledger)
