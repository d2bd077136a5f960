"""`flywheel gate FILE`: exit 0 pass, 1 fail by policy, 2 invalid or missing handoff; one line why.

Default policy: fail on outcome needs_work, blocked or no_convergence; fail whenever blocking is
true; any confidence passes unless --min-confidence says otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bt_flywheel.core.errors import UsageError
from bt_flywheel.handoff.contract import HandoffDoc
from bt_flywheel.handoff.gate import DEFAULT_FAIL_ON, evaluate_gate, parse_fail_on

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples" / "handoffs"


def handoff(outcome: str, *, blocking: bool = False, confidence: str = "high") -> dict:
    doc = json.loads((EXAMPLES / f"{outcome}.json").read_text(encoding="utf-8"))
    doc["blocking"] = blocking
    doc["confidence"]["level"] = confidence
    return doc


# outcome, blocking, confidence, extra flags, exit code, start of the line
POLICY = [
    ("improved", False, "high", [], 0, "gate: pass: outcome improved, severity low, confidence high; not blocking"),
    ("healthy", False, "low", [], 0, "gate: pass: outcome healthy"),
    ("needs_work", False, "high", [], 1, "gate: fail: outcome needs_work is in --fail-on needs_work,blocked,no_convergence"),
    ("blocked", False, "high", [], 1, "gate: fail: outcome blocked is in --fail-on"),
    ("no_convergence", False, "high", [], 1, "gate: fail: outcome no_convergence is in --fail-on"),
    ("improved", True, "high", [], 1, "gate: fail: handoff is blocking"),
    ("healthy", True, "high", ["--fail-on", ""], 1, "gate: fail: handoff is blocking"),
    ("needs_work", False, "high", ["--fail-on", ""], 0, "gate: pass: outcome needs_work"),
    ("needs_work", False, "high", ["--fail-on", "blocked"], 0, "gate: pass: outcome needs_work"),
    ("no_convergence", False, "high", ["--fail-on", "blocked"], 0, "gate: pass"),
    ("healthy", False, "high", ["--fail-on", "healthy,blocked"], 1, "gate: fail: outcome healthy is in --fail-on healthy,blocked"),
    ("improved", False, "low", ["--min-confidence", "medium"], 1,
     "gate: fail: confidence low is below --min-confidence medium"),
    ("improved", False, "medium", ["--min-confidence", "medium"], 0, "gate: pass"),
    ("improved", False, "medium", ["--min-confidence", "high"], 1, "gate: fail: confidence medium is below"),
    ("improved", False, "high", ["--min-confidence", "high"], 0, "gate: pass"),
    ("improved", False, "low", ["--min-confidence", "low"], 0, "gate: pass"),
    # blocking is reported first, then the outcome, then confidence
    ("needs_work", True, "low", ["--min-confidence", "high"], 1, "gate: fail: handoff is blocking"),
    ("needs_work", False, "low", ["--min-confidence", "high"], 1, "gate: fail: outcome needs_work"),
]


@pytest.mark.parametrize("outcome,blocking,confidence,flags,code,line", POLICY)
def test_gate_policy_table(run_cli, tmp_path, outcome, blocking, confidence, flags, code, line):
    path = tmp_path / "bt-flywheel-summary.json"
    path.write_text(json.dumps(handoff(outcome, blocking=blocking, confidence=confidence)))
    got, out, err = run_cli("gate", str(path), *flags)
    assert got == code
    assert out.startswith(line), out
    assert out.count("\n") == 1  # exactly one line
    assert err == ""


@pytest.mark.parametrize("content,message", [
    (None, "file not found"),
    ("{", "invalid JSON"),
    (json.dumps({"outcome": "improved"}), "invalid handoff: $.artifacts: required property is missing (and 17 more"),
])
def test_gate_invalid_or_missing_handoff_is_exit_2(run_cli, tmp_path, content, message):
    path = tmp_path / "h.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli("gate", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_gate_rejects_an_invalid_handoff_even_if_the_policy_would_pass(run_cli, tmp_path):
    doc = handoff("improved")
    doc["next_steps"][0]["idempotency_key"] = "0" * 64
    path = tmp_path / "h.json"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli("gate", str(path))
    assert code == 2
    assert "$.next_steps[0].idempotency_key: does not match" in err


def test_gate_unknown_fail_on_outcome_is_a_usage_error(run_cli):
    code, _, err = run_cli("gate", str(EXAMPLES / "improved.json"), "--fail-on", "needs_work,bad")
    assert code == 2
    assert err == ("error: --fail-on: unknown outcome 'bad'; choose from healthy, improved, needs_work, "
                   "blocked, no_convergence\n")


def test_gate_library_defaults():
    assert parse_fail_on(None) == DEFAULT_FAIL_ON == ("needs_work", "blocked", "no_convergence")
    assert parse_fail_on(" blocked , blocked,needs_work ") == ("blocked", "needs_work")
    result = evaluate_gate(HandoffDoc.from_dict(handoff("needs_work")))
    assert (result.passed, result.exit_code) == (False, 1)
    with pytest.raises(UsageError, match="--min-confidence: 'certain'"):
        evaluate_gate(HandoffDoc.from_dict(handoff("improved")), min_confidence="certain")
