"""One keep rule: compare, the handoff, the report, the router and the ledger agree on every
combination of target verdict x guard verdicts (DESIGN.md §8, verify/keep.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fakes.comparisons import comparison

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.mode import Mode
from bt_flywheel.handoff.contract import HandoffBuilder
from bt_flywheel.report.html import comparison_view
from bt_flywheel.verify.keep import GUARD_VERDICTS, TARGET_VERDICTS, keep_decision
from bt_flywheel.verify.ledger import Ledger
from bt_flywheel.verify.route import conditions_from_comparison, decide

GUARD_SETS = [()] + [(v,) for v in GUARD_VERDICTS] + list(itertools.product(GUARD_VERDICTS, repeat=2))
# the last guard is a score guard, or a span-metric guard (tokens, judged as a ratio; verify/metrics.py)
KINDS = {0: [""], 1: ["score", "metric"], 2: ["score", "metric"]}
CASES = [(t, g, k) for t in TARGET_VERDICTS for g in GUARD_SETS for k in KINDS[len(g)]]


def expected_status(target: str, guards: tuple[str, ...]) -> str:
    """The rule in words: keep only an improved target whose guards all held; discard only on a
    regression; anything else (including a guard short of rows) is inconclusive."""
    if target == "improved" and all(g == "non_inferior" for g in guards):
        return "passed"
    if target == "regressed" or "regressed" in guards:
        return "failed"
    return "inconclusive"


@pytest.mark.parametrize(("target", "guards", "kind"), CASES,
                         ids=[f"{t}-{'+'.join(g) or 'none'}{'-' + k if k else ''}" for t, g, k in CASES])
def test_every_reader_applies_the_same_keep_rule(tmp_path: Path, target: str, guards: tuple[str, ...], kind: str):
    named = {f"G{i}": v for i, v in enumerate(guards)}
    if kind == "metric":  # the last guard reads span metrics
        named["tokens"] = named.pop(f"G{len(guards) - 1}")
    metric = {k: v for k, v in named.items() if k == "tokens"}
    doc = comparison(target, guards={k: v for k, v in named.items() if k != "tokens"}, metric_guards=metric)
    assert [s["kind"] for s in doc["scores"][1:]] == ["score"] * (len(guards) - len(metric)) + ["metric"] * len(metric)
    status = expected_status(target, guards)
    keep = status == "passed"
    guards_ok = all(g == "non_inferior" for g in guards) if guards else None
    needs_rows = "not_enough_rows" in guards and status != "failed"

    rule = keep_decision(target, named)
    assert (rule.status, rule.keep, rule.guards_ok, rule.needs_rows) == (status, keep, guards_ok, needs_rows)
    # compare
    assert (doc["status"], doc["keep"], doc["guards_ok"], doc["needs_rows"]) == (status, keep, guards_ok, needs_rows)
    # handoff
    builder = HandoffBuilder(goal="g", project="p", mode=Mode("autonomous", "CI=true"),
                             started_at="2025-06-01T09:00:00Z")
    verification = builder.set_verification(doc).verification
    assert (verification["status"], verification["guards"]["passed"]) == (status, guards_ok)
    # report
    view = comparison_view(doc)
    assert (view["status"], view["keep"], view["guards_passed"]) == (status, keep, guards_ok)
    # route: a guard short of rows asks for rows, never for a discard
    conditions = conditions_from_comparison(doc)
    assert ("improved" in conditions) == keep
    assert ("guard_failed" in conditions) == ("regressed" in guards)
    assert ("guard_not_enough_rows" in conditions) == needs_rows
    decision = decide(comparison=doc)
    assert decision.kept == keep
    if needs_rows and target != "inconclusive":
        assert decision.route.condition == "guard_not_enough_rows" and decision.route.artifact == "dataset"
    # ledger
    ledger = Ledger.open(tmp_path / "ledger.json")
    entry = ledger.append_loop(candidate="c", kept=decision.kept, comparison=doc)
    assert (entry["validation"]["status"], entry["validation"]["guards_ok"], entry["kept"]) == (status, guards_ok, keep)


def test_unknown_verdicts_are_refused():
    with pytest.raises(InputError, match="target verdict 'better'"):
        keep_decision("better", {})
    with pytest.raises(InputError, match="guard 'G' verdict 'inconclusive'"):
        keep_decision("improved", {"G": "inconclusive"})


def test_a_guard_identical_on_20_rows_is_short_of_rows_and_routes_to_curation():
    """Issue 14: a guard identical on all 20 rows used to fail (exact lower bound -0.168 vs margin
    0.02) while saying required_n 2 and power 1. It is now 'not enough rows', with the rows that
    the same exact bound needs, and the route is 'curate more rows', not 'discard'."""
    from bt_flywheel.verify.compare import ExperimentScores, compare_loaded

    ids = [f"r{i:02d}" for i in range(20)]

    def experiment(eid: str, target_shift: float) -> ExperimentScores:
        scores = {"acc": {i: [0.4 + target_shift + (0.05 if k % 2 else -0.05)] for k, i in enumerate(ids)},
                  "tone": {i: [0.8] for i in ids}}
        return ExperimentScores(id=eid, name=eid, created=None, metadata={}, root_rows=20, scores=scores,
                                available={"acc", "tone"})

    doc = compare_loaded(experiment("b", 0.0), experiment("c", 0.3), target="acc", guards=["tone"],
                         n_resamples=0).to_dict()
    guard = doc["scores"][1]
    assert doc["target_verdict"] == "improved" and guard["verdict"] == "not_enough_rows"
    assert guard["ci"][0] == pytest.approx(-(1 - 0.025 ** (1 / 20)))  # -0.168, the exact bound
    power = guard["power"]
    need = power["required_n"]
    # the same bound at the required rows clears -margin, one row fewer does not
    assert 1 - 0.025 ** (1 / need) < 0.02 <= 1 - 0.025 ** (1 / (need - 1))
    assert need == 183 and power["power_at_n"] == 0.0 and (power["bound"], power["side"]) == (-0.02, "lower")
    assert (doc["status"], doc["keep"], doc["needs_rows"]) == ("inconclusive", False, True)
    decision = decide(comparison=doc)
    assert decision.route.condition == "guard_not_enough_rows" and "curate more" in decision.route.route
    assert not decision.kept and decision.action == "continue"
