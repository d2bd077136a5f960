"""handoff build checks the draft's figures against compare.json, copies artifacts CI could not
read, and takes started_at from Orient; handoff validate warns on repeated validation looks;
candidates are identified by a hash of the changed files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fakes.comparisons import comparison

from bt_flywheel.core.errors import InputError
from bt_flywheel.evals.candidate import identify
from bt_flywheel.handoff.build import HandoffInvalid, build_from_draft, plan_copies
from bt_flywheel.handoff.checks import look_warnings, number_warnings
from bt_flywheel.verify.comparison_model import ComparisonDoc
from bt_flywheel.verify.ledger import Ledger


def _recipe_bot_comparison() -> dict:
    """What compare writes, with the figures of the recipe-bot run this draft talks about."""
    doc = comparison("improved", guards={"topic": "non_inferior"}, baseline="b", candidate="c")
    doc["target"] = doc["scores"][0]["name"] = "safe"
    doc["scores"][0].update({"n": 40, "effect": 0.4792, "ci": [0.2120, 0.7463], "p": 0.0017, "p_holm": 0.0033,
                             "baseline_mean": 0.52, "candidate_mean": 1.0})
    doc["scores"][1].update({"n": 40, "effect": 0.0, "ci": [-0.0921, 0.0921], "p": 1.0, "p_holm": 1.0,
                             "baseline_mean": 0.94, "candidate_mean": 0.94})
    doc["regressions"] = []
    doc["scores"][0]["regressions"] = []
    return doc


COMPARISON = _recipe_bot_comparison()


def _draft(why: str, summary: str = "One config line fixed it.", outcome: str = "improved") -> dict:
    return {"outcome": outcome, "severity": "high", "confidence": {"level": "medium", "why": why},
            "summary": summary, "project": "recipe-bot", "goal": "make allergy handling safe"}


@pytest.mark.parametrize("text", [
    "safe +0.48 (95% CI [0.21, 0.75], n=40) on validation",
    "safe +0.5 [0.2, 0.7], p=0.002; topic +0.00 [-0.09, 0.09]",
    "safe rose by +48% (CI [21%, 75%]); within margin ±0.1",
    "baseline 0.52 -> 1.00 on 40 rows",  # unsigned figures are means and counts: not checked
])
def test_figures_that_agree_with_the_comparison_pass(text):
    assert number_warnings(_draft(text), ComparisonDoc.from_dict(COMPARISON)) == []


@pytest.mark.parametrize("text,word", [
    ("safe +0.60 on validation", "effect +0.60"),
    ("safe +0.48 (95% CI [0.31, 0.75])", "CI [0.31, 0.75]"),
    ("safe +0.48, n=120 x 3", "n=120"),
    ("safe -0.48", "effect -0.48"),
    ("p=0.04", "p=0.04"),
])
def test_a_figure_that_contradicts_the_comparison_is_flagged(text, word):
    warnings = number_warnings(_draft(text), ComparisonDoc.from_dict(COMPARISON))
    assert len(warnings) == 1 and word in warnings[0] and "confidence.why" in warnings[0]


def test_build_warns_by_default_and_refuses_in_strict_mode(tmp_path):
    draft = _draft("safe +0.48 [0.21, 0.75]", summary="Allergic users are safe now (+0.9).")
    result = build_from_draft(draft, comparison=COMPARISON, out_dir=tmp_path / "out")
    assert result.warnings == ["draft summary: effect +0.9 matches no score's effect (safe +0.4792, topic +0.0000)"]
    assert result.handoff["x-build-warnings"] == result.warnings
    with pytest.raises(HandoffInvalid) as caught:
        build_from_draft(draft, comparison=COMPARISON, out_dir=tmp_path / "strict", strict=True)
    assert "+0.9" in caught.value.violations[0].message
    assert not (tmp_path / "strict").exists()


def test_started_at_is_orients_and_ignored_artifacts_are_copied_next_to_the_handoff(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".flywheel").mkdir()
    ledger = Ledger.open(tmp_path / ".flywheel" / "ledger.json")
    ledger.data["created_at"] = "2026-01-02T00:00:00Z"
    ledger.save()
    (tmp_path / ".flywheel" / "notes.md").write_text("what the analyst saw\n")
    orient = {"mode": "autonomous", "mode_reason": "CI=true", "goal": "g", "project": "recipe-bot",
              "started_at": "2026-01-01T09:30:00Z"}
    draft = {**_draft("fine", outcome="needs_work"), "artifacts": [{"path": ".flywheel/notes.md", "kind": "notes"}]}
    result = build_from_draft(draft, orient=orient, ledger=str(tmp_path / ".flywheel" / "ledger.json"),
                              out_dir=tmp_path)
    assert result.handoff["started_at"] == "2026-01-01T09:30:00Z"
    paths = {a["kind"]: a["path"] for a in result.handoff["artifacts"]}
    assert paths == {"notes": "notes.md", "ledger": "ledger.json"}
    assert (tmp_path / "notes.md").read_text() == "what the analyst saw\n"
    # two ignored files with one name cannot both be copied: refuse, naming the file
    (tmp_path / ".flywheel" / "a").mkdir()
    (tmp_path / ".flywheel" / "a" / "notes.md").write_text("other\n")
    with pytest.raises(InputError, match="both named 'notes.md'"):
        plan_copies([tmp_path / ".flywheel" / "notes.md", tmp_path / ".flywheel" / "a" / "notes.md"], tmp_path)
    with pytest.raises(InputError, match="CI could not read"):
        plan_copies([tmp_path / ".flywheel" / "notes.md"], tmp_path / ".flywheel" / "out")


def test_handoff_validate_warns_on_two_looks_at_one_candidate(tmp_path, run_cli):
    ledger = Ledger.open(tmp_path / "ledger.json")
    for name in ("cand-a", "cand-a-again"):
        ledger.record_look(candidate="cand:1111", experiment=name, experiment_id=name + "-id")
    ledger.record_look(candidate="base:abc", experiment="base1", experiment_id="b1")
    ledger.record_look(candidate="base:abc", experiment="base2", experiment_id="b2")
    assert ledger.repeated_looks() == {"cand:1111": 2}  # the unchanged baseline may be measured again
    result = build_from_draft(_draft("fine", outcome="needs_work"), ledger=str(tmp_path / "ledger.json"), out_dir=tmp_path)
    assert any("cand:1111 had 2 validation looks" in w for w in result.warnings)
    code, out, err = run_cli("handoff", "validate", str(tmp_path / "bt-flywheel-summary.json"))
    assert code == 0 and "valid" in out
    assert "warning:" in err and "cand:1111 had 2 validation looks" in err
    # from the handoff alone: one candidate in two loops with a verdict
    entries = [{"loop": 1, "kept": False, "candidate": "cand:2", "verdict": "inconclusive"},
               {"loop": 2, "kept": True, "candidate": "cand:2", "verdict": "improved"}]
    assert look_warnings({"loops": {"ledger": entries}}) == [
        "candidate cand:2 had 2 validation looks; a result after repeated looks at validation is optimistic "
        "(tune on train, look at validation once)"]


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=a@example.com", "-c", "user.name=a", "-C", str(root), *args],
                   check=True, capture_output=True)


def test_a_candidate_is_the_hash_of_the_changed_files(tmp_path):
    (tmp_path / "config.yaml").write_text("rules: [a]\n")
    (tmp_path / "eval_x.py").write_text("# eval\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "x")
    base = identify(tmp_path / "eval_x.py")
    assert base["baseline"] and base["id"].startswith("base:")
    (tmp_path / "compare.json").write_text("{}")  # an untracked output is not part of the candidate
    assert identify(tmp_path / "eval_x.py")["id"] == base["id"]
    (tmp_path / "config.yaml").write_text("rules: [a, b]\n")
    first = identify(tmp_path / "eval_x.py")
    assert first["id"].startswith("cand:") and first["files"] == ["config.yaml"]
    assert identify(tmp_path / "eval_x.py")["id"] == first["id"]  # the same edit measured again: one candidate
    (tmp_path / "config.yaml").write_text("rules: [a, c]\n")
    assert identify(tmp_path / "eval_x.py")["id"] != first["id"]
    named = identify(tmp_path / "eval_x.py", [tmp_path / "compare.json"])
    assert named["files"] == ["compare.json", "config.yaml"]
    json.dumps(named)
