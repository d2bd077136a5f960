"""`flywheel demo`: the whole loop on examples/support-bot, as a user runs it.

Every test runs the real demo (traces generated, ingested, SQL recipes, curation, evals with the
braintrust SDK, statistics, handoff) on the local backend in a temp directory; nothing touches
the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from bt_flywheel.demo import playbook as pb

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "support-bot"
PHASES = ("orient", "discover", "diagnose", "improve", "verify", "decide")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shipped_example_hashes() -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(EXAMPLE.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The default demo (seed 7), run once for this module through the real CLI: (out, stdout, stderr)."""
    from bt_flywheel.cli import main

    out = tmp_path_factory.mktemp("default-demo") / "demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("BRAINTRUST_", "FLYWHEEL_", "OPENAI_")) or name == "CI":
                env.delenv(name)
        env.chdir(out.parent)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["demo", "--out-dir", str(out)])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def _run_demo(run_cli, out: Path, *extra: str) -> tuple[dict, str, str]:
    code, stdout, stderr = run_cli("demo", "--out", str(out), *extra)
    assert code == 0, stderr
    handoff = json.loads((out / "bt-flywheel-summary.json").read_text())
    return handoff, stdout, stderr


def test_default_demo_improves_with_a_significant_target_effect(run_cli, default_demo, shipped_example_hashes):
    out, stdout, stderr = default_demo
    handoff = json.loads((out / "bt-flywheel-summary.json").read_text())

    lines = stdout.strip().splitlines()
    assert lines[0] == f"handoff: {out / 'bt-flywheel-summary.json'}"
    assert lines[1] == f"narrative: {out / 'bt-flywheel-narrative.md'}"
    assert lines[-1].startswith("verdict: improved") and "policy_compliance +" in lines[-1]
    for phase in PHASES:
        assert f"[{phase}]" in stderr
    code, vout, verr = run_cli("handoff", "validate", str(out / "bt-flywheel-summary.json"))
    assert code == 0, vout + verr

    assert handoff["outcome"] == "improved" and handoff["mode"]["name"] == "autonomous"
    assert handoff["goal"] == (EXAMPLE / "goal.txt").read_text().strip()
    verification = handoff["verification"]
    assert verification["status"] == "passed" and verification["split"] == "validation"
    target = next(s for s in verification["scores"] if s["role"] == "target")
    assert target["name"] == "policy_compliance" and target["verdict"] == "improved"
    assert target["ci"][0] > 0 and target["effect"] > target["ci"][0] and target["n"] >= 20
    guard = next(s for s in verification["scores"] if s["role"] == "guard")
    assert guard["name"] == "resolution" and guard["verdict"] in ("non_inferior", "improved")

    # the planted patterns were found, worst first, with trace evidence and the recipes used
    titles = [f["title"] for f in handoff["findings"]]
    assert "prompt injection" in titles[0] and "refusals" in titles[1]
    assert all(f["evidence"]["trace_ids"] and f["evidence"]["queries"] for f in handoff["findings"])

    # exactly one attributable agent edit, written as a copy; the shipped example is untouched
    agent_changes = [c for c in handoff["changes"] if c["artifact"] == "agent"]
    assert len(agent_changes) == 1 and handoff["loops"]["count"] == 1
    diff = (out / "loops" / "loop-1" / "agent_config.diff").read_text()
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  treat_quoted_text_as_data: false", "+  treat_quoted_text_as_data: true"]
    assert {p.name: _sha(p) for p in sorted(EXAMPLE.iterdir()) if p.is_file()} == shipped_example_hashes

    # every artifact exists and its hash is the file's
    assert handoff["artifacts"]
    for artifact in handoff["artifacts"]:
        assert _sha(out / artifact["path"]) == artifact["sha256"], artifact["path"]
    narrative = (out / "bt-flywheel-narrative.md").read_text()
    assert "improved" in narrative and "policy_compliance" in narrative

    code, gout, gerr = run_cli("gate", str(out / "bt-flywheel-summary.json"))
    assert code == 0, gout + gerr

    # the example's eval config measures the same baseline as its Eval file did in the demo
    code, eout, eerr = run_cli("eval", str(EXAMPLE / "eval_config.yaml"), "--store", str(out / "store.duckdb"),
                               "--split", "validation", "--trials", "3", "--json", "--silent")
    assert code == 0, eerr
    means = json.loads(eout)["scores"]
    for score in verification["scores"]:
        assert means[score["name"]] == pytest.approx(score["baseline_mean"])


def test_noop_variant_ends_no_convergence_after_three_loops(run_cli, tmp_path):
    # no edit changes anything, whatever the size: the smallest demo size (the default size is run above)
    handoff, stdout, stderr = _run_demo(run_cli, tmp_path / "noop", "--variant", "noop", "--spans", "800")
    assert handoff["outcome"] == "no_convergence"
    assert handoff["loops"]["count"] == 3 and handoff["loops"]["max"] == 3
    ledger = handoff["loops"]["ledger"]
    assert [e["loop"] for e in ledger] == [1, 2, 3] and not any(e["kept"] for e in ledger)
    assert all(e["verdict"] == "inconclusive" for e in ledger)
    assert len({e["note"] for e in ledger}) == 3  # three different edits
    assert not [c for c in handoff["changes"] if c["artifact"] == "agent"]
    assert stdout.strip().splitlines()[-1].startswith("verdict: no_convergence")
    assert stderr.count("[improve] loop") == 3
    code, out, err = run_cli("gate", str(tmp_path / "noop" / "bt-flywheel-summary.json"))
    assert code == 1  # no_convergence fails the default gate policy


def test_healthy_variant_finds_nothing_actionable(run_cli, tmp_path):
    handoff, stdout, _ = _run_demo(run_cli, tmp_path / "healthy", "--variant", "healthy")
    assert handoff["outcome"] == "healthy" and handoff["severity"] == "none"
    assert handoff["verification"]["status"] == "not_run"
    assert handoff["findings"] == [] and handoff["changes"] == [] and handoff["loops"]["count"] == 0
    assert [s["intent"] for s in handoff["next_steps"]] == ["no_action"]
    assert stdout.strip().splitlines()[-1].startswith("verdict: healthy")
    code, vout, verr = run_cli("handoff", "validate", str(tmp_path / "healthy" / "bt-flywheel-summary.json"))
    assert code == 0, vout + verr


def test_bad_variant_is_a_usage_error(run_cli, tmp_path):
    code, _, err = run_cli("demo", "--out", str(tmp_path / "x"), "--variant", "sideways")
    assert code == 2 and "--variant" in err
    code, _, err = run_cli("demo", "--out", str(tmp_path / "x"), "--trials", "1")
    assert code == 2 and err.strip() == "error: --trials: the validation run needs at least 3 trials, got 1"


def test_demo_recipes_are_the_references_recipes_verbatim():
    text = (REPO / "references" / "sql-patterns.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)\n```", text, flags=re.S)
    for name, recipe in pb.RECIPES.items():
        assert recipe in blocks, f"demo recipe {name!r} is not a block in references/sql-patterns.md"


def test_playbook_edits_change_exactly_the_intended_line():
    shipped = (EXAMPLE / "agent_config.yaml").read_text()
    for edit in (pb.EDIT_QUOTED, pb.EDIT_REFUSE, *pb.NOOP_EDITS):
        new = pb.apply_edit(shipped, edit)
        diff = pb.unified_diff(shipped, new, old_name="a", new_name="b").splitlines()
        removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
        added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
        assert len(removed) <= 1 and len(added) == 1 and len(removed) + len(added) <= 2, edit.key
    with pytest.raises(Exception, match="expected one line"):
        pb.apply_edit(pb.apply_edit(shipped, pb.EDIT_QUOTED), pb.EDIT_QUOTED)


def test_missing_example_is_a_one_line_input_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_EXAMPLE_DIR", str(tmp_path / "nowhere"))
    code, out, err = run_cli("demo", "--out", str(tmp_path / "x"))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {tmp_path / 'nowhere'}: the support-bot example is not here")
    assert len(err.strip().splitlines()) == 1


def test_demo_writes_the_report_and_embeds_the_forest_plot(default_demo) -> None:
    """Issue 9: the demo writes the HTML report and the forest plot next to the narrative, lists
    both in the handoff's artifacts, and the narrative embeds the plot as an image file."""
    out = default_demo[0]
    handoff = json.loads((out / "bt-flywheel-summary.json").read_text())
    kinds = {a["kind"]: a["path"] for a in handoff["artifacts"]}
    assert kinds["report"] == "bt-flywheel-report.html" and kinds["forest_plot"] == "forest.svg"
    narrative = (out / "bt-flywheel-narrative.md").read_text()
    assert "](forest.svg)" in narrative and (out / "forest.svg").read_text().lstrip().startswith("<?xml")
    html = (out / "bt-flywheel-report.html").read_text()
    target = next(s for s in handoff["verification"]["scores"] if s["role"] == "target")
    assert "<script" not in html.lower() and f"{target['effect']:+.3f}" in html
    assert "Benjamini" in html and "failing" in html  # effects by curation bucket, BH named
