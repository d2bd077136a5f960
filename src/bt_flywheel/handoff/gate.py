"""The gate: a handoff in, pass or fail by policy out (DESIGN.md §9, §10).

Default policy: fail when the outcome is one of needs_work, blocked, no_convergence; fail
whenever `blocking` is true (whatever --fail-on says); no minimum confidence (low passes).
`--min-confidence medium` also fails a handoff whose confidence is below medium.
An invalid or missing handoff is exit 2, decided before any policy (see commands/gate.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bt_flywheel.core.errors import UsageError
from bt_flywheel.handoff.contract import CONFIDENCE_LEVELS, OUTCOMES, HandoffDoc

DEFAULT_FAIL_ON = ("needs_work", "blocked", "no_convergence")
DEFAULT_MIN_CONFIDENCE = "low"


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def parse_fail_on(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """`needs_work,blocked` -> ('needs_work', 'blocked'); '' means fail on no outcome."""
    if text is None:
        return DEFAULT_FAIL_ON
    items = text.split(",") if isinstance(text, str) else list(text)
    outcomes = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    unknown = [o for o in outcomes if o not in OUTCOMES]
    if unknown:
        raise UsageError(f"--fail-on: unknown outcome {unknown[0]!r}; choose from {', '.join(OUTCOMES)}")
    return outcomes


def evaluate_gate(handoff: HandoffDoc, *, fail_on: Iterable[str] | str | None = None,
                  min_confidence: str | None = None) -> GateResult:
    """Apply the policy to a valid handoff. Checks in order: blocking, outcome, confidence."""
    outcomes = parse_fail_on(fail_on)
    floor = min_confidence or DEFAULT_MIN_CONFIDENCE
    if floor not in CONFIDENCE_LEVELS:
        raise UsageError(f"--min-confidence: {floor!r} is not one of {', '.join(CONFIDENCE_LEVELS)}")
    outcome, level = handoff.outcome, handoff.confidence
    facts = f"outcome {outcome}, severity {handoff.severity}, confidence {level}"
    if handoff.blocking:
        return GateResult(False, f"fail: handoff is blocking ({facts})")
    if outcome in outcomes:
        return GateResult(False, f"fail: outcome {outcome} is in --fail-on {','.join(outcomes)} ({facts})")
    if CONFIDENCE_LEVELS.index(level) < CONFIDENCE_LEVELS.index(floor):
        return GateResult(False, f"fail: confidence {level} is below --min-confidence {floor} ({facts})")
    return GateResult(True, f"pass: {facts}; not blocking")
