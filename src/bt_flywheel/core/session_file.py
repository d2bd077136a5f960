"""The session file: what `flywheel orient` resolved, for later commands to inherit.

Orient writes it (default `.flywheel/session.json`, env FLYWHEEL_SESSION), validated against
`schemas/session.schema.json`. `core.config.load_settings` reads it as a settings layer between
the environment and `.env` (flags > environment > session > .env > .bt/config.json > defaults),
so after Orient an agent does not repeat `--project`, `--store` or the window on every command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import ConfigError
from bt_flywheel.core.fileio import atomic_write_json, read_json_file
from bt_flywheel.core.redact import redact_obj
from bt_flywheel.core.schemas import schema_errors

CONTRACT = "bt-flywheel-session/v1"
DEFAULT_PATH = ".flywheel/session.json"
SCHEMA = "session.schema.json"
ENV_VAR = "FLYWHEEL_SESSION"


def session_path(environ: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> Path:
    """FLYWHEEL_SESSION if set, else `.flywheel/session.json` under `cwd`."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR])
    return Path(cwd or os.getcwd()) / DEFAULT_PATH


def read_session(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The session at `path` (validated), or None when there is none. A broken file is a
    ConfigError naming the file and the first violation: silently ignoring it would hand later
    commands different settings than Orient printed."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        doc = read_json_file(p)
    except Exception as exc:  # InputError from the reader: re-raise as a settings problem
        raise ConfigError(f"{p}: unreadable session file ({exc})",
                          hint="rerun `flywheel orient` to write it again") from None
    errors = schema_errors(doc, SCHEMA)
    if errors:
        raise ConfigError(f"{p}: invalid session file: {errors[0]}", hint="rerun `flywheel orient` to write it again")
    return doc


def write_session(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> Path:
    """Validate and atomically write a session (secrets redacted first: the goal is free text)."""
    clean = redact_obj({"contract": CONTRACT, **doc})
    errors = schema_errors(clean, SCHEMA)
    if errors:
        raise ConfigError(f"{path}: session would be invalid: {errors[0]}")
    return atomic_write_json(path, clean)


def settings_layer(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a session supplies (setting name -> value); empty without a session."""
    if not doc:
        return {}
    window = doc.get("data_window") or {}
    layer = {"project": doc.get("project"), "store": doc.get("store"), "backend": doc.get("backend"),
             "goal": doc.get("goal"), "window_days": window.get("days"), "mode": doc.get("mode"),
             "ledger": doc.get("ledger")}
    return {k: v for k, v in layer.items() if v not in (None, "")}
