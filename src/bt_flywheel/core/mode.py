"""Interactive vs autonomous (DESIGN.md §6).

Autonomous when any of: `--mode autonomous`, the goal begins `mode: autonomous`,
FLYWHEEL_AUTONOMOUS truthy, CI truthy. FLYWHEEL_AUTONOMOUS=false overrides CI=true.
A non-TTY stdin is deliberately NOT a signal: an agent's tool shell has no TTY.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bt_flywheel.core.errors import UsageError

TRUTHY = frozenset({"1", "true", "yes", "on"})
FALSY = frozenset({"0", "false", "no", "off"})
_GOAL_PREFIX = re.compile(r"^\s*mode\s*:\s*autonomous\b[\s,;:.-]*", re.IGNORECASE)


@dataclass(frozen=True)
class Mode:
    name: str  # "interactive" | "autonomous"
    reason: str

    @property
    def autonomous(self) -> bool:
        return self.name == "autonomous"


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text in TRUTHY:
        return True
    if text in FALSY or text == "":
        return False
    return None


def split_goal(goal: str | None) -> tuple[str | None, bool]:
    """Strip a leading `mode: autonomous` from the goal text; say whether it was there."""
    if goal is None:
        return None, False
    match = _GOAL_PREFIX.match(goal)
    if not match:
        return goal, False
    return goal[match.end():].strip() or None, True


def resolve_mode(
    *, flag: str | None = None, goal: str | None = None, environ: Mapping[str, str] | None = None,
    session: Mapping[str, Any] | None = None,
) -> Mode:
    """Apply the rules in order and say which one decided. `session` (what Orient saved) comes
    after the flag, the goal and the environment, before the interactive default: a goal that
    began `mode: autonomous` at Orient keeps the whole session autonomous."""
    env = os.environ if environ is None else environ
    if flag is not None:
        if flag not in {"autonomous", "interactive"}:
            raise UsageError(f"--mode: expected autonomous or interactive, got {flag!r}")
        return Mode(flag, f"--mode {flag}")
    if split_goal(goal)[1]:
        return Mode("autonomous", "goal begins 'mode: autonomous'")
    explicit = _flag(env.get("FLYWHEEL_AUTONOMOUS"))
    if explicit is True:
        return Mode("autonomous", f"FLYWHEEL_AUTONOMOUS={env['FLYWHEEL_AUTONOMOUS']}")
    if explicit is False and env.get("FLYWHEEL_AUTONOMOUS", "").strip():
        overrides = " overrides CI" if _flag(env.get("CI")) is True else ""
        return Mode("interactive", f"FLYWHEEL_AUTONOMOUS={env['FLYWHEEL_AUTONOMOUS']}{overrides}")
    if _flag(env.get("CI")) is True:
        return Mode("autonomous", f"CI={env['CI']}")
    if session and session.get("mode") in {"autonomous", "interactive"}:
        return Mode(session["mode"], f"session: {session.get('mode_reason') or 'saved by orient'}")
    return Mode("interactive", "no autonomous signal (a non-TTY stdin is not one)")
