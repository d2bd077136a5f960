"""Plugin packaging: the two plugin manifests agree (drift test) and declare only what Claude Code
honours (it ignored an explicit `agents` array; agents/, skills/ and bin/ are discovered), the
marketplace entry points at this plugin, `/bt-flywheel` is the skill alone (no command of the same
name), the subagents are limited to the tools their job needs, and the real `claude plugin
validate --strict` accepts it when Claude Code is installed (.ci/run installs it from npm). The
validator is run with a temp HOME and HTTP(S)_PROXY on a closed loopback port, so it cannot reach
the network. tests/test_install.py installs the plugin with the same CLI and checks what it
registers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bt_flywheel.skill.export import split_frontmatter

REPO = Path(__file__).resolve().parents[1]


def load(path: str) -> dict:
    return json.loads((REPO / path).read_text(encoding="utf-8"))


def frontmatter(path: str) -> tuple[dict, str]:
    return split_frontmatter((REPO / path).read_text(encoding="utf-8"), source=path)


def tool_list(value: str | list) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    return [part.strip() for part in re.split(r",(?![^(]*\))", value) if part.strip()]


def test_plugin_manifests_do_not_drift() -> None:
    assert load("plugin.json") == load(".claude-plugin/plugin.json")


def test_manifest_names_the_parts_that_exist() -> None:
    manifest = load(".claude-plugin/plugin.json")
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert manifest["name"] == "bt-flywheel"
    assert manifest["version"] == version
    assert (REPO / manifest["skills"] / "bt-flywheel" / "SKILL.md").is_file()
    # Components Claude Code finds by folder; an `agents` list in the manifest was not honoured
    # (`claude plugin details` showed Agents (0)), and a command named like the skill made
    # `/bt-flywheel` ambiguous ("Unknown command" in `claude -p`).
    assert not {"agents", "commands"} & set(manifest)
    assert not (REPO / "commands").exists()
    assert sorted(p.name for p in (REPO / "agents").glob("*.md")) == ["flywheel-analyst.md", "flywheel-judge.md"]
    helper = REPO / "bin" / "flywheel"
    assert os.access(helper, os.X_OK) and "scripts/flywheel" in helper.read_text(encoding="utf-8")


def test_marketplace_lists_this_plugin() -> None:
    market = load(".claude-plugin/marketplace.json")
    manifest = load(".claude-plugin/plugin.json")
    (entry,) = market["plugins"]
    assert entry["name"] == manifest["name"]
    assert entry["version"] == manifest["version"]
    assert (REPO / entry["source"] / ".claude-plugin" / "plugin.json").is_file()
    assert market["owner"]["name"]


def test_the_skill_takes_the_goal_from_its_arguments() -> None:
    """Claude Code appends `ARGUMENTS: <goal>` to a skill without $ARGUMENTS (tests/test_install.py
    sees it in the request); the skill says to pass that goal to orient unchanged."""
    _, body = frontmatter("skills/bt-flywheel/SKILL.md")
    assert "$ARGUMENTS" not in body  # the literal would reach other clients unsubstituted
    assert "`ARGUMENTS:` line" in body and "mode: autonomous` included" in " ".join(body.split())


def test_judge_reads_and_writes_the_export_only() -> None:
    meta, body = frontmatter("agents/flywheel-judge.md")
    assert meta["name"] == "flywheel-judge"
    assert tool_list(meta["tools"]) == ["Read", "Write"]
    for needle in ("flywheel label export", "flywheel label apply", "rubric", "never edits code"):
        assert needle in meta["description"] + body
    assert "bt-flywheel-labels/v1" in body


def test_analyst_is_read_only() -> None:
    meta, body = frontmatter("agents/flywheel-analyst.md")
    assert meta["name"] == "flywheel-analyst"
    tools = tool_list(meta["tools"])
    assert {"Read", "Grep"} <= set(tools)
    assert not {"Write", "Edit", "MultiEdit", "NotebookEdit"} & set(tools)
    bash = [t for t in tools if t.startswith("Bash")]
    assert bash, "the analyst needs Bash for SQL and trace views"
    for rule in bash:
        assert re.fullmatch(r"Bash\((scripts/flywheel sql|flywheel sql|bt sql|bt view):\*\)", rule), rule


# ------------------------------------------------------------------ scripts/flywheel's private venv

def _helper(env_extra: dict[str, str], tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "CLAUDE_"))}
    env.update({"FLYWHEEL_PYTHON": sys._base_executable, "PIP_NO_INDEX": "1", **env_extra})
    return subprocess.run([str(REPO / "scripts" / "flywheel"), *argv], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)


def test_helper_uses_the_venv_in_claude_plugin_data(tmp_path: Path) -> None:
    """With CLAUDE_PLUGIN_DATA set (hooks, MCP servers) the venv lives there, not in the versioned
    plugin folder; a venv built for this copy is used as is."""
    from tests.fakes.claude_cli import ready_venv

    ready_venv(tmp_path / "data" / "venv", REPO)
    proc = _helper({"CLAUDE_PLUGIN_DATA": str(tmp_path / "data")}, tmp_path, "orient", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "first use" not in proc.stderr and json.loads(proc.stdout)["mode"] == "interactive"


def test_helper_prefers_uv_and_falls_back_to_pip(tmp_path: Path) -> None:
    """A stand-in `uv` (a script that logs its arguments and fails) is tried first, pip next. The
    venv is one built for another copy of the plugin (it cannot import this one), so only the
    package is reinstalled. Offline (PIP_NO_INDEX) pip cannot install either, so the helper fails,
    saying so, and exits non-zero instead of running a half-built environment."""
    from tests.fakes.claude_cli import ready_venv

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "uv.log"
    (bin_dir / "uv").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 1\n', encoding="utf-8")
    (bin_dir / "uv").chmod(0o755)
    venv = ready_venv(tmp_path / "data" / "venv", None)
    proc = _helper({"CLAUDE_PLUGIN_DATA": str(tmp_path / "data"), "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"},
                   tmp_path, "--help")
    assert proc.returncode != 0
    assert f"installing this copy of bt-flywheel into {venv} (uv)" in proc.stderr
    assert "uv failed (above); trying pip" in proc.stderr
    assert log.read_text(encoding="utf-8").startswith(f"pip install --quiet --python {venv}/bin/python -e {REPO}")
    assert "environment ready" not in proc.stderr


# ------------------------------------------------------------------------- the real validator

def _claude() -> str | None:
    return shutil.which("claude")


def _validate(target: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update({"HOME": str(home), "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
                "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_COLOR": "1"})
    return subprocess.run([_claude(), "plugin", "validate", "--strict", str(target)], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


needs_claude = pytest.mark.skipif(_claude() is None,
                                  reason="Claude Code not installed (npm i @anthropic-ai/claude-code; .ci/run does)")


@needs_claude
@pytest.mark.parametrize("target", [".", ".claude-plugin/plugin.json"])
def test_claude_plugin_validate_strict(target: str, tmp_path: Path) -> None:
    proc = _validate(REPO / target, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation passed" in proc.stdout


@needs_claude
def test_claude_plugin_validate_catches_a_broken_copy(tmp_path: Path) -> None:
    """The same validator fails a copy with a broken agent, so its pass above means something."""
    copy = tmp_path / "plugin"
    for part in (".claude-plugin", "agents", "skills"):
        shutil.copytree(REPO / part, copy / part)
    (copy / ".claude-plugin" / "marketplace.json").unlink()
    (copy / "agents" / "flywheel-judge.md").write_text("---\nname: [unclosed\n---\nbody\n", encoding="utf-8")
    proc = _validate(copy, tmp_path)
    assert proc.returncode != 0
    assert "flywheel-judge.md" in proc.stdout + proc.stderr
