"""The one keep rule (DESIGN.md §8): may the candidate be kept, and if not, why not?

Every reader of a comparison asks this question — `compare` (its `status` and `keep`), the
handoff (`verification.status`, `guards.passed`), the report's banner, the router and the
ledger — and every one of them calls :func:`keep_decision`; none recomputes it.

Verdicts:

- target: ``improved`` | ``regressed`` | ``equivalent`` | ``inconclusive``;
- guard (a score or a metric that must not get worse), three states:
  ``non_inferior`` (held: the CI's lower bound is above -margin), ``regressed`` (the CI lies
  wholly on the worse side of no change), ``not_enough_rows`` (neither is shown yet; the guard
  carries the ``required_n`` for the same bound).

The rule: keep <=> the target improved and every guard held. The status is ``passed`` when
kept; ``failed`` when the target or a guard regressed (discard the candidate); otherwise
``inconclusive``. A guard with not enough rows never fails a candidate: it asks for more rows
(``needs_rows``), which the router turns into "curate more rows".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bt_flywheel.core.errors import InputError

TARGET_VERDICTS = ("improved", "regressed", "equivalent", "inconclusive")
GUARD_HELD = "non_inferior"
GUARD_REGRESSED = "regressed"
GUARD_NOT_ENOUGH_ROWS = "not_enough_rows"
GUARD_VERDICTS = (GUARD_HELD, GUARD_REGRESSED, GUARD_NOT_ENOUGH_ROWS)
STATUSES = ("passed", "failed", "inconclusive")


@dataclass(frozen=True)
class KeepDecision:
    """``status`` (passed | failed | inconclusive), ``keep``, ``guards_ok`` (every guard held;
    None without guards), ``needs_rows`` (a guard is not settled for lack of rows and nothing
    failed: curate more rows), the guards by state, and a one-line ``reason``."""

    status: str
    keep: bool
    guards_ok: bool | None
    needs_rows: bool
    regressed_guards: tuple[str, ...]
    short_guards: tuple[str, ...]
    reason: str


def keep_decision(target_verdict: str, guards: Mapping[str, str]) -> KeepDecision:
    """Apply the keep rule to a target verdict and ``{guard name: guard verdict}``."""
    if target_verdict not in TARGET_VERDICTS:
        raise InputError(f"target verdict {target_verdict!r}: not one of {', '.join(TARGET_VERDICTS)}")
    for name, v in guards.items():
        if v not in GUARD_VERDICTS:
            raise InputError(f"guard {name!r} verdict {v!r}: not one of {', '.join(GUARD_VERDICTS)}")
    regressed = tuple(n for n, v in guards.items() if v == GUARD_REGRESSED)
    short = tuple(n for n, v in guards.items() if v == GUARD_NOT_ENOUGH_ROWS)
    guards_ok = all(v == GUARD_HELD for v in guards.values()) if guards else None
    keep = target_verdict == "improved" and guards_ok is not False
    if keep:
        status, reason = "passed", "the target improved and every guard held"
    elif target_verdict == "regressed" or regressed:
        status = "failed"
        parts = (["the target regressed"] if target_verdict == "regressed" else []) + [
            f"guard {n} regressed" for n in regressed]
        reason = "; ".join(parts) + ": discard the candidate"
    else:
        status = "inconclusive"
        parts = [] if target_verdict == "improved" else [f"the target is {target_verdict}"]
        if short:
            parts.append(f"guard {', '.join(short)} not shown to hold for lack of rows (curate more rows)")
        reason = "; ".join(parts)
    return KeepDecision(status, keep, guards_ok, bool(short) and status != "failed", regressed, short, reason)
