"""The routing table and the next-loop decision (`flywheel route`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.comparisons import comparison

from bt_flywheel.core.errors import InputError
from bt_flywheel.verify.ledger import Ledger
from bt_flywheel.verify.route import CONDITIONS, RULES, conditions_from_comparison, decide, routes_for


def test_table_is_data_with_unique_conditions_in_priority_order():
    assert len(set(CONDITIONS)) == len(RULES)
    priorities = [r.priority for r in RULES]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    by = {r.condition: r for r in RULES}
    # measurement and instrumentation come before dataset, dataset before agent, exits last
    assert by["unmeasured_failure"].priority < by["instrumentation_gap"].priority < by["dataset_gap"].priority
    assert by["dataset_gap"].priority < by["agent_problem"].priority < by["improved"].priority
    assert all(r.outcome for r in RULES if r.phase == "exit")
    intents = {"no_action", "review_change", "investigate", "label_data", "rerun", "notify", "block_release",
               "rollback"}
    assert {r.next_step for r in RULES} <= intents


def test_several_conditions_route_in_priority_order():
    routes = routes_for(["agent_problem", "instrumentation_gap", "dataset_gap", "unmeasured_failure"])
    assert [r.condition for r in routes] == ["unmeasured_failure", "instrumentation_gap", "dataset_gap",
                                             "agent_problem"]
    d = decide(["agent_problem", "instrumentation_gap"])
    assert d.action == "continue" and not d.stop and d.route.condition == "instrumentation_gap"
    assert d.route.route == "Improve: instrumentation"


def test_unknown_condition_is_an_input_error():
    with pytest.raises(InputError, match="condition 'vibes': unknown"):
        decide(["vibes"])


@pytest.mark.parametrize(("doc", "expected"), [
    (comparison("improved"), ["improved"]),
    (comparison("regressed"), ["target_regressed"]),
    (comparison("improved", guard="regressed"), ["guard_failed"]),
    (comparison("improved", guard="not_enough_rows"), ["guard_not_enough_rows"]),
    (comparison("regressed", guard="not_enough_rows"), ["target_regressed"]),
    (comparison("inconclusive", underpowered=True), ["underpowered"]),
    (comparison("inconclusive"), ["metric_flat"]),
    (comparison("equivalent"), ["metric_flat"]),
    (comparison("improved", stuck=True), ["scorer_broken", "improved"]),
])
def test_conditions_from_comparison(doc, expected):
    assert conditions_from_comparison(doc) == expected


def test_decisions_from_a_comparison():
    d = decide(comparison=comparison("improved"))
    assert (d.action, d.stop, d.outcome, d.kept) == ("keep", True, "improved", True)
    assert d.next_steps()[0]["intent"] == "review_change"
    more = decide(["improved_new_edge_cases"], comparison=comparison("improved"))
    assert (more.action, more.stop, more.route.condition) == ("keep", False, "improved_new_edge_cases")
    flat = decide(comparison=comparison("equivalent"))
    assert (flat.action, flat.stop, flat.route.condition) == ("continue", False, "metric_flat")
    scorer_first = decide(comparison=comparison("inconclusive", stuck=True))
    assert scorer_first.route.condition == "scorer_broken"


def test_exits_without_a_candidate():
    assert decide(["healthy"]).outcome == "healthy"
    assert decide(["structural_change"]).outcome == "needs_work"
    nothing = decide([])
    assert (nothing.action, nothing.outcome, nothing.route.condition) == ("stop", "needs_work", "nothing_actionable")
    blocked = decide(["blocked", "agent_problem"])
    assert (blocked.stop, blocked.outcome) == (True, "blocked")


def test_no_convergence_after_three_loops(tmp_path: Path):
    ledger = Ledger.open(tmp_path / "ledger.json")
    outcomes = []
    for i in range(3):
        d = decide(comparison=comparison("inconclusive", candidate=f"exp-c{i}"), ledger=ledger)
        outcomes.append((d.action, d.outcome, d.loop))
    assert outcomes == [("continue", None, 1), ("continue", None, 2), ("stop", "no_convergence", 3)]
    assert d.next_steps()[0]["intent"] == "investigate"
    assert ledger.should_stop() == "no_convergence"


def test_cli_table_and_decide_round_trip(tmp_path: Path, run_cli):
    code, out, err = run_cli("route", "table", "--json")
    assert code == 0, err
    assert [r["condition"] for r in json.loads(out)][:3] == ["blocked", "unmeasured_failure", "scorer_broken"]
    code, out, _ = run_cli("route", "table")
    assert "| unmeasured_failure " in out and "Improve: measurement" in out

    for i, verdict in enumerate(["inconclusive", "regressed", "equivalent"]):
        (tmp_path / f"cmp{i}.json").write_text(json.dumps(comparison(verdict, candidate=f"c{i}")))
        code, out, err = run_cli("route", "decide", "--ledger", "runs/ledger.json", "--comparison", f"cmp{i}.json",
                                 "--change", f"prompt tweak {i}")
        assert code == 0, err
    decision = json.loads(out)
    assert (decision["action"], decision["outcome"], decision["loops"], decision["validation_looks"]) == (
        "stop", "no_convergence", 3, 3)
    # re-running the same look does not count twice
    code, out, _ = run_cli("route", "decide", "--ledger", "runs/ledger.json", "--comparison", "cmp2.json")
    again = json.loads(out)
    assert again["replayed"] is True and again["loops"] == 3
    # the bare form (as the skill's routing reference writes it) is `decide`
    (tmp_path / "win.json").write_text(json.dumps(comparison("improved", candidate="c9")))
    code, out, err = run_cli("route", "--ledger", "runs/ledger.json", "--comparison", "win.json", "--json")
    assert code == 0, err
    win = json.loads(out)
    assert (win["action"], win["outcome"], win["consecutive_without_improvement"], win["loops"]) == (
        "keep", "improved", 0, 4)

    code, out, err = run_cli("route", "status", "--ledger", "runs/ledger.json")
    assert code == 0, err
    assert "loops: 4  validation looks: 4  kept: 1  without improvement: 0  stopped: improved" in out


def test_cli_errors_are_one_line(tmp_path: Path, run_cli):
    (tmp_path / "bad.json").write_text("[1, 2]")
    code, out, err = run_cli("route", "decide", "--comparison", "bad.json")
    assert code == 2 and err.startswith("error: bad.json: not a comparison: $: [1, 2] is not of type object")
    (tmp_path / "old.json").write_text(json.dumps({**comparison(), "keep": False}))
    code, _, err = run_cli("route", "decide", "--comparison", "old.json", "--no-record")
    assert code == 2 and "is not what the keep rule gives" in err and err.count("\n") == 1
    code, _, err = run_cli("route", "decide", "--condition", "nope")
    assert code == 2 and err.startswith("error: condition 'nope': unknown (hint: known conditions: blocked,")
    code, _, err = run_cli("route", "status", "--ledger", "missing.json")
    assert code == 2 and "missing.json: no ledger here" in err


def test_a_stop_lists_the_open_findings_for_next_steps(tmp_path: Path, run_cli):
    """A kept fix stops the run, but the second failure it did not touch, and a measurement gap
    that held, are listed as open findings and become next steps."""
    d = decide(["unmeasured_failure", "agent_problem"], comparison=comparison("improved"),
               findings=["Reads out another customer's address"])
    # a kept change with a measurement route pending continues; with nothing pending it stops
    assert (d.action, d.stop) == ("keep", False) and d.open_findings() == []
    d = decide(["structural_change"], comparison=comparison("improved"),
               findings=["Reads out another customer's address"])
    assert (d.stop, d.outcome) == (True, "improved")
    titles = [f["title"] for f in d.open_findings()]
    assert titles == ["Reads out another customer's address"]
    steps = d.next_steps()
    assert steps[0]["intent"] == "review_change"
    assert steps[1]["title"] == "Reads out another customer's address" and steps[1]["intent"] == "investigate"
    # no_convergence with a dataset gap still open
    ledger = Ledger.open(tmp_path / "l.json", max_loops=1)
    stop = decide(["dataset_gap"], comparison=comparison("equivalent"), ledger=ledger)
    assert stop.outcome == "no_convergence"
    assert [f["condition"] for f in stop.open_findings()] == ["metric_flat", "dataset_gap"]
    assert [s["intent"] for s in stop.next_steps()] == ["investigate", "investigate", "label_data"]
    # the CLI prints them
    (tmp_path / "c.json").write_text(json.dumps(comparison("improved")))
    code, out, err = run_cli("route", "decide", "--comparison", str(tmp_path / "c.json"), "--no-record",
                             "--open-finding", "Second failure untouched")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["open_findings"][0]["title"] == "Second failure untouched"
    assert doc["next_steps"][-1]["title"] == "Second failure untouched"
