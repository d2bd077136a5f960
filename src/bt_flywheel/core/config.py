"""Settings: flags > environment > session > `.env` > `.bt/config.json` > defaults.

The session layer is what `flywheel orient` saved (core.session_file). Every value remembers
where it came from so `flywheel orient` can say why.
Secret values are registered with `redact` the moment they are read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from bt_flywheel.core.errors import ConfigError
from bt_flywheel.core.redact import register_secret, register_secrets_from_mapping
from bt_flywheel.core.session_file import read_session, session_path, settings_layer

DEFAULT_APP_URL = "https://www.braintrust.dev"
DEFAULT_STORE = ".flywheel/store.duckdb"
DEFAULT_GOAL = "general health check"
DEFAULT_WINDOW_DAYS = 7
DEFAULT_LEDGER = ".flywheel/ledger.json"

# setting name -> (environment variables in priority order, key in .bt/config.json or None)
_SOURCES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "api_key": (("BRAINTRUST_API_KEY",), None),
    "app_url": (("BRAINTRUST_APP_URL",), "app_url"),
    "api_url": (("BRAINTRUST_API_URL",), "api_url"),
    "org_name": (("BRAINTRUST_ORG_NAME",), "org"),
    "project": (("FLYWHEEL_PROJECT", "BRAINTRUST_DEFAULT_PROJECT"), "project"),
    "project_id": (("FLYWHEEL_PROJECT_ID",), "project_id"),
    "store": (("FLYWHEEL_STORE",), None),
    "backend": (("FLYWHEEL_BACKEND",), None),
    "goal": (("FLYWHEEL_GOAL",), None),
    "baseline": (("FLYWHEEL_BASELINE_EXPERIMENT",), None),
    "window_days": (("FLYWHEEL_WINDOW_DAYS",), None),
    "mode": ((), None),  # only a flag or the session; the environment's signals are core.mode's
    "ledger": (("FLYWHEEL_LEDGER",), None),
    "openai_api_key": (("OPENAI_API_KEY",), None),
    "openai_base_url": (("OPENAI_BASE_URL",), None),
}
_DEFAULTS: dict[str, Any] = {
    "app_url": DEFAULT_APP_URL,
    "store": DEFAULT_STORE,
    "goal": DEFAULT_GOAL,
    "window_days": DEFAULT_WINDOW_DAYS,
    "ledger": DEFAULT_LEDGER,
}
SECRET_SETTINGS = frozenset({"api_key", "openai_api_key"})


@dataclass
class Settings:
    """Resolved settings; `sources[name]` says which layer supplied each value."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    session: dict[str, Any] | None = None  # the session file's content, when one was read
    session_path: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def __getattr__(self, name: str) -> Any:
        if name in _SOURCES:
            return self.values.get(name)
        raise AttributeError(name)

    @property
    def backend_resolved(self) -> str:
        """`local` or `remote`. Remote needs a key; auto means remote exactly when a key is set."""
        backend = (self.values.get("backend") or "auto").lower()
        if backend not in {"auto", "local", "remote"}:
            raise ConfigError(f"backend: unknown value {backend!r} (from {self.sources.get('backend')})",
                              hint="use local, remote or auto")
        if backend == "auto":
            return "remote" if self.values.get("api_key") else "local"
        if backend == "remote" and not self.values.get("api_key"):
            raise ConfigError("backend is remote but BRAINTRUST_API_KEY is not set",
                              hint="set it in the environment or .env, or use --local")
        return backend

    def public(self) -> dict[str, Any]:
        """Values safe to print: secrets become booleans saying whether they are set."""
        out: dict[str, Any] = {}
        for name in sorted(_SOURCES):
            value = self.values.get(name)
            out[name] = bool(value) if name in SECRET_SETTINGS else value
        return out


def _read_bt_config(cwd: Path) -> dict[str, Any]:
    path = cwd / ".bt" / "config.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def _resolve_one(name: str, flags: Mapping[str, Any], environ: Mapping[str, str], saved: Mapping[str, Any],
                 dotenv: Mapping[str, str | None], bt_config: Mapping[str, Any]) -> tuple[Any, str]:
    """(value, source) of one setting: flag, environment, session, .env, .bt/config.json, default."""
    env_names, bt_key = _SOURCES[name]
    if name in flags:
        return flags[name], "flag"
    for env_name in env_names:
        if environ.get(env_name):
            return environ[env_name], f"env:{env_name}"
    if name in saved:
        return saved[name], "session"
    for env_name in env_names:
        if dotenv.get(env_name):
            return dotenv[env_name], f".env:{env_name}"
    if bt_key and bt_config.get(bt_key) not in (None, ""):
        return bt_config[bt_key], f".bt/config.json:{bt_key}"
    return _DEFAULTS.get(name), "default"


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    session: bool = True,
) -> Settings:
    """Resolve every setting through the precedence chain. `session=False` skips the session
    layer (Orient itself resolves a fresh session)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = dict(os.environ if environ is None else environ)
    base = Path(cwd or os.getcwd())
    if env_file is not None:
        env_path = Path(env_file)
        if not env_path.exists():
            raise ConfigError(f"--env-file {env_path}: file not found")
    else:
        env_path = base / ".env"
    dotenv: dict[str, str | None] = dict(dotenv_values(env_path)) if env_path.exists() else {}
    register_secrets_from_mapping(dotenv)
    register_secrets_from_mapping(environ)
    bt_config = _read_bt_config(base)
    settings = Settings()
    if session:
        path = session_path(environ, base)
        settings.session = read_session(path)
        settings.session_path = str(path) if settings.session is not None else None
    saved = settings_layer(settings.session)

    layers = (flags, environ, saved, dotenv, bt_config)
    for name in _SOURCES:
        value, source = _resolve_one(name, *layers)
        if name in SECRET_SETTINGS:
            register_secret(value)
        settings.values[name] = value
        settings.sources[name] = source if value is not None else "unset"
    try:
        settings.values["window_days"] = int(settings.values["window_days"])
    except (TypeError, ValueError):
        raise ConfigError(
            f"window_days: expected an integer, got {settings.values['window_days']!r} "
            f"(from {settings.sources['window_days']})"
        ) from None
    return settings
