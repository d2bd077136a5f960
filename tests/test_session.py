"""The session Orient saves (.flywheel/session.json) and the settings layer later commands read
from it: flags > environment > session > .env > .bt/config.json > defaults."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bt_flywheel.core.config import load_settings
from bt_flywheel.core.mode import resolve_mode
from bt_flywheel.core.schemas import schema_errors


def _spans(path: Path, project_days: int, *, rows: int = 30) -> Path:
    """Root spans spread evenly over the last `project_days` days."""
    now = datetime.now(UTC)
    with path.open("w") as f:
        for i in range(rows):
            created = now - timedelta(days=project_days) + timedelta(hours=1) + (timedelta(days=project_days) * i / rows)
            f.write(json.dumps({"id": f"r{i}", "span_id": f"r{i}", "root_span_id": f"r{i}", "is_root": True,
                                "created": created.isoformat().replace("+00:00", "Z"),
                                "input": {"q": i}, "output": {"a": i}, "scores": {"ok": i % 2},
                                "metadata": {"topic": "x" if i % 3 else "y"},
                                "span_attributes": {"name": "root", "type": "task"}}) + "\n")
    return path


def _orient(run_cli, *args: str) -> dict:
    code, out, err = run_cli("orient", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_orient_on_an_empty_store_says_to_ingest_first_and_saves_a_valid_session(run_cli, tmp_path):
    info = _orient(run_cli, "mode: autonomous make refunds safe")
    assert info["project"] is None
    assert any("flywheel ingest" in hint and "--project" in hint for hint in info["hints"]), info["hints"]
    session = json.loads((tmp_path / ".flywheel" / "session.json").read_text())
    assert schema_errors(session, "session.schema.json") == []
    assert session["mode"] == "autonomous" and session["goal"] == "make refunds safe"
    assert info["session"].endswith("session.json")
    # the text form shows the hint too
    code, out, _ = run_cli("orient")
    assert code == 0 and "hint: the local store" in out and "flywheel ingest" in out


def test_orient_reads_the_project_from_agents_md(run_cli, tmp_path):
    (tmp_path / "AGENTS.md").write_text("# Agents\n\nTraces go to the Braintrust project `recipe-helper`.\n")
    info = _orient(run_cli)
    assert info["project"] == "recipe-helper"
    assert info["project_source"].endswith("AGENTS.md:3")


def test_ingest_after_orient_widens_the_window_to_the_data_and_later_commands_inherit(run_cli, tmp_path):
    _orient(run_cli, "mode: autonomous find weak topics")
    code, _, err = run_cli("ingest", str(_spans(tmp_path / "t.jsonl", 14)), "--project", "kb-bot")
    assert code == 0, err
    assert "window 14 days" in err
    settings = load_settings()
    assert settings.project == "kb-bot" and settings.sources["project"] == "session"
    assert settings.window_days == 14 and settings.sources["window_days"] == "session"
    assert settings.store.endswith("store.duckdb") and settings.sources["store"] == "session"
    # the store's only project and the data's range, when orient runs again (no flags)
    info = _orient(run_cli)
    assert info["project"] == "kb-bot"
    assert info["data_window"]["days"] == 14 and info["data_window"]["source"] == "the data's date range"
    assert info["data_range"]["rows"] == 30
    assert info["goal"] == "find weak topics" and info["mode"] == "autonomous"  # the session goes on
    fresh = _orient(run_cli, "--new-session")
    assert fresh["project"] == "kb-bot" and "only project" in fresh["project_source"]
    assert fresh["goal"] == "general health check" and fresh["mode"] == "interactive"
    _orient(run_cli, "mode: autonomous find weak topics")
    # curate sees the session's mode: autonomous, so it writes the dataset without asking
    code, out, err = run_cli("curate", "--score", "ok", "--labeler", "score", "--per-bucket", "5",
                             "--out", "cur", "--dataset", "d1", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["project"] == "kb-bot" and summary["dataset"]["written"] is True


def test_precedence_flag_over_env_over_session_over_dotenv(run_cli, tmp_path, monkeypatch):
    run_cli("orient", "--project", "from-orient", "--window-days", "9")
    (tmp_path / ".env").write_text("FLYWHEEL_PROJECT=from-dotenv\n")
    assert load_settings().project == "from-orient"
    assert load_settings().window_days == 9
    monkeypatch.setenv("FLYWHEEL_PROJECT", "from-env")
    assert load_settings().project == "from-env"
    assert load_settings({"project": "from-flag"}).project == "from-flag"
    assert load_settings(session=False).project == "from-env"


def test_a_flag_chosen_window_survives_a_rerun(run_cli, tmp_path):
    run_cli("orient", "--window-days", "3")
    run_cli("ingest", str(_spans(tmp_path / "t.jsonl", 14)), "--project", "p")
    info = _orient(run_cli)
    assert info["data_window"]["days"] == 3


def test_session_mode_is_a_layer_below_the_environment():
    session = {"mode": "autonomous", "mode_reason": "goal begins 'mode: autonomous'"}
    assert resolve_mode(session=session, environ={}).name == "autonomous"
    assert "session" in resolve_mode(session=session, environ={}).reason
    assert resolve_mode(session=session, environ={"FLYWHEEL_AUTONOMOUS": "false"}).name == "interactive"
    assert resolve_mode(flag="interactive", session=session, environ={}).name == "interactive"


def test_a_broken_session_file_is_a_one_line_error(run_cli, tmp_path):
    (tmp_path / ".flywheel").mkdir()
    (tmp_path / ".flywheel" / "session.json").write_text('{"contract": "bt-flywheel-session/v1", "mode": "sleepy"}')
    code, _, err = run_cli("sql", "SELECT 1 AS one")
    assert code == 2
    assert "session.json: invalid session file" in err and err.count("\n") <= 2


def test_route_decide_uses_the_sessions_ledger(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_LEDGER", str(tmp_path / "runs" / "ledger.json"))
    run_cli("orient", "--project", "p")
    monkeypatch.delenv("FLYWHEEL_LEDGER")
    assert load_settings().ledger == str(tmp_path / "runs" / "ledger.json")
    code, out, err = run_cli("route", "decide", "--condition", "agent_problem", "--candidate", "cand:1")
    assert code == 0, err
    assert json.loads(out)["ledger"] == str(tmp_path / "runs" / "ledger.json")
    code, out, _ = run_cli("route", "status")
    assert code == 0 and "loops: 1" in out
