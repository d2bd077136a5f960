"""Braintrust's own Topics, driven through the real `bt topics` CLI (bt 0.20).

What bt exposes, and what `flywheel topics run --remote` does with it:
- `bt topics status --json`: the automation's state, facets and coverage (read and reported);
- `bt topics poke`: queue the pipeline for the next executor pass (a run without --rebuild);
- `bt topics rewind <N>d`: recompute facets and topic labels for the last N days (--rebuild);
- `bt topics config enable --facet ...`, `config set`, `report`, `btmap`, `open` (not called here).

What it does not expose, so the remote path cannot do it: run the pipeline synchronously and wait
for it (poke and rewind only queue work; the daily cadence and the 100-summary minimum apply),
choose the clustering algorithm, the number of topics, a seed or the noise rule, write a
classification for one trace, or return classifications directly. Results are read back with SQL
(`classifications.Task[0].label` in `bt sql` / `flywheel sql --remote`) once the pipeline ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from bt_flywheel.core.errors import BackendError, ConfigError
from bt_flywheel.core.redact import redact

NOT_EXPOSED = (
    "running the pipeline synchronously: poke and rewind only queue work for Braintrust's executor",
    "the clustering algorithm, the number of topics, a seed or the noise rule",
    "writing or moving a single trace's classification",
    "classifications themselves: read them with SQL (classifications.<Facet>[0].label) after the pipeline ran",
)


def bt_path() -> str:
    found = os.environ.get("FLYWHEEL_BT") or shutil.which("bt")
    if not found:
        raise ConfigError("the remote Topics path needs Braintrust's `bt` CLI on PATH",
                          hint="npm install -g @braintrust/bt (or set FLYWHEEL_BT), or run with --local")
    return found


def bt_commands(project: str, *, rebuild: bool, window_days: int) -> list[list[str]]:
    """The bt invocations for one remote run, in order (status, then poke or rewind, then status)."""
    status = ["topics", "status", "--json", "-p", project]
    action = ["topics", "rewind", f"{window_days}d", "--json", "-p", project] if rebuild \
        else ["topics", "poke", "--json", "-p", project]
    return [status, action, status]


def run_remote_topics(project: str, *, rebuild: bool, window_days: int, env: dict[str, str] | None = None,
                      timeout: float = 120.0) -> dict[str, Any]:
    binary = bt_path()
    steps = []
    for argv in bt_commands(project, rebuild=rebuild, window_days=window_days):
        proc = subprocess.run([binary, *argv], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            detail = redact(" ".join((proc.stderr or proc.stdout).split()))[:300]
            raise BackendError(f"bt {' '.join(argv[:2])} exited {proc.returncode}: {detail}",
                               hint="check BRAINTRUST_API_KEY, the project name, and that Topics is enabled "
                                    "(`bt topics config enable -p <project>`)")
        steps.append({"command": "bt " + " ".join(argv), "output": _parse(proc.stdout)})
    return {"backend": "remote", "project": project, "rebuild": rebuild, "steps": steps,
            "status": steps[-1]["output"], "not_exposed": list(NOT_EXPOSED)}


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return redact(text.strip())
