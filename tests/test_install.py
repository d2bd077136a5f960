"""The plugin as Claude Code installs it, checked with the real `claude` CLI (npm
@anthropic-ai/claude-code; .ci/run installs it) in a throwaway HOME, offline:

- `claude plugin marketplace add <git clone>` and `claude plugin install bt-flywheel@bt-flywheel`
  succeed, and `claude plugin details` lists the skill and both agents, and nothing named twice;
- the installed helper runs from an unrelated directory with stdin closed, uses the private venv
  in Claude Code's per-plugin data folder (which `claude plugin uninstall` then removes, so it is
  that folder), and `skill validate` passes on the installed skill in place and on an export made
  by the installed copy; `skills-ref validate` agrees on both;
- `claude -p "/bt-flywheel <goal>"` resolves to the skill and sends its text with
  ${CLAUDE_PLUGIN_ROOT} filled in and the goal as `ARGUMENTS:`. The model behind it is a loopback
  stand-in for Anthropic's Messages API (tests/fakes/loopback.FakeAnthropic): no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.claude_cli import (
    PLUGIN_ID,
    checkout_copy,
    claude,
    data_dir,
    offline_env,
    plain_path,
    ready_data_venv,
    run,
)
from tests.fakes.loopback import FakeAnthropic

pytestmark = pytest.mark.skipif(claude() is None,
                                reason="Claude Code not installed (npm i @anthropic-ai/claude-code; .ci/run does)")


@dataclass
class Installed:
    home: Path
    clone: Path
    path: Path          # installPath from `claude plugin list --json`
    elsewhere: Path     # an unrelated working directory
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    home, elsewhere = base / "home", base / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    clone = checkout_copy(base / "bt-flywheel")
    env = offline_env(home, path=plain_path())
    for argv in (["plugin", "marketplace", "add", str(clone)], ["plugin", "install", PLUGIN_ID]):
        proc = run([claude(), *argv], env, elsewhere)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run([claude(), "plugin", "list", "--json"], env, elsewhere)
    (entry,) = [p for p in json.loads(proc.stdout) if p["id"] == PLUGIN_ID]
    assert entry["enabled"] is True
    path = Path(entry["installPath"])
    assert path.is_relative_to(home) and path != clone
    ready_data_venv(home, path)
    return Installed(home, clone, path, elsewhere, env)


def test_details_lists_the_skill_and_both_agents(installed: Installed) -> None:
    proc = run([claude(), "plugin", "details", PLUGIN_ID], installed.env, installed.elsewhere)
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^[ \t]+(Skills|Agents|Hooks|MCP servers) \((\d+)\)[ \t]*(.*)$", proc.stdout, re.M)
    inventory = {kind: (int(n), sorted(filter(None, re.split(r",\s*", names.strip())))) for kind, n, names in rows}
    assert inventory["Skills"] == (1, ["bt-flywheel"]), proc.stdout
    assert inventory["Agents"] == (2, ["flywheel-analyst", "flywheel-judge"]), proc.stdout
    assert inventory["Hooks"] == (0, []) and inventory["MCP servers"] == (0, [])


def test_installed_helper_runs_from_elsewhere_with_stdin_closed(installed: Installed, tmp_path: Path) -> None:
    helper = installed.path / "scripts" / "flywheel"
    proc = run([str(helper), "orient", "--json"], installed.env, installed.elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "interactive"
    assert "first use" not in proc.stderr  # it found the venv in the plugin's data folder
    # bin/flywheel is the same helper (Claude Code puts bin/ on the Bash tool's PATH)
    env = dict(installed.env, PATH=f"{installed.path / 'bin'}{os.pathsep}{installed.env['PATH']}")
    proc = run(["flywheel", "skill", "validate", str(installed.path / "skills" / "bt-flywheel")], env,
               installed.elsewhere)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr
    # the export is made by the installed copy (its package finds its own plugin root)
    proc = run([str(helper), "skill", "export", str(tmp_path / "skills"), "--json"], installed.env,
               installed.elsewhere)
    assert proc.returncode == 0, proc.stderr
    exported = json.loads(proc.stdout)
    assert exported["source"] == str(installed.path)
    proc = run([str(helper), "skill", "validate", exported["path"]], installed.env, installed.elsewhere)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr
    skills_ref = shutil.which("skills-ref")
    if skills_ref:  # npm skills-ref, also installed by .ci/run
        for folder in (installed.path / "skills" / "bt-flywheel", Path(exported["path"])):
            proc = run([skills_ref, "validate", str(folder)], installed.env, installed.elsewhere)
            assert proc.returncode == 0 and "Valid skill" in proc.stdout, proc.stdout + proc.stderr


def test_slash_command_sends_the_skill_with_paths_filled_in(installed: Installed) -> None:
    goal = "mode: autonomous improve refusal handling"
    with FakeAnthropic() as api:
        env = offline_env(installed.home, api_url=api.url, path=installed.env["PATH"])
        proc = run([claude(), "-p", f"/bt-flywheel {goal}", "--output-format", "json"], env, installed.elsewhere)
        requests = api.main_requests()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["is_error"] is False and result["result"] == "done", result
    assert "Unknown command" not in proc.stdout
    sent = json.dumps(requests[0])
    texts = [part.get("text", "") for m in requests[0]["messages"] if isinstance(m["content"], list)
             for part in m["content"]]
    skill = next(t for t in texts if t.startswith("Base directory for this skill:"))
    assert skill.rstrip().endswith(f"ARGUMENTS: {goal}")
    assert "${CLAUDE_" not in skill and "One turn of the flywheel" in skill
    (helper,) = set(re.findall(r"- The helper CLI is `([^`]+)`", skill))
    assert helper.endswith("/scripts/flywheel") and os.access(helper, os.X_OK), helper
    # both subagents are offered to the model under the plugin's namespace
    assert "bt-flywheel:flywheel-judge" in sent and "bt-flywheel:flywheel-analyst" in sent


def test_uninstall_removes_the_data_folder_the_helper_used(installed: Installed) -> None:
    """Runs last: the helper's venv lives in the folder Claude Code owns for this plugin."""
    venv = data_dir(installed.home) / "venv"
    assert (venv / "bin" / "python").exists()
    proc = run([claude(), "plugin", "uninstall", PLUGIN_ID], installed.env, installed.elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not data_dir(installed.home).exists()
