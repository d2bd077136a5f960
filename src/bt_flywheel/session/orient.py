"""Orient: resolve mode, goal, project, backend, baseline and the data window."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from bt_flywheel.backends.store import Store, now_utc
from bt_flywheel.core.config import DEFAULT_GOAL, Settings
from bt_flywheel.core.mode import resolve_mode, split_goal


def resolve_goal(argument: str | None, environ: Mapping[str, str] | None = None) -> str:
    """argument > FLYWHEEL_GOAL > 'general health check'; a leading `mode: autonomous` is stripped."""
    env = os.environ if environ is None else environ
    for candidate in (argument, env.get("FLYWHEEL_GOAL")):
        goal, _ = split_goal(candidate)
        if goal and goal.strip():
            return goal.strip()
    return DEFAULT_GOAL


def orient(settings: Settings, *, goal: str | None = None, mode_flag: str | None = None,
           environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything a session needs to know before its first query."""
    env = os.environ if environ is None else environ
    # FLYWHEEL_GOAL may also come from .env (settings precedence); the environment still wins.
    env_goal = env.get("FLYWHEEL_GOAL") or (
        settings.goal if str(settings.sources.get("goal", "")).startswith(".env:") else None)
    mode = resolve_mode(flag=mode_flag, goal=goal if goal is not None else env_goal, environ=env)
    backend = settings.backend_resolved
    end = now_utc().replace(microsecond=0)
    days = settings.window_days
    project = settings.project or settings.project_id
    baseline = settings.baseline
    baseline_source = settings.sources.get("baseline") if baseline else None
    store_state: dict[str, Any] = {"path": settings.store, "exists": Path(settings.store).exists()}
    if backend == "local" and store_state["exists"]:
        with Store(settings.store, read_only=True) as store:
            project_id = store.find_project(project) if project else None
            store_state["project_id"] = project_id
            if project_id:
                store_state["log_rows"] = store.count_rows("project_logs", project_id)
                if not baseline:
                    experiments = store.list_objects("experiment", project_id)
                    if experiments:
                        baseline, baseline_source = experiments[0]["id"], "latest local experiment"
    return {
        "mode": mode.name,
        "mode_reason": mode.reason,
        "goal": resolve_goal(goal, {"FLYWHEEL_GOAL": env_goal} if env_goal else {}),
        "project": project,
        "project_source": settings.sources.get("project") if settings.project else settings.sources.get("project_id"),
        "backend": backend,
        "baseline_experiment": baseline,
        "baseline_source": baseline_source,
        "data_window": {"days": days, "start": (end - timedelta(days=days)).isoformat().replace("+00:00", "Z"),
                        "end": end.isoformat().replace("+00:00", "Z")},
        "store": store_state if backend == "local" else None,
        "settings": settings.public(),
    }
