"""Modes (DESIGN.md §6), settings precedence (flags > env > .env > .bt/config.json > defaults)
and what `flywheel orient --json` reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from bt_flywheel.core.config import DEFAULT_APP_URL, DEFAULT_GOAL, load_settings
from bt_flywheel.core.errors import ConfigError, UsageError
from bt_flywheel.core.mode import resolve_mode

# ------------------------------------------------------------------ mode rules, table-driven

# flag, goal, environment, expected mode, words the reason must contain
MODE_TABLE = [
    (None, None, {}, "interactive", "no autonomous signal"),
    ("autonomous", None, {}, "autonomous", "--mode autonomous"),
    ("interactive", None, {"CI": "true", "FLYWHEEL_AUTONOMOUS": "1"}, "interactive", "--mode interactive"),
    (None, "mode: autonomous improve refusals", {}, "autonomous", "goal begins 'mode: autonomous'"),
    (None, "  Mode:Autonomous, fix it", {}, "autonomous", "goal begins"),
    (None, "improve refusals in mode: autonomous", {}, "interactive", "no autonomous signal"),
    (None, "mode: autonomous", {"FLYWHEEL_AUTONOMOUS": "false"}, "autonomous", "goal begins"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "1"}, "autonomous", "FLYWHEEL_AUTONOMOUS=1"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "true"}, "autonomous", "FLYWHEEL_AUTONOMOUS=true"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "yes"}, "autonomous", "FLYWHEEL_AUTONOMOUS=yes"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "on"}, "autonomous", "FLYWHEEL_AUTONOMOUS=on"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "TRUE"}, "autonomous", "FLYWHEEL_AUTONOMOUS=TRUE"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": " Yes "}, "autonomous", "FLYWHEEL_AUTONOMOUS"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "0"}, "interactive", "FLYWHEEL_AUTONOMOUS=0"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "false"}, "interactive", "FLYWHEEL_AUTONOMOUS=false"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "no"}, "interactive", "FLYWHEEL_AUTONOMOUS=no"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "off"}, "interactive", "FLYWHEEL_AUTONOMOUS=off"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": "maybe"}, "interactive", "no autonomous signal"),
    (None, None, {"FLYWHEEL_AUTONOMOUS": ""}, "interactive", "no autonomous signal"),
    (None, None, {"CI": "true"}, "autonomous", "CI=true"),
    (None, None, {"CI": "1"}, "autonomous", "CI=1"),
    (None, None, {"CI": "false"}, "interactive", "no autonomous signal"),
    (None, None, {"CI": "true", "FLYWHEEL_AUTONOMOUS": "false"}, "interactive", "FLYWHEEL_AUTONOMOUS=false overrides CI"),
    (None, None, {"CI": "1", "FLYWHEEL_AUTONOMOUS": "0"}, "interactive", "overrides CI"),
    (None, None, {"CI": "true", "FLYWHEEL_AUTONOMOUS": "maybe"}, "autonomous", "CI=true"),
    # things that are NOT signals
    (None, None, {"TERM": "dumb", "GITHUB_ACTIONS": "true", "FLYWHEEL_MODE": "autonomous"}, "interactive",
     "a non-TTY stdin is not one"),
]


@pytest.mark.parametrize("flag,goal,env,expected,reason", MODE_TABLE)
def test_mode_rules(flag, goal, env, expected, reason):
    mode = resolve_mode(flag=flag, goal=goal, environ=env)
    assert mode.name == expected
    assert mode.autonomous is (expected == "autonomous")
    assert reason in mode.reason


def test_mode_reason_does_not_claim_an_override_without_ci():
    mode = resolve_mode(environ={"FLYWHEEL_AUTONOMOUS": "false"})
    assert mode.reason == "FLYWHEEL_AUTONOMOUS=false"


def test_mode_unknown_flag_is_a_usage_error():
    with pytest.raises(UsageError, match="--mode: expected autonomous or interactive, got 'auto'"):
        resolve_mode(flag="auto", environ={})


def test_mode_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_AUTONOMOUS", "on")
    assert resolve_mode().name == "autonomous"


def _orient_subprocess(cwd: Path, extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`flywheel orient --json` in a fresh process whose stdin is /dev/null (not a TTY)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BRAINTRUST_", "FLYWHEEL_", "OPENAI_")) and k != "CI"}
    env.update(extra_env)
    return subprocess.run([sys.executable, "-m", "bt_flywheel", "orient", "--json", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_non_tty_stdin_is_not_autonomous(tmp_path):
    proc = _orient_subprocess(tmp_path, {})
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["mode"], info["mode_reason"]) == ("interactive", "no autonomous signal (a non-TTY stdin is not one)")
    # the same process shape does go autonomous when a real signal is present
    proc = _orient_subprocess(tmp_path, {"FLYWHEEL_AUTONOMOUS": "true"})
    assert json.loads(proc.stdout)["mode"] == "autonomous"


# ------------------------------------------------------------------ settings precedence

def _layers(tmp_path: Path, *, bt: str | None = None, dotenv: str | None = None) -> None:
    if bt is not None:
        (tmp_path / ".bt").mkdir(exist_ok=True)
        (tmp_path / ".bt" / "config.json").write_text(json.dumps({"project": bt, "org": "acme"}))
    if dotenv is not None:
        (tmp_path / ".env").write_text(f"FLYWHEEL_PROJECT={dotenv}\n")


# layers present -> expected project and its source
PRECEDENCE = [
    ({}, None, "unset"),
    ({"bt": "from-bt"}, "from-bt", ".bt/config.json:project"),
    ({"bt": "from-bt", "dotenv": "from-dotenv"}, "from-dotenv", ".env:FLYWHEEL_PROJECT"),
    ({"bt": "from-bt", "dotenv": "from-dotenv", "env": "from-env"}, "from-env", "env:FLYWHEEL_PROJECT"),
    ({"bt": "from-bt", "dotenv": "from-dotenv", "env": "from-env", "flag": "from-flag"}, "from-flag", "flag"),
    ({"bt": "from-bt", "flag": "from-flag"}, "from-flag", "flag"),
    ({"dotenv": "from-dotenv", "flag": "from-flag"}, "from-flag", "flag"),
    ({"bt": "from-bt", "env": "from-env"}, "from-env", "env:FLYWHEEL_PROJECT"),
]


@pytest.mark.parametrize("layers,expected,source", PRECEDENCE)
def test_settings_precedence(tmp_path, layers, expected, source):
    _layers(tmp_path, bt=layers.get("bt"), dotenv=layers.get("dotenv"))
    environ = {"FLYWHEEL_PROJECT": layers["env"]} if "env" in layers else {}
    flags = {"project": layers["flag"]} if "flag" in layers else {}
    settings = load_settings(flags, environ=environ, cwd=tmp_path)
    assert settings.project == expected
    assert settings.sources["project"] == source


def test_defaults(tmp_path):
    settings = load_settings({}, environ={}, cwd=tmp_path)
    assert settings.app_url == DEFAULT_APP_URL
    assert settings.store == ".flywheel/store.duckdb"
    assert settings.goal == DEFAULT_GOAL == "general health check"
    assert settings.window_days == 7
    assert settings.backend_resolved == "local"
    assert settings.sources["app_url"] == "default"


def test_env_file_flag_replaces_the_default_dotenv(tmp_path):
    _layers(tmp_path, dotenv="from-default-dotenv")
    other = tmp_path / "ci.env"
    other.write_text("FLYWHEEL_PROJECT=from-env-file\nFLYWHEEL_WINDOW_DAYS=30\n")
    settings = load_settings({}, environ={}, env_file=other, cwd=tmp_path)
    assert settings.project == "from-env-file"
    assert settings.window_days == 30
    assert settings.sources["window_days"] == ".env:FLYWHEEL_WINDOW_DAYS"


def test_missing_env_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--env-file .*nope.env: file not found"):
        load_settings({}, environ={}, env_file=tmp_path / "nope.env", cwd=tmp_path)


def test_env_var_order_within_one_layer(tmp_path):
    settings = load_settings({}, environ={"BRAINTRUST_DEFAULT_PROJECT": "bt", "FLYWHEEL_PROJECT": "fw"}, cwd=tmp_path)
    assert (settings.project, settings.sources["project"]) == ("fw", "env:FLYWHEEL_PROJECT")
    # a lower-priority name in the environment still beats .env (layers first, names second)
    _layers(tmp_path, dotenv="from-dotenv")
    settings = load_settings({}, environ={"BRAINTRUST_DEFAULT_PROJECT": "bt"}, cwd=tmp_path)
    assert settings.project == "bt"


def test_bt_config_keys_and_bad_file(tmp_path):
    _layers(tmp_path, bt="p")
    assert load_settings({}, environ={}, cwd=tmp_path).org_name == "acme"
    (tmp_path / ".bt" / "config.json").write_text("[1]")
    with pytest.raises(ConfigError, match="config.json: expected a JSON object"):
        load_settings({}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("environ,dotenv,expected", [
    ({}, "", "local"),
    ({"BRAINTRUST_API_KEY": "k" * 20}, "", "remote"),
    ({}, "BRAINTRUST_API_KEY=" + "k" * 20, "remote"),
    ({"BRAINTRUST_API_KEY": "k" * 20, "FLYWHEEL_BACKEND": "local"}, "", "local"),
])
def test_backend_follows_the_key(tmp_path, environ, dotenv, expected):
    (tmp_path / ".env").write_text(dotenv + "\n")
    assert load_settings({}, environ=environ, cwd=tmp_path).backend_resolved == expected


def test_remote_without_key_and_bad_window_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="backend is remote but BRAINTRUST_API_KEY is not set"):
        _ = load_settings({"backend": "remote"}, environ={}, cwd=tmp_path).backend_resolved
    with pytest.raises(ConfigError, match=r"window_days: expected an integer, got 'week' \(from env:FLYWHEEL_WINDOW_DAYS\)"):
        load_settings({}, environ={"FLYWHEEL_WINDOW_DAYS": "week"}, cwd=tmp_path)


def test_public_settings_never_show_secret_values(tmp_path):
    (tmp_path / ".env").write_text("OPENAI_API_KEY=dotenv-secret-value-123\n")
    settings = load_settings({}, environ={"BRAINTRUST_API_KEY": "env-secret-value-456"}, cwd=tmp_path)
    public = settings.public()
    assert public["api_key"] is True and public["openai_api_key"] is True
    assert "secret-value" not in json.dumps(public)


# ------------------------------------------------------------------ `flywheel orient --json`

def _orient(run_cli, *args: str) -> dict:
    code, out, err = run_cli("orient", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_orient_fields_and_defaults(run_cli):
    info = _orient(run_cli)
    assert {"mode", "mode_reason", "goal", "project", "backend", "baseline_experiment", "data_window"} <= set(info)
    assert info["mode"] == "interactive"
    assert info["goal"] == "general health check"
    assert info["project"] is None
    assert info["backend"] == "local"
    window = info["data_window"]
    assert window["days"] == 7
    start = datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(window["end"].replace("Z", "+00:00"))
    assert (end - start).days == 7


@pytest.mark.parametrize("argument,env_goal,dotenv_goal,expected", [
    ("improve refusals", "from env", "from dotenv", "improve refusals"),
    (None, "from env", "from dotenv", "from env"),
    (None, None, "from dotenv", "from dotenv"),
    (None, None, None, "general health check"),
    ("   ", "from env", None, "from env"),
    ("mode: autonomous", "from env", None, "from env"),
    ("mode: autonomous fix tone", None, None, "fix tone"),
])
def test_orient_goal_precedence(run_cli, monkeypatch, tmp_path, argument, env_goal, dotenv_goal, expected):
    if env_goal:
        monkeypatch.setenv("FLYWHEEL_GOAL", env_goal)
    if dotenv_goal:
        (tmp_path / ".env").write_text(f"FLYWHEEL_GOAL={dotenv_goal}\n")
    info = _orient(run_cli, *([argument] if argument is not None else []))
    assert info["goal"] == expected


@pytest.mark.parametrize("args,env,mode,reason", [
    ([], {}, "interactive", "no autonomous signal"),
    (["--mode", "autonomous"], {}, "autonomous", "--mode autonomous"),
    (["mode: autonomous check"], {}, "autonomous", "goal begins"),
    ([], {"FLYWHEEL_GOAL": "mode: autonomous nightly"}, "autonomous", "goal begins"),
    ([], {"CI": "true"}, "autonomous", "CI=true"),
    ([], {"CI": "true", "FLYWHEEL_AUTONOMOUS": "false"}, "interactive", "overrides CI"),
    (["--mode", "interactive"], {"CI": "true"}, "interactive", "--mode interactive"),
])
def test_orient_mode(run_cli, monkeypatch, args, env, mode, reason):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    info = _orient(run_cli, *args)
    assert info["mode"] == mode
    assert reason in info["mode_reason"]


def test_orient_project_window_and_env_file(run_cli, monkeypatch, tmp_path):
    (tmp_path / "ci.env").write_text("FLYWHEEL_PROJECT=from-env-file\n")
    info = _orient(run_cli, "--env-file", str(tmp_path / "ci.env"), "--window-days", "30")
    assert (info["project"], info["project_source"]) == ("from-env-file", ".env:FLYWHEEL_PROJECT")
    assert info["data_window"]["days"] == 30
    monkeypatch.setenv("FLYWHEEL_PROJECT", "from-env")
    info = _orient(run_cli, "--env-file", str(tmp_path / "ci.env"), "--project", "from-flag")
    assert (info["project"], info["project_source"]) == ("from-flag", "flag")
    assert _orient(run_cli)["project"] == "from-env"


def test_orient_text_summary(run_cli):
    code, out, _ = run_cli("orient", "improve refusals")
    assert code == 0
    assert out.splitlines()[:3] == ["mode: interactive (no autonomous signal (a non-TTY stdin is not one))",
                                    "goal: improve refusals", "project: (not set)"]


def test_orient_out_writes_the_same_json_it_prints(run_cli, tmp_path) -> None:
    import json

    code, out, err = run_cli("orient", "fix refusals", "--json", "--out", "orient.json")
    assert code == 0, err
    assert json.loads((tmp_path / "orient.json").read_text()) == json.loads(out)


def test_orient_text_summary_redacts_a_key_pasted_into_the_goal(run_cli):
    key = "sk-" + "q" * 40
    code, out, _ = run_cli("orient", f"why does {key} fail")
    assert code == 0
    assert key not in out and "goal: why does [REDACTED] fail" in out
