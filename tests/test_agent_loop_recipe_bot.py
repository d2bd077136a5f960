"""A scripted agent-style run of the README's loop on a second example project, in another
domain (examples/recipe-bot: a cooking assistant that ignores "I'm allergic to X").

No demo shortcuts: the steps an agent following the skill takes, through the real CLI, in a git
checkout of the example: orient -> ingest -> Discover SQL recipes from references/sql-patterns.md
-> curate with the review queue's labels file -> eval baseline on validation -> one config edit
-> eval train smoke, then validation -> compare -> route decide -> handoff build -> validate -> gate.

After `orient` no command repeats a setting: the project (from the repo's AGENTS.md), the store,
the window (widened by ingest to the data's 14 days), the mode (the goal's `mode: autonomous`
prefix), the ledger and the start time all come from the session orient saved.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "recipe-bot"
SETTINGS_FLAGS = {"--project", "-p", "--store", "--window-days", "--env-file", "--ledger", "--orient", "--mode",
                  "--yes", "-y"}
_FENCE = re.compile(r"^```sql\n(.*?)^```", re.M | re.S)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=agent@example.com", "-c", "user.name=agent", "-C", str(root), *args],
                   check=True, capture_output=True)


def _discover_recipes() -> list[str]:
    text = (REPO / "references" / "sql-patterns.md").read_text()
    section = text.split("## Discover", 1)[1].split("\n## ", 1)[0]
    return [q for q in _FENCE.findall(section) if set(re.findall(r"<([A-Z_]+)>", q)) <= {
        "PROJECT", "DAYS", "SCORE", "SLICE_KEY"}]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "recipe-bot"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".gitignore").write_text(".flywheel/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "recipe-bot")
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    return root


def test_an_agent_runs_the_whole_loop_on_recipe_bot_without_repeating_a_setting(project: Path, run_cli) -> None:
    calls: list[list[str]] = []

    def flywheel(*argv: str, expect: int = 0) -> tuple[str, str]:
        calls.append(list(argv))
        code, out, err = run_cli(*argv)
        assert code == expect, f"flywheel {' '.join(argv)} -> {code}\n{err}"
        return out, err

    # the traces the agent finds (a stand-in for a bt sync pull) and the review queue's labels
    subprocess.run(["python", "generate_traces.py", "--out", "traces.jsonl", "--labels", "labels.jsonl"],
                   check=True, capture_output=True)

    # Orient: project from AGENTS.md, mode from the goal's prefix; the empty store says ingest first
    goal = (project / "goal.txt").read_text().strip()
    info = json.loads(flywheel("orient", goal, "--json")[0])
    assert (info["project"], info["mode"], info["goal"]) == ("recipe-bot", "autonomous", "make allergy handling safe")
    assert info["project_source"].endswith("AGENTS.md:3")
    assert any("flywheel ingest" in h for h in info["hints"])
    session = json.loads((project / ".flywheel" / "session.json").read_text())

    _, err = flywheel("ingest", "traces.jsonl")
    assert "window 14 days" in err
    days = json.loads((project / ".flywheel" / "session.json").read_text())["data_window"]["days"]
    assert days == 14

    # Discover: the skill's own recipes, placeholders filled from the session and the traces
    values = {"PROJECT": "recipe-bot", "DAYS": str(days), "SCORE": "allergen_safe", "SLICE_KEY": "phrasing"}
    recipes = _discover_recipes()
    assert len(recipes) >= 3
    results = []
    for query in recipes:
        text = re.sub(r"<([A-Z_]+)>", lambda m: values[m.group(1)], query)
        results.append((text, json.loads(flywheel("sql", text, "--json")[0])["data"]))
    slice_query, rows = next((q, rows) for q, rows in results if rows and {"avg_score", "slice"} <= set(rows[0]))
    worst = rows[0]
    assert worst["slice"] == "allergic" and worst["avg_score"] < 0.5

    # Improve (dataset): balanced failing/passing traces labeled from the review queue's file
    summary = json.loads(flywheel("curate", "--score", "allergen_safe", "--labeler", "file", "--labels",
                                  "labels.jsonl", "--per-bucket", "50", "--validation-fraction", "0.4",
                                  "--out", "curation", "--dataset", "recipe-bot-allergens", "--json")[0])
    assert summary["project"] == "recipe-bot" and summary["dataset"]["written"] is True
    assert summary["by_split"] == {"train": 60, "validation": 40}

    # Verify: baseline on validation, then one attributable edit, smoke on train, validation once
    flywheel("eval", "eval_recipe_bot.py", "--split", "validation", "--trials", "3", "--name", "baseline", "--silent")
    config = project / "recipe_config.yaml"
    config.write_text(config.read_text().replace('    - "{a}-free"\n', '    - "{a}-free"\n    - "allergic to {a}"\n'))
    smoke = json.loads(flywheel("eval", "eval_recipe_bot.py", "--split", "train", "--first", "20", "--name",
                                "candidate-smoke", "--silent", "--json")[0])
    assert smoke["scores"]["allergen_safe"] > 0.9 and not smoke["errors"]
    _, err = flywheel("eval", "eval_recipe_bot.py", "--split", "validation", "--trials", "3", "--name", "candidate")
    assert "validation look at cand:" in err and "warning" not in err

    flywheel("compare", "baseline", "candidate", "--target", "allergen_safe", "--guard", "on_topic",
             "--margin", "0.1", "--out", "compare.json")
    comparison = json.loads((project / "compare.json").read_text())
    assert comparison["keep"] is True
    target = next(s for s in comparison["scores"] if s["name"] == "allergen_safe")
    decision = json.loads(flywheel("route", "decide", "--comparison", "compare.json",
                                   "--open-finding", "Dairy-free requests phrased 'lactose intolerant' are not checked")[0])
    assert (decision["action"], decision["outcome"]) == ("keep", "improved")
    assert decision["next_steps"][-1]["title"].startswith("Dairy-free")

    # the ledger recorded both validation looks by itself, keyed by the changed files' hash
    ledger = json.loads((project / ".flywheel" / "ledger.json").read_text())
    looks = [look["candidate"] for look in ledger["looks"]]
    assert looks[0].startswith("base:") and looks[1].startswith("cand:")
    assert ledger["looks"][1]["files"] == ["recipe_config.yaml"]
    assert ledger["loops"][0]["candidate"] == looks[1]

    # Exit: the agent writes only its judgement; the numbers in its text come from compare.json
    effect, (lo, hi), n = target["effect"], target["ci"], target["n"]
    (project / "draft.yaml").write_text(f"""\
outcome: improved
severity: high
confidence: {{level: medium, why: "allergen_safe {effect:+.2f} (95% CI [{lo:.2f}, {hi:.2f}], n={n} x 3) on validation; on_topic held within 0.1."}}
summary: Recognising "allergic to X" keeps those users' recipes free of the allergen; on_topic held.
findings:
  - title: Allergies stated as "allergic to X" are ignored
    plane: quality
    severity: high
    route: agent
    evidence: {{summary: "allergen_safe is lowest on the 'allergic' phrasing slice.", queries: [{json.dumps(" ".join(slice_query.split()))}]}}
changes:
  - {{artifact: agent, files: [recipe_config.yaml], description: "Add the 'allergic to {{a}}' pattern.", why_safe: "One line; guard held."}}
next_steps:
  - {{intent: review_change, priority: p1, title: Review the config change, body: "Merge if the diff reads well.", destination: code_review}}
artifacts:
  - {{path: compare.json, kind: comparison}}
  - {{path: curation/summary.json, kind: dataset_summary}}
""")
    built = json.loads(flywheel("handoff", "build", "draft.yaml", "--comparison", "compare.json", "--json")[0])
    assert built["warnings"] == []
    handoff = json.loads((project / "bt-flywheel-summary.json").read_text())
    assert handoff["started_at"] == session["started_at"]  # Orient's time, not the ledger's creation
    assert handoff["mode"] == {"name": "autonomous", "reason": "goal begins 'mode: autonomous'"}
    assert handoff["loops"]["ledger"][0]["candidate"] == looks[1]
    ledger_artifact = next(a for a in handoff["artifacts"] if a["kind"] == "ledger")
    assert ledger_artifact["path"] == "ledger.json" and (project / "ledger.json").is_file()  # copied out of .flywheel/
    flywheel("handoff", "validate", "bt-flywheel-summary.json")
    out, _ = flywheel("gate", "bt-flywheel-summary.json", "--fail-on", "needs_work,blocked,no_convergence")
    assert "pass" in out

    # no setting was repeated after orient
    for argv in calls[1:]:
        assert not SETTINGS_FLAGS & set(argv), argv
