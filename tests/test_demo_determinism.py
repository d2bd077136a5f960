"""`flywheel demo` as a CI job runs it, and its determinism: one demo at the smallest size runs in a
real process with stdin closed and FLYWHEEL_AUTONOMOUS=true (it must never wait for input); the
same command run again in the same place, in-process (so in another process, with its own hash
seed), must give the same handoff content; another seed must find other traces. Local backend,
temp directories, no network. The default-size demo is checked in tests/test_demo.py."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SEED, SPANS = "7", "800"   # the properties do not depend on size: the smallest demo size


@pytest.fixture(scope="module")
def autonomous_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, subprocess.CompletedProcess[str]]:
    """(out dir, its handoff as the process wrote it, the finished process)."""
    work = tmp_path_factory.mktemp("autonomous")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINTRUST_", "OPENAI_", "FLYWHEEL_"))}
    env.pop("CI", None)
    env["FLYWHEEL_AUTONOMOUS"] = "true"
    proc = subprocess.run([sys.executable, "-m", "bt_flywheel", "demo", "--out-dir", str(work / "ci"),
                           "--seed", SEED, "--spans", SPANS],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, env=env, cwd=work)
    summary = work / "ci" / "bt-flywheel-summary.json"
    handoff = json.loads(summary.read_text()) if summary.is_file() else {}
    return work / "ci", handoff, proc


def _comparable(handoff: dict) -> dict:
    """The handoff minus what legitimately differs between runs (see bt_flywheel.demo.run docstring)."""
    doc = copy.deepcopy(handoff)
    doc.pop("started_at")
    doc.pop("finished_at")
    time_dependent = set(doc["x-demo"]["time_dependent_artifacts"])
    for artifact in doc["artifacts"]:
        if artifact["path"] in time_dependent:
            artifact.pop("sha256")
            artifact.pop("bytes", None)
    return doc


def _run_demo(run_cli, out: Path, *extra: str) -> dict:
    code, _, stderr = run_cli("demo", "--out", str(out), *extra)
    assert code == 0, stderr
    return json.loads((out / "bt-flywheel-summary.json").read_text())


def test_autonomous_demo_never_waits_for_input(autonomous_run) -> None:
    out, handoff, proc = autonomous_run
    assert proc.returncode == 0, proc.stderr
    assert "verdict: improved" in proc.stdout
    assert handoff["outcome"] == "improved" and (out / "bt-flywheel-summary.json").is_file()


def test_same_seed_gives_the_same_handoff_content(run_cli, autonomous_run, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out, first, proc = autonomous_run
    assert proc.returncode == 0, proc.stderr
    monkeypatch.setenv("FLYWHEEL_AUTONOMOUS", "true")
    second = _run_demo(run_cli, out, "--seed", SEED, "--spans", SPANS)   # same command again, same place
    assert first["run_id"] == second["run_id"] == "fw-demo-improved-seed7"
    assert _comparable(first) == _comparable(second)
    # only timestamped inputs differ; the edit, its diff and the curation summary are byte-identical
    stable = {a["path"]: a["sha256"] for a in first["artifacts"]
              if a["path"] not in first["x-demo"]["time_dependent_artifacts"]}
    assert {"loops/loop-1/agent_config.yaml", "loops/loop-1/agent_config.diff",
            "dataset/summary.json"} <= set(stable)
    other = _run_demo(run_cli, tmp_path / "c", "--seed", "12", "--spans", SPANS)
    assert other["findings"][0]["evidence"]["trace_ids"] != first["findings"][0]["evidence"]["trace_ids"]
