"""Orient: resolve mode, goal, project, backend, baseline and the data window, and save them.

The result is saved as the session file (core.session_file) that later commands inherit as a
settings layer, so the project, store, window, mode and goal are said once.

Where the project comes from when no flag, environment, `.env` or `.bt/config.json` names it:
on the local backend the store's only project; then a project named in the repo's AGENTS.md or
CLAUDE.md. An empty store is not an answer: the result carries a hint to ingest first.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bt_flywheel.backends.base import Backend, backend_from_settings
from bt_flywheel.backends.store import Store, now_utc
from bt_flywheel.core.config import DEFAULT_GOAL, DEFAULT_WINDOW_DAYS, Settings
from bt_flywheel.core.errors import BackendError, InputError
from bt_flywheel.core.mode import Mode, resolve_mode, split_goal
from bt_flywheel.core.session_file import write_session

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
_NAME = r"[`'\"]?([A-Za-z0-9][A-Za-z0-9_.\-/ ]{0,79}?)[`'\"]?"
_PROJECT_PATTERNS = (
    re.compile(r"(?:FLYWHEEL_PROJECT|BRAINTRUST_DEFAULT_PROJECT)\s*=\s*[`'\"]?([A-Za-z0-9][\w.\-]{0,79})"),
    re.compile(r"project_logs\(\s*'([^']{1,80})'"),
    re.compile(r"braintrust project(?: name)?\s*(?:is|:|=)?\s*" + _NAME + r"\s*(?:[.,;(]|$)", re.IGNORECASE),
    re.compile(r"^\s*[-*]?\s*\**project\**\s*[:=]\s*" + _NAME + r"\s*$", re.IGNORECASE),
)


def resolve_goal(argument: str | None, environ: Mapping[str, str] | None = None) -> str:
    """argument > FLYWHEEL_GOAL > 'general health check'; a leading `mode: autonomous` is stripped."""
    env = os.environ if environ is None else environ
    for candidate in (argument, env.get("FLYWHEEL_GOAL")):
        goal, _ = split_goal(candidate)
        if goal and goal.strip():
            return goal.strip()
    return DEFAULT_GOAL


def _iso(value: datetime) -> str:
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def project_from_instructions(cwd: str | os.PathLike[str] | None = None) -> tuple[str, str] | None:
    """(project, "FILE:LINE") from the first AGENTS.md / CLAUDE.md naming a Braintrust project,
    looking in `cwd` and its parents up to the repository root."""
    folder = Path(cwd or os.getcwd()).resolve()
    for directory in (folder, *folder.parents):
        for name in INSTRUCTION_FILES:
            path = directory / name
            if not path.is_file():
                continue
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for number, line in enumerate(lines, 1):
                for pattern in _PROJECT_PATTERNS:
                    match = pattern.search(line)
                    if match and match.group(1).strip():
                        return match.group(1).strip(), f"{path}:{number}"
        if (directory / ".git").exists():
            break
    return None


def _store_state(settings: Settings, project: str | None) -> dict[str, Any]:
    """What the local store holds: projects, the project's id, rows, date range, latest experiment."""
    state: dict[str, Any] = {"path": settings.store, "exists": Path(settings.store).exists(), "projects": []}
    if not state["exists"]:
        return state
    with Store(settings.store, read_only=True) as store:
        state["projects"] = [p["name"] for p in store.list_projects()]
        if project is None and len(state["projects"]) == 1:
            state["only_project"] = state["projects"][0]
        name = project or state.get("only_project")
        project_id = store.find_project(name) if name else None
        state["project_id"] = project_id
        if project_id:
            first, last, rows = store.created_range("project_logs", project_id)
            state["log_rows"] = rows
            if first is not None and last is not None:
                state["data_range"] = {"first": _iso(first), "last": _iso(last),
                                       "days": max(0, math.ceil((last - first).total_seconds() / 86400)),
                                       "rows": rows}
                state["first_created"] = first
            experiments = store.list_objects("experiment", project_id)
            if experiments:
                state["latest_experiment"] = experiments[0]["id"]
    return state


def _resolve_project(settings: Settings, state: dict[str, Any], cwd: str | None) -> tuple[str | None, str | None]:
    if settings.project or settings.project_id:
        name = settings.project or settings.project_id
        source = settings.sources.get("project") if settings.project else settings.sources.get("project_id")
        if source == "session":
            source = (settings.session or {}).get("project_source") or source
        return name, source
    if state.get("only_project"):
        return state["only_project"], f"the only project in {settings.store}"
    found = project_from_instructions(cwd)
    if found:
        return found[0], found[1]
    return None, None


def _window(settings: Settings, state: dict[str, Any], end: datetime) -> dict[str, Any]:
    """The discovery window. Unless a flag or the environment set it, it widens to cover the
    data: `NOW() - INTERVAL <days> day` must reach the first trace."""
    days = settings.window_days
    source = settings.sources.get("window_days") or "default"
    if source == "session":  # an earlier orient's window: adjustable unless a flag chose it then
        source = ((settings.session or {}).get("data_window") or {}).get("source") or "default"
        if source == "the data's date range":
            days, source = DEFAULT_WINDOW_DAYS, "default"
    first = state.get("first_created")
    if first is not None:
        covering = max(1, math.ceil((end - first).total_seconds() / 86400))
        if source == "default" and covering > days:
            days, source = covering, "the data's date range"
    return {"days": days, "start": _iso(end - timedelta(days=days)), "end": _iso(end), "source": source}


def _hints(backend: str, project: str | None, state: dict[str, Any]) -> list[str]:
    if backend != "local":
        return [] if project else ["no project: set FLYWHEEL_PROJECT, pass --project, or name it in AGENTS.md"]
    name = project or "<PROJECT>"
    if not state.get("exists") or not state.get("projects"):
        return [f"the local store {state['path']} has no traces yet: load them first with "
                f"`flywheel ingest <TRACES_JSONL>{'' if project else ' --project <PROJECT>'}`, then run orient again"]
    if project is None:
        return [f"the store holds several projects ({', '.join(state['projects'])}): pass --project NAME"]
    if not state.get("project_id"):
        return [f"project {name!r} is not in {state['path']} (it holds {', '.join(state['projects'])}): "
                f"ingest its traces with `flywheel ingest <TRACES_JSONL>`"]
    if not state.get("log_rows"):
        return [f"project {name!r} has no production traces in {state['path']}: ingest them first"]
    return []


def orient(settings: Settings, *, goal: str | None = None, mode_flag: str | None = None,
           environ: Mapping[str, str] | None = None, cwd: str | None = None,
           backend: Backend | None = None) -> dict[str, Any]:
    """Everything a session needs to know before its first query.

    With `settings.session` (an earlier orient's session, loaded as a settings layer) this
    continues that session: its start time, and its goal and mode unless the argument, a flag or
    the environment give new ones. The baseline is, unless set, the project's newest experiment
    on the backend (the local store, or Braintrust with a key)."""
    env = os.environ if environ is None else environ
    saved = settings.session or {}
    # FLYWHEEL_GOAL may also come from .env (settings precedence); the environment still wins.
    env_goal = env.get("FLYWHEEL_GOAL") or (
        settings.goal if str(settings.sources.get("goal", "")).startswith(".env:") else None)
    goal_text = goal if goal is not None and goal.strip() else env_goal
    mode = resolve_mode(flag=mode_flag, goal=goal_text, environ=env, session=saved if goal_text is None else None)
    if mode.reason.startswith("session: ") and saved.get("mode_reason"):
        mode = Mode(mode.name, saved["mode_reason"])  # the same session goes on: keep its reason
    source = backend or backend_from_settings(settings)
    backend_name = source.name
    end = now_utc().replace(microsecond=0)
    state = _store_state(settings, settings.project or settings.project_id) if backend_name == "local" else {}
    project, project_source = _resolve_project(settings, state, cwd)
    if backend_name == "local" and project and state.get("exists") and not state.get("project_id"):
        state = _store_state(settings, project)
    baseline = settings.baseline
    baseline_source = settings.sources.get("baseline") if baseline else None
    remote_hints: list[str] = []
    if not baseline and state.get("latest_experiment"):
        baseline, baseline_source = state["latest_experiment"], "latest local experiment"
    elif not baseline and project and backend_name != "local":
        try:
            newest = source.experiments(project)
        except (InputError, BackendError) as exc:  # orient reports; it does not stop the session
            newest = []
            remote_hints.append(f"baseline_experiment: {exc.one_line()}")
        if newest:
            baseline, baseline_source = newest[0].id, "newest experiment in Braintrust"
    resolved_goal = resolve_goal(goal, {"FLYWHEEL_GOAL": env_goal} if env_goal else {})
    if goal_text is None and saved.get("goal"):
        resolved_goal = saved["goal"]
    return {
        "started_at": saved.get("started_at") or _iso(end),
        "mode": mode.name,
        "mode_reason": mode.reason,
        "goal": resolved_goal,
        "project": project,
        "project_source": project_source,
        "backend": backend_name,
        "baseline_experiment": baseline,
        "baseline_source": baseline_source,
        "data_window": _window(settings, state, end),
        "data_range": state.get("data_range"),
        "store": {k: v for k, v in state.items() if k not in {"first_created", "only_project",
                                                              "latest_experiment"}} if backend_name == "local" else None,
        "hints": [*_hints(backend_name, project, {**state, "path": settings.store}), *remote_hints],
        "settings": settings.public(),
    }


def save_session(info: Mapping[str, Any], path: str | os.PathLike[str], *, store: str, ledger: str) -> Path:
    """Write what orient resolved as the session later commands inherit (core.session_file)."""
    return write_session(path, {
        "started_at": info["started_at"], "mode": info["mode"], "mode_reason": info["mode_reason"],
        "goal": info["goal"], "project": info["project"], "project_source": info["project_source"],
        "project_id": (info.get("store") or {}).get("project_id"), "backend": info["backend"],
        "store": store, "ledger": ledger, "baseline_experiment": info["baseline_experiment"],
        "data_window": info["data_window"], "data_range": info["data_range"]})


def refresh_session(path: str | os.PathLike[str], settings: Settings) -> dict[str, Any] | None:
    """After new traces arrive (ingest), update the saved session's project, data range and,
    unless a flag or the environment chose it, its window. Returns the new session, or None
    when there is no session to update."""
    from bt_flywheel.core.session_file import read_session

    saved = read_session(path)
    if saved is None:
        return None
    state = _store_state(settings, settings.project)
    end = now_utc().replace(microsecond=0)
    window = dict(saved["data_window"])
    chosen = window.get("source") not in (None, "default", "the data's date range")
    if not chosen:
        window = _window(Settings(values={"window_days": DEFAULT_WINDOW_DAYS}, sources={"window_days": "default"}),
                         state, end)
    updated = {**saved, "project": saved.get("project") or settings.project,
               "project_id": state.get("project_id") or saved.get("project_id"),
               "data_range": state.get("data_range") or saved.get("data_range"), "data_window": window,
               "updated_at": _iso(end)}
    if saved.get("project") is None and settings.project:
        updated["project_source"] = settings.sources.get("project")
    updated.pop("contract", None)
    write_session(path, updated)
    return updated
