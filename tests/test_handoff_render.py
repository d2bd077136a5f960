"""`flywheel handoff render`: the narrative is deterministic and matches the golden file.

Regenerate the golden after an intended change with
`FLYWHEEL_UPDATE_GOLDEN=1 pytest tests/test_handoff_render.py` and review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bt_flywheel.handoff.contract import OUTCOMES
from bt_flywheel.handoff.narrative import render_narrative

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples" / "handoffs"
GOLDEN = Path(__file__).resolve().parent / "golden" / "narrative.md"
UPDATE = os.environ.get("FLYWHEEL_UPDATE_GOLDEN") == "1"  # read at import, before env isolation
SECTIONS = ["## What we looked at", "## What we found", "## What we changed", "## How we know", "## What next"]


def load(outcome: str) -> dict:
    return json.loads((EXAMPLES / f"{outcome}.json").read_text(encoding="utf-8"))


def test_render_matches_golden_file():
    text = render_narrative(load("improved"))
    if UPDATE:
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_cli_render_to_file_and_stdout_match_golden(run_cli, tmp_path):
    out = tmp_path / "narrative.md"
    code, stdout, err = run_cli("handoff", "render", str(EXAMPLES / "improved.json"), "--out", str(out))
    assert code == 0 and stdout == ""
    assert err == f"wrote {out}\n"
    assert out.read_text(encoding="utf-8") == GOLDEN.read_text(encoding="utf-8")
    code, stdout, _ = run_cli("handoff", "render", str(EXAMPLES / "improved.json"))
    assert code == 0
    assert stdout == GOLDEN.read_text(encoding="utf-8")


def test_golden_shows_the_verification_table():
    text = GOLDEN.read_text(encoding="utf-8")
    assert "| score | role | effect | 95% CI | p | n | verdict | method |" in text
    assert "| Refusal | target | +0.111 | [+0.055, +0.168] | 0.0002 | 120 | improved |" in text
    assert "| Factuality | guard | +0.001 | [-0.003, +0.005] | 0.7453 | 120 | non_inferior |" in text


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_renders_the_five_sections_deterministically(outcome):
    doc = load(outcome)
    first = render_narrative(doc)
    reordered = json.loads(json.dumps(doc, sort_keys=True))  # key order in the file must not matter
    assert render_narrative(reordered) == first
    positions = [first.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert first.startswith(f"# bt-flywheel: {outcome} for support-bot\n")
    for step in doc["next_steps"]:
        assert step["title"] in first


def test_render_escapes_table_cells():
    doc = load("improved")
    doc["verification"]["scores"][0]["method"] = "t | bootstrap"
    text = render_narrative(doc)
    assert "| t \\| bootstrap |" in text


def test_render_refuses_an_invalid_handoff(run_cli, tmp_path):
    doc = load("improved")
    doc["outcome"] = "great"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "narrative.md"
    code, stdout, err = run_cli("handoff", "render", str(path), "--out", str(out))
    assert code == 2
    assert err.startswith(f"error: {path}: invalid handoff: $.outcome: 'great' is not one of")
    assert not out.exists()
