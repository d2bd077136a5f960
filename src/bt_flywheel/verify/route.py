"""The routing table (Diagnose / Verify & Decide) as data, and the next-loop decision.

``RULES`` is the flywheel playbook's table: each rule names an observable condition, the
artifact route it sends the run to, its priority (lower first: measurement and instrumentation
before datasets, datasets before agent behaviour, exits last) and the handoff next-step intent
it implies. :func:`decide` takes the conditions that hold (named by the caller, and/or derived
from a ``flywheel compare`` result by :func:`conditions_from_comparison`) plus the loop ledger,
and returns a :class:`Decision`:

- ``action``: ``keep`` (the candidate is kept), ``continue`` (run another loop on ``route``) or
  ``stop``; ``stop`` is true when the run should end, with ``outcome`` one of improved |
  healthy | needs_work | blocked | no_convergence.
- a guard not shown to hold for lack of rows routes to "curate more rows" (dataset), never to
  "discard the candidate": only a regressed target or guard does that.
- ``no_convergence`` comes only from the ledger: ``max_loops`` (default 3) consecutive loops
  without a kept improvement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.verify.comparison_model import ComparisonDoc, as_comparison
from bt_flywheel.verify.ledger_model import LoopDecision, LoopEntry

ARTIFACTS = ("measurement", "instrumentation", "dataset", "agent", "none")
OUTCOMES = ("improved", "healthy", "needs_work", "blocked", "no_convergence")
ACTIONS = ("keep", "continue", "stop")


@dataclass(frozen=True)
class Rule:
    condition: str
    when: str                 # the condition in words
    route: str                # where the run goes next
    artifact: str             # measurement | instrumentation | dataset | agent | none
    phase: str                # improve | discover | verify | exit
    priority: int             # lower runs first
    next_step: str            # handoff next_steps intent this route implies
    outcome: str | None = None  # for exit rules: the handoff outcome
    question: str = ""        # the Diagnose question it answers

    @property
    def title(self) -> str:
        """A one-line next step for the handoff."""
        return NEXT_STEP_TITLES.get(self.condition, self.route)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "title": self.title}


NEXT_STEP_TITLES = {
    "blocked": "Unblock the run (data, access or a runnable eval)",
    "unmeasured_failure": "Add a scorer or facet for the unmeasured failure and label rows for it",
    "scorer_broken": "Review the scorer: its distribution is stuck or wrong",
    "instrumentation_gap": "Log what diagnosis needs (inputs, metadata, tool results)",
    "smoke_failed": "Fix the candidate or the eval: the smoke run is broken",
    "new_failure_pattern": "Add rows for the new failure pattern to the dataset",
    "validation_not_train": "Check the split: validation moved but train did not",
    "underpowered": "Label more validation rows (see required_n) and measure again",
    "guard_not_enough_rows": "Curate more rows: a guard is not shown to hold for lack of rows (see required_n)",
    "target_regressed": "Discard the candidate: the target regressed",
    "guard_failed": "Discard the candidate: a guard did not hold",
    "metric_flat": "Try a different agent change: the metric did not move",
    "improved_new_edge_cases": "Add the new edge cases to the dataset and verify again",
    "dataset_gap": "Cover the eval-surfaced cases in the dataset and verify again",
    "agent_problem": "Make a targeted agent change",
    "structural_change": "Review the proposed structural change",
    "improved": "Review and merge the verified change",
    "healthy": "No action: production is healthy",
    "nothing_actionable": "Investigate: the evidence does not point to a change yet",
}

RULES: tuple[Rule, ...] = (
    Rule("blocked", "the run cannot proceed: no data, no access, or the eval cannot run",
         "exit: blocked", "none", "exit", 0, "investigate", "blocked", "Can the loop run at all?"),
    Rule("unmeasured_failure", "a production failure is real but no scorer or facet measures it",
         "Improve: measurement", "measurement", "improve", 10, "label_data", None,
         "Is this a measurement gap (a new scorer or facet)?"),
    Rule("scorer_broken", "a scorer is stuck at 0/1 or disagrees with a reading of the traces",
         "Improve: measurement", "measurement", "improve", 20, "review_change", None, "Is this a scorer problem?"),
    Rule("instrumentation_gap", "traces cannot support the diagnosis (missing input, metadata, tool results)",
         "Improve: instrumentation", "instrumentation", "improve", 30, "review_change", None,
         "Is this instrumentation or observability drift?"),
    Rule("smoke_failed", "the smoke eval scores near zero or the eval is structurally broken",
         "Improve: fix the candidate or the eval before any full run", "agent", "improve", 35, "investigate"),
    Rule("new_failure_pattern", "a new failure pattern appeared that no dataset row covers",
         "Discover (focused) -> Improve: dataset", "dataset", "discover", 40, "label_data", None,
         "Is this a dataset gap?"),
    Rule("validation_not_train", "the metric improved on validation but not on train",
         "Improve: dataset", "dataset", "improve", 50, "investigate"),
    Rule("underpowered", "the comparison is inconclusive and a feasible number of rows would settle it",
         "Improve: dataset (more validation rows, see required_n) -> Verify", "dataset", "improve", 55,
         "label_data"),
    Rule("guard_not_enough_rows", "a guard is not shown to hold for lack of rows (nothing regressed)",
         "Improve: dataset (curate more validation rows, see the guard's required_n) -> Verify", "dataset",
         "improve", 56, "label_data"),
    Rule("target_regressed", "the candidate made the target score worse",
         "Improve: agent (discard the candidate; read the regressed rows)", "agent", "improve", 58,
         "investigate"),
    Rule("guard_failed", "a guard regressed (its CI lies wholly below no change)",
         "Improve: agent (discard the candidate; a change that keeps the guard)", "agent", "improve", 59,
         "investigate"),
    Rule("metric_flat", "the metric did not move despite an agent change",
         "Improve: agent (a different change)", "agent", "improve", 60, "investigate"),
    Rule("improved_new_edge_cases", "the metric improved and new edge cases were found",
         "Improve: dataset -> Verify", "dataset", "improve", 70, "label_data"),
    Rule("dataset_gap", "the dataset does not cover cases the eval surfaced",
         "Improve: dataset -> Verify", "dataset", "improve", 80, "label_data"),
    Rule("agent_problem", "trace and eval evidence point to behaviour the agent owns",
         "Improve: agent", "agent", "improve", 85, "review_change", None, "Is this an agent problem?"),
    Rule("structural_change", "the fix needs more than one targeted edit (model, architecture, tool surface)",
         "exit: needs_work (propose the structural change)", "none", "exit", 90, "review_change", "needs_work",
         "Is a structural change needed?"),
    Rule("improved", "target improved, guards held, no regressions, measurement healthy",
         "exit: improved", "none", "exit", 100, "review_change", "improved"),
    Rule("healthy", "production is healthy and nothing needs follow-up",
         "exit: healthy", "none", "exit", 110, "no_action", "healthy"),
    Rule("nothing_actionable", "the evidence points to no artifact that can be changed now",
         "exit: needs_work (say what evidence is missing)", "none", "exit", 120, "investigate", "needs_work",
         "Nothing actionable?"),
)
RULES_BY_CONDITION = {r.condition: r for r in RULES}
CONDITIONS = tuple(r.condition for r in RULES)


def routing_table() -> list[dict[str, Any]]:
    """The rules in priority order, as dicts."""
    return [r.to_dict() for r in sorted(RULES, key=lambda r: r.priority)]


def check_conditions(conditions: Iterable[str]) -> list[str]:
    out = []
    for c in conditions:
        if c not in RULES_BY_CONDITION:
            raise InputError(f"condition {c!r}: unknown", hint=f"known conditions: {', '.join(CONDITIONS)}")
        if c not in out:
            out.append(c)
    return out


def routes_for(conditions: Iterable[str]) -> list[Rule]:
    """The rules whose condition holds, in priority order."""
    return sorted((RULES_BY_CONDITION[c] for c in check_conditions(conditions)), key=lambda r: r.priority)


def conditions_from_comparison(comparison: Any, *, change_artifact: str = "agent") -> list[str]:
    """Conditions a ``flywheel compare --json`` result shows by itself, read through the keep rule
    (:func:`bt_flywheel.verify.keep.keep_decision`; nothing here recomputes keep).

    kept -> improved; the target regressed -> target_regressed; a guard regressed ->
    guard_failed; a guard not shown to hold for lack of rows (and nothing failed) ->
    guard_not_enough_rows (curate more rows, never discard); a stuck score -> scorer_broken; the
    target inconclusive with a ``required_n`` no more than 4x the rows compared -> underpowered;
    otherwise an inconclusive or equivalent target after an agent change -> metric_flat.
    """
    doc = as_comparison(comparison)
    decision = doc.decision
    target = doc.target_score
    out: list[str] = []
    if doc.stuck_scores:
        out.append("scorer_broken")
    if decision.keep:
        out.append("improved")
    if target.verdict == "regressed":
        out.append("target_regressed")
    if decision.regressed_guards:
        out.append("guard_failed")
    if decision.needs_rows:
        out.append("guard_not_enough_rows")
    if target.verdict == "inconclusive":
        need = target.power.required_n if target.power else None
        if need is not None and target.n and need <= 4 * target.n:
            out.append("underpowered")
        elif change_artifact == "agent":
            out.append("metric_flat")
    elif target.verdict == "equivalent" and change_artifact == "agent":
        out.append("metric_flat")
    return out


def candidate_of(comparison: ComparisonDoc, ledger: Any = None) -> str | None:
    """How the ledger names the compared candidate: the fingerprint of its changed files (from the
    experiment's metadata via compare, or from the look `flywheel eval` recorded), else its
    experiment name or id."""
    experiment = comparison.candidate
    recorded = ledger.candidate_of(experiment) if ledger is not None else None
    return comparison.candidate_fingerprint or recorded or experiment


@dataclass
class Decision:
    action: str
    stop: bool
    outcome: str | None
    kept: bool
    route: Rule | None
    routes: list[Rule]
    conditions: list[str]
    reason: str
    loop: int | None = None
    loops: int = 0
    validation_looks: int = 0
    consecutive_without_improvement: int = 0
    max_loops: int = 3
    warnings: list[str] = field(default_factory=list)
    ledger: str | None = None
    replayed: bool = False
    findings: list[str] = field(default_factory=list)  # findings the caller says are still open

    def open_findings(self) -> list[dict[str, Any]]:
        """What the run leaves open when it stops: the findings the caller named, and every
        condition that held but whose route was not taken (a kept change answers the agent ones)."""
        if not self.stop:
            return []
        out: list[dict[str, Any]] = [{"title": text, "condition": None, "intent": "investigate"}
                                     for text in self.findings]
        for rule in self.routes:
            if rule is self.route or rule.phase == "exit" or (self.kept and rule.artifact == "agent"):
                continue
            out.append({"title": rule.title, "condition": rule.condition, "intent": rule.next_step,
                        "route": rule.route})
        return out

    def next_steps(self) -> list[dict[str, Any]]:
        """Suggested handoff next steps (intent, priority, title, body): the stop's own step, then
        one per open finding. The handoff builder adds the destination and idempotency key."""
        if not self.stop:
            return []
        steps = self._stop_step()
        for finding in self.open_findings():
            body = (f"Still open when the run stopped ({self.outcome}): {finding['title']}"
                    + (f" -> {finding['route']}" if finding.get("route") else ""))
            steps.append({"intent": finding["intent"], "priority": "p2", "title": finding["title"], "body": body})
        return steps

    def _stop_step(self) -> list[dict[str, Any]]:
        if self.outcome == "no_convergence":
            return [{"intent": "investigate", "priority": "p2",
                     "title": f"No kept improvement after {self.consecutive_without_improvement} loops",
                     "body": "Further tweaks of the same kind would fit noise. Review the ledger's candidates, "
                             "check the scorer against labeled rows, and consider more labeled data."}]
        rule = self.route or (RULES_BY_CONDITION.get(self.outcome or "") if self.outcome else None)
        if rule is None:
            return []
        priority = {"blocked": "p1", "improved": "p1", "needs_work": "p2", "healthy": "p3"}.get(self.outcome or "", "p2")
        return [{"intent": rule.next_step, "priority": priority, "title": rule.title,
                 "body": f"{rule.when} -> {rule.route}"}]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "stop": self.stop, "outcome": self.outcome, "kept": self.kept,
            "route": self.route.to_dict() if self.route else None,
            "routes": [r.to_dict() for r in self.routes], "conditions": list(self.conditions),
            "reason": self.reason, "loop": self.loop, "loops": self.loops,
            "validation_looks": self.validation_looks,
            "consecutive_without_improvement": self.consecutive_without_improvement,
            "max_loops": self.max_loops, "open_findings": self.open_findings(), "next_steps": self.next_steps(),
            "warnings": list(self.warnings),
            "ledger": self.ledger, "replayed": self.replayed,
        }


def decide(conditions: Iterable[str] = (), *, comparison: Any = None,
           ledger: Any = None, candidate: str | None = None, change: str | None = None,
           change_artifact: str = "agent", note: str | None = None, kept: bool | None = None,
           findings: Iterable[str] = ()) -> Decision:
    """Route the next loop. With a ``ledger`` (:class:`bt_flywheel.verify.ledger.Ledger`) and a
    ``comparison`` or ``candidate``, the loop is recorded (idempotently: the same candidate and
    experiments again replay the stored decision) and counted toward ``no_convergence``.
    ``findings`` are findings still open (e.g. a second failure pattern this loop did not touch):
    when the decision stops they are listed in ``open_findings`` and ``next_steps``."""
    findings = [f.strip() for f in findings if f and f.strip()]
    if change_artifact not in ARTIFACTS:
        raise InputError(f"change_artifact {change_artifact!r}: not one of {', '.join(ARTIFACTS)}")
    conds = check_conditions(conditions)
    if comparison is not None:
        comparison = as_comparison(comparison)
        for c in conditions_from_comparison(comparison, change_artifact=change_artifact):
            if c not in conds:
                conds.append(c)
        if kept is None:
            kept = comparison.decision.keep
        candidate = candidate or candidate_of(comparison, ledger)
    kept = bool(kept)
    if kept and "improved" not in conds:
        conds.append("improved")
    routes = routes_for(conds)
    records_loop = ledger is not None and (comparison is not None or candidate is not None)
    if records_loop:
        previous = ledger.find_loop(candidate, comparison)
        if previous is not None and previous.decision is not None:
            replayed = _replay(previous, previous.decision, ledger)
            replayed.findings = findings
            return replayed
    warnings: list[str] = []
    max_loops = ledger.max_loops if ledger is not None else 3
    streak = ledger.consecutive_without_improvement if ledger is not None else 0
    if records_loop:
        streak = 0 if kept else streak + 1
        looks = ledger.looks_for(candidate) if comparison is not None else 0
        if looks:
            warnings.append(f"candidate {candidate!r} already had {looks} validation look(s); repeated looks "
                            "at validation inflate false positives")
    action, stop, outcome, route, reason = _choose(routes, kept=kept, streak=streak, max_loops=max_loops)
    decision = Decision(action, stop, outcome, kept, route, routes, conds, reason, max_loops=max_loops,
                        consecutive_without_improvement=streak, warnings=warnings, findings=findings)
    if ledger is not None:
        if records_loop:
            entry = ledger.append_loop(candidate=candidate, kept=kept, change=change, change_artifact=change_artifact,
                                       comparison=comparison, conditions=conds, decision=decision, note=note)
            decision.loop = entry["loop"]
        decision.loops = ledger.loop_count
        decision.validation_looks = ledger.validation_looks
        decision.consecutive_without_improvement = ledger.consecutive_without_improvement
        decision.ledger = str(ledger.path)
    return decision


def _choose(routes: list[Rule], *, kept: bool, streak: int, max_loops: int
            ) -> tuple[str, bool, str | None, Rule | None, str]:
    by_name = {r.condition: r for r in routes}
    if "blocked" in by_name:
        return "stop", True, "blocked", by_name["blocked"], "the run cannot proceed"
    improve = [r for r in routes if r.phase != "exit"]
    if kept:
        # the kept change addressed the agent conditions; measurement/instrumentation/dataset
        # follow-ups (e.g. new edge cases found) still continue the run
        later = [r for r in improve if r.artifact != "agent"]
        if later:
            return ("keep", False, None, later[0],
                    f"candidate kept; next: {later[0].route} ({later[0].when})")
        return "keep", True, "improved", by_name.get("improved"), "target improved and every guard held"
    if streak >= max_loops:
        return ("stop", True, "no_convergence", None,
                f"{streak} consecutive loops without a kept improvement (max {max_loops})")
    if improve:
        first = improve[0]
        return "continue", False, None, first, f"{first.when} -> {first.route}"
    exits = [r for r in routes if r.phase == "exit" and r.condition != "improved"]
    if exits:
        return "stop", True, exits[0].outcome, exits[0], exits[0].when
    if "improved" in by_name:
        return "stop", True, "improved", by_name["improved"], by_name["improved"].when
    rule = RULES_BY_CONDITION["nothing_actionable"]
    return "stop", True, rule.outcome, rule, "no routing condition holds"


def _replay(entry: LoopEntry, d: LoopDecision, ledger: Any) -> Decision:
    routes = routes_for(list(entry.conditions))
    route = RULES_BY_CONDITION.get(d.route) if d.route else None
    return Decision(d.action, d.stop, d.outcome, entry.kept, route, routes,
                    list(entry.conditions), d.reason, loop=entry.loop,
                    loops=ledger.loop_count, validation_looks=ledger.validation_looks,
                    consecutive_without_improvement=ledger.consecutive_without_improvement,
                    max_loops=ledger.max_loops, ledger=str(ledger.path), replayed=True,
                    warnings=["this loop is already in the ledger; its recorded decision is shown"])
