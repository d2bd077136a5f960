"""The skill text and `flywheel skill export`: the Agent Skills rules (frontmatter keys, name =
folder, lengths), every referenced file exists with exact case, and the exported folder is
self-contained (its CLI runs from the bundled package). The real `skills-ref validate` runs
when it is installed (.ci/run installs it from npm); it reads local files only."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bt_flywheel.core.mode import resolve_mode
from bt_flywheel.skill.export import (
    estimate_tokens,
    export_skill,
    split_frontmatter,
    validate_skill_dir,
)

REPO = Path(__file__).resolve().parents[1]
SKILL_DIR = REPO / "skills" / "bt-flywheel"
SKILL_MD = SKILL_DIR / "SKILL.md"
REFERENCES = ("sql-patterns.md", "view-patterns.md", "eval-patterns.md", "curation-patterns.md", "stats.md",
              "functions-scorers.md", "routing.md", "handoff-templates.md", "topics-patterns.md", "sync-patterns.md")


def skill_text() -> str:
    return SKILL_MD.read_text(encoding="utf-8")


def offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINTRUST_", "OPENAI_", "ANTHROPIC_"))}
    env.update({"HOME": str(home), "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
                "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_COLOR": "1"})
    return env


# ------------------------------------------------------------------------------- the skill text

def test_skill_in_repo_passes_the_agent_skills_rules() -> None:
    assert validate_skill_dir(SKILL_DIR, resource_root=REPO) == []


def test_frontmatter_is_name_description_and_spec_keys_only() -> None:
    meta, body = split_frontmatter(skill_text())
    assert meta["name"] == SKILL_DIR.name == "bt-flywheel"
    assert set(meta) <= {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}
    description = meta["description"]
    assert len(description) <= 1024
    assert "Use when" in description  # says when to trigger, not only what it does
    for word in ("Braintrust", "traces", "handoff", "FLYWHEEL_AUTONOMOUS"):
        assert word in description


def test_skill_is_short() -> None:
    text = skill_text()
    assert text.count("\n") < 500
    assert estimate_tokens(text) < 5000
    assert text.count("MUST") <= 1  # explain why instead of piling up MUSTs


def test_five_phases_in_order_then_the_handoff() -> None:
    text = skill_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    phases = ["Phase 1 — Orient", "Phase 2 — Discover", "Phase 3 — Diagnose", "Phase 4 — Improve",
              "Phase 5 — Verify & Decide", "Exit handoff"]
    positions = [next(i for i, h in enumerate(headings) if name in h) for name in phases]
    assert positions == sorted(positions)


def test_each_phase_says_what_to_run_and_when_to_load_its_reference() -> None:
    text = skill_text()
    sections = text.split("\n## ")
    by_title = {s.splitlines()[0]: s for s in sections[1:]}

    def section(name: str) -> str:
        return " ".join(next(body for title, body in by_title.items() if name in title).split())

    assert "scripts/flywheel orient" in section("Orient")
    assert "sql-patterns.md" in section("Discover") and "view-patterns.md" in section("Discover")
    assert "topics-patterns.md" in section("Discover") and "sync-patterns.md" in section("Orient")
    assert "routing.md" in section("Diagnose")
    improve = section("Improve")
    for needle in ("curation-patterns.md", "functions-scorers.md", "scripts/flywheel curate", "label export",
                   "label apply", "flywheel-judge"):
        assert needle in improve
    verify = section("Verify")
    for needle in ("eval-patterns.md", "stats.md", "scripts/flywheel eval", "scripts/flywheel compare",
                   "scripts/flywheel route", "no_convergence"):
        assert needle in verify
    exit_ = section("Exit handoff")
    for needle in ("handoff-templates.md", "handoff build", "handoff validate", "scripts/flywheel gate",
                   "no separate render step"):
        assert needle in exit_
    assert "handoff render" not in exit_  # build already writes the narrative
    for name in REFERENCES:
        assert f"](../../references/{name})" in text, f"SKILL.md does not link references/{name}"


@pytest.mark.parametrize(("environ", "goal", "expected"), [
    ({}, None, "interactive"),                                    # a tool shell without a TTY
    ({"CI": "true"}, None, "autonomous"),
    ({"FLYWHEEL_AUTONOMOUS": "1"}, None, "autonomous"),
    ({"FLYWHEEL_AUTONOMOUS": "false", "CI": "true"}, None, "interactive"),
    ({}, "mode: autonomous improve refusals", "autonomous"),
])
def test_modes_described_in_the_skill_match_the_code(environ: dict, goal: str | None, expected: str) -> None:
    text = skill_text()
    for phrase in ("`--mode autonomous`", "begins `mode: autonomous`", "`FLYWHEEL_AUTONOMOUS` is",
                   "`CI` is truthy", "`FLYWHEEL_AUTONOMOUS=false` overrides `CI=true`", "does **not** make"):
        assert phrase in text
    assert resolve_mode(goal=goal, environ=environ).name == expected


def test_skill_uses_claude_code_paths_not_guesses() -> None:
    """In Claude Code the helper is named by ${CLAUDE_PLUGIN_ROOT}, which it fills in (see
    tests/test_install.py), instead of asking the agent to work out where the plugin lives."""
    text = skill_text()
    assert "`${CLAUDE_PLUGIN_ROOT}/scripts/flywheel`" in text
    assert "absolute path" in text and "never by a path relative to the repository" in " ".join(text.split())


def test_loop_counting_and_guard_rows_are_explained() -> None:
    text = " ".join(skill_text().split())
    assert "**What counts as a loop.**" in text
    for needle in ("Measurement, dataset and instrumentation steps", "it records nothing",
                   "measure the baseline again", "3-loop limit"):
        assert needle in text
    assert "A guard needs rows too" in text and "[stats.md](../../references/stats.md)" in text


def test_guard_row_table_in_stats_md_is_what_required_n_says() -> None:
    from bt_flywheel.verify.stats import bound_required_n as required_n  # the guard's own bound

    text = (REPO / "references" / "stats.md").read_text(encoding="utf-8")
    header = re.search(r"^\| sd of row differences \|(.*)$", text, re.M)
    margins = [float(m) for m in re.findall(r"margin ([0-9.]+)", header.group(1))]
    rows = re.findall(r"^\| (0\.[0-9]+) \| ([0-9]+) \| ([0-9]+) \| ([0-9]+) \|$", text, re.M)
    assert len(margins) == 3 and len(rows) == 3
    for sd, *cells in rows:
        assert [int(c) for c in cells] == [required_n(m, float(sd)) for m in margins], sd


# ----------------------------------------------------------------------------------- validator

def _skill(tmp_path: Path, name: str = "demo-skill", front: str | None = None, body: str = "# Demo\n") -> Path:
    folder = tmp_path / name
    (folder / "agents").mkdir(parents=True)
    front = front if front is not None else f"name: {name}\ndescription: Does a demo. Use when testing."
    (folder / "SKILL.md").write_text(f"---\n{front}\n---\n{body}", encoding="utf-8")
    (folder / "agents" / "openai.yaml").write_text(
        'interface:\n  display_name: "Demo"\n  short_description: "A demo skill for the validator tests"\n'
        '  default_prompt: "Use $demo-skill."\npolicy:\n  allow_implicit_invocation: true\n', encoding="utf-8")
    return folder


def test_validator_accepts_a_minimal_skill(tmp_path: Path) -> None:
    assert validate_skill_dir(_skill(tmp_path)) == []


@pytest.mark.parametrize(("front", "body", "expected"), [
    ("name: other-name\ndescription: x", "", "does not match the folder name"),
    ("name: demo-skill\ndescription: x\nversion: 1", "", "keys not allowed"),
    ("name: demo-skill", "", "description: missing"),
    ("name: demo-skill\ndescription: " + "x" * 1025, "", "1025 characters"),
    ("name: demo-skill\ndescription: use <when>", "", "contains < or >"),
    ("name: Demo_Skill\ndescription: x", "", "lowercase letters"),
    ("name: demo-skill\ndescription: x", "See [the reference](REFERENCE.md).\n", "REFERENCE.md"),
    ("name: demo-skill\ndescription: x", "Run `scripts/missing.py`.\n", "scripts/missing.py"),
    ("name: demo-skill\ndescription: x", "line\n" * 520, "lines"),
])
def test_validator_names_each_broken_rule(tmp_path: Path, front: str, body: str, expected: str) -> None:
    folder = _skill(tmp_path, front=front, body=body)
    (folder / "reference.md").write_text("the file is lower case\n", encoding="utf-8")
    problems = validate_skill_dir(folder)
    assert any(expected in p for p in problems), problems


def _plugin(tmp_path: Path, body: str) -> Path:
    """A minimal plugin layout: <root>/.claude-plugin/plugin.json and <root>/skills/demo-skill."""
    root = tmp_path / "plugin"
    (root / ".claude-plugin").mkdir(parents=True)
    (root / ".claude-plugin" / "plugin.json").write_text('{"name": "demo"}', encoding="utf-8")
    (root / "scripts").mkdir()
    (root / "scripts" / "tool").write_text("#!/bin/sh\n", encoding="utf-8")
    return _skill(root / "skills", body=body)


def test_validator_checks_a_skill_inside_a_plugin_against_the_plugin_root(tmp_path: Path) -> None:
    """Where Claude Code installs the plugin, SKILL.md's `scripts/...` and ${CLAUDE_PLUGIN_ROOT}
    paths point at the plugin root; validating the skill folder in place must look there."""
    folder = _plugin(tmp_path, "Run `${CLAUDE_PLUGIN_ROOT}/scripts/tool`, also `scripts/tool`.\n")
    assert validate_skill_dir(folder) == []
    (tmp_path / "plugin" / "scripts" / "tool").unlink()
    problems = validate_skill_dir(folder)
    assert any("${CLAUDE_PLUGIN_ROOT}/scripts/tool, which does not exist" in p for p in problems), problems
    assert any("`scripts/tool`, which does not exist" in p for p in problems), problems


def test_validator_rejects_plugin_paths_in_a_standalone_skill(tmp_path: Path) -> None:
    folder = _skill(tmp_path, body="Run `${CLAUDE_PLUGIN_ROOT}/scripts/tool`.\n")
    assert any("only a Claude Code plugin fills in" in p for p in validate_skill_dir(folder))


def test_export_refuses_when_the_claude_code_line_is_gone(tmp_path: Path) -> None:
    from bt_flywheel.core.errors import CheckFailed
    from bt_flywheel.skill.export import rewrite_links

    with pytest.raises(CheckFailed, match="_EXPORT_LINES"):
        rewrite_links(skill_text().replace("on PATH as `flywheel` while", "on PATH while"))


def test_validator_checks_openai_yaml(tmp_path: Path) -> None:
    folder = _skill(tmp_path)
    (folder / "agents" / "openai.yaml").write_text('interface:\n  display_name: "Demo"\nextra: 1\n', encoding="utf-8")
    problems = validate_skill_dir(folder)
    assert any("short_description: missing" in p for p in problems)
    assert any("unknown top-level key 'extra'" in p for p in problems)


def test_openai_yaml_of_the_skill() -> None:
    import yaml

    data = yaml.safe_load((SKILL_DIR / "agents" / "openai.yaml").read_text(encoding="utf-8"))
    assert data["interface"]["display_name"] == "bt-flywheel"
    assert 25 <= len(data["interface"]["short_description"]) <= 64
    assert "$bt-flywheel" in data["interface"]["default_prompt"]
    assert data["policy"]["allow_implicit_invocation"] is True


# -------------------------------------------------------------------------------------- export

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_skill(tmp_path_factory.mktemp("export")).path


def test_export_is_a_valid_self_contained_skill(exported: Path) -> None:
    assert exported.name == "bt-flywheel"
    assert validate_skill_dir(exported) == []
    text = (exported / "SKILL.md").read_text(encoding="utf-8")
    assert "../../" not in text
    assert "](references/sql-patterns.md)" in text and "](schemas/handoff.schema.json)" in text
    for name in REFERENCES:
        assert (exported / "references" / name).is_file()
    for name in ("handoff.schema.json", "labels.schema.json"):
        assert (exported / "schemas" / name).is_file()
    assert (exported / "agents" / "openai.yaml").is_file()
    assert os.access(exported / "scripts" / "flywheel", os.X_OK)
    assert (exported / "scripts" / "package" / "pyproject.toml").is_file()
    # Claude Code's ${...} paths mean nothing to other clients: the helper is the skill's own
    # scripts/flywheel, and the line about the plugin's PATH entry is gone
    assert "${CLAUDE_" not in text and "plugin is enabled" not in text
    assert "- The helper CLI is `scripts/flywheel` in this skill's folder" in text
    # otherwise the body is the plugin's, line for line
    assert len(text.splitlines()) == len(skill_text().splitlines())
    changed = [(a, b) for a, b in zip(skill_text().splitlines(), text.splitlines(), strict=True) if a != b]
    assert all("../../" in a or "${CLAUDE_" in a for a, _ in changed), changed


def test_export_refuses_to_overwrite_without_force(exported: Path, run_cli) -> None:
    code, out, err = run_cli("skill", "export", str(exported))
    assert code == 2
    assert err.strip() == f"error: {exported}: already exists and is not empty (hint: pass --force to replace it)"
    marker = exported / "stale.txt"
    marker.write_text("old", encoding="utf-8")
    code, out, err = run_cli("skill", "export", str(exported), "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(exported)
    assert not marker.exists()


def test_export_into_a_parent_folder_creates_bt_flywheel(tmp_path: Path, run_cli) -> None:
    code, out, err = run_cli("skill", "export", str(tmp_path / "skills"))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "skills" / "bt-flywheel")
    code, out, err = run_cli("skill", "validate", out.strip())
    assert (code, out) == (0, "")


def test_cli_validate_lists_problems_and_exits_1(tmp_path: Path, run_cli) -> None:
    folder = _skill(tmp_path, front="name: wrong\ndescription: x")
    code, out, err = run_cli("skill", "validate", str(folder))
    assert code == 1
    assert "frontmatter.name: 'wrong' does not match the folder name 'demo-skill'" in out


def test_exported_package_runs_without_the_checkout(exported: Path, tmp_path: Path) -> None:
    """The bundled package is complete: import it from the export (not the checkout) and
    validate a handoff, which needs the schema the package finds next to itself."""
    handoff = tmp_path / "h.json"
    shutil.copy(REPO / "examples" / "handoffs" / "improved.json", handoff)
    src = exported / "scripts" / "package" / "src"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bt_flywheel, bt_flywheel.cli as c; "
            "assert bt_flywheel.__file__.startswith(sys.argv[1]), bt_flywheel.__file__; "
            "sys.exit(c.main(['handoff', 'validate', sys.argv[2]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(handoff)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_exported_entry_script_runs(exported: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FLYWHEEL_PYTHON": sys.executable}
    proc = subprocess.run([str(exported / "scripts" / "flywheel"), "orient", "--json"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "interactive"


# ------------------------------------------------------------------------- the real validator

def _skills_ref() -> str | None:
    return shutil.which("skills-ref")


@pytest.mark.skipif(_skills_ref() is None, reason="skills-ref not installed (npm i skills-ref; .ci/run does)")
@pytest.mark.parametrize("which", ["repo", "export"])
def test_skills_ref_validate(which: str, exported: Path, tmp_path: Path) -> None:
    folder = SKILL_DIR if which == "repo" else exported
    proc = subprocess.run([_skills_ref(), "validate", str(folder)], capture_output=True, text=True, timeout=120,
                          env=offline_env(tmp_path), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid skill" in proc.stdout


@pytest.mark.skipif(_skills_ref() is None, reason="skills-ref not installed (npm i skills-ref; .ci/run does)")
def test_skills_ref_rejects_a_name_mismatch(tmp_path: Path) -> None:
    """The real validator can fail on what ours catches, so its pass above means something."""
    folder = _skill(tmp_path, front="name: not-the-folder\ndescription: x")
    proc = subprocess.run([_skills_ref(), "validate", str(folder)], capture_output=True, text=True, timeout=120,
                          env=offline_env(tmp_path), stdin=subprocess.DEVNULL)
    assert proc.returncode != 0


# ------------------------------------------------------------------------------- evals/ prompts

def test_trigger_prompts_cover_both_sides() -> None:
    cases = json.loads((REPO / "evals" / "triggers.json").read_text(encoding="utf-8"))
    assert all(set(c) == {"query", "should_trigger"} and isinstance(c["should_trigger"], bool) for c in cases)
    assert len({c["query"] for c in cases}) == len(cases)
    assert sum(c["should_trigger"] for c in cases) >= 5 and sum(not c["should_trigger"] for c in cases) >= 5


def test_behaviour_prompts_agree_with_the_mode_rules_and_the_cli() -> None:
    from bt_flywheel.cli import build_parser

    data = json.loads((REPO / "evals" / "behaviour.json").read_text(encoding="utf-8"))
    assert data["skill_name"] == "bt-flywheel"
    parser = build_parser()
    commands = next(a.choices for a in parser._actions if a.dest == "command")
    ids = [case["id"] for case in data["evals"]]
    assert len(set(ids)) == len(ids)
    for case in data["evals"]:
        assert case["prompt"] and case["expectations"], case["id"]
        mode = resolve_mode(goal=case.get("goal"), environ=case["env"])
        assert mode.name == case["expected_mode"], case["id"]
        for expectation in case["expectations"]:
            for name in re.findall(r"scripts/flywheel (\w+)", expectation):
                assert name in commands, f"{case['id']}: `flywheel {name}` does not exist"
