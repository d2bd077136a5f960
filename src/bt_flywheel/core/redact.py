"""Secret redaction used by every printer and writer.

Secrets are known two ways: values we were told about (API keys from flags, the
environment and `.env`, registered by `config`), and shapes that look like keys
(`sk-...`, bearer tokens). Both are replaced by a fixed marker.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

MARKER = "[REDACTED]"
# "prompt_tokens" is a metric, not a secret: token only counts as a whole word at the end.
_SECRET_NAME = re.compile(r"(API_?KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)TOKEN$)", re.IGNORECASE)
_SECRET_SHAPES = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-+/=]{12,}"),
    re.compile(r"(?i)\b(api[_-]?key|secret|token|password)(\"?\s*[:=]\s*\"?)([^\s\"',}]{8,})"),
]
_MIN_SECRET_LEN = 8
_known: set[str] = set()
_longest_first: tuple[str, ...] = ()  # _known sorted for replacement, replaced whole when it grows
_env_seen: dict[str, str] = {}  # environment values already looked at
_env_raw_seen: dict[Any, Any] | None = None  # os.environ's raw mapping at the last full look


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def register_secret(value: str | None) -> None:
    """Remember a secret value so every later redact() removes it."""
    global _longest_first
    if value and len(value.strip()) >= _MIN_SECRET_LEN and value.strip() not in _known:
        _known.add(value.strip())
        _longest_first = tuple(sorted(_known, key=len, reverse=True))


def register_secrets_from_mapping(mapping: dict[str, str | None]) -> None:
    for name, value in mapping.items():
        if value and is_secret_name(name):
            register_secret(value)


def _refresh_from_environment() -> None:
    """Pick up secrets set in the environment since the last look. This runs on every redaction,
    which is on the hot path of writing rows: an unchanged environment is recognised by comparing
    os.environ's raw (undecoded) mapping with a copy, and only changed entries are checked."""
    global _env_raw_seen
    raw = getattr(os.environ, "_data", None)    # CPython's backing dict; decoding every entry costs more
    if raw is not None and raw == _env_raw_seen:
        return
    for name, value in os.environ.items():
        if _env_seen.get(name) != value:
            _env_seen[name] = value
            if value and is_secret_name(name):
                register_secret(value)
    _env_raw_seen = dict(raw) if raw is not None else None


def redact(text: str) -> str:
    """Remove every known secret and anything shaped like one."""
    if not text:
        return text
    _refresh_from_environment()
    return _redact_text(text)


def _redact_text(text: str) -> str:
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, MARKER)
    text = _SECRET_SHAPES[0].sub(MARKER, text)
    text = _SECRET_SHAPES[1].sub(f"Bearer {MARKER}", text)
    text = _SECRET_SHAPES[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{MARKER}", text)
    return text


def redact_obj(value: Any) -> Any:
    """Redact strings inside nested dicts/lists; dict keys that name secrets lose their values."""
    _refresh_from_environment()
    return _redact_value(value)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value) if value else value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_name(key) and isinstance(item, str) and item:
                out[key] = MARKER
            else:
                out[key] = _redact_value(item)
        return out
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value
