"""One query runner for a project on whichever backend the settings resolve to.

    run = project_runner(settings)       # run(query) -> list of row dicts
    rows = run("SELECT ... FROM project_logs('support') WHERE created >= NOW() - INTERVAL 7 DAY")

Locally the query runs on the store (`backends.sql.run_query`); remotely it goes to Braintrust's
`POST /btql` unchanged. Library code that selects rows takes a runner, so it never branches on
the backend itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Runner = Callable[[str], list[dict[str, Any]]]


def project_runner(settings: Any) -> Runner:
    if settings.backend_resolved == "remote":
        from bt_flywheel.backends.remote_datasets import BraintrustClient

        return BraintrustClient.from_settings(settings).runner(settings.project)
    from bt_flywheel.backends.sql import run_query

    def run(query: str) -> list[dict[str, Any]]:
        return run_query(settings.store, query, project=settings.project).rows

    return run
