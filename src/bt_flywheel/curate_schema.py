"""Load the JSON Schemas under schemas/ and explain violations one line each."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from schemas/<name> (e.g. 'dataset-row.schema.json')."""
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts: Any) -> str:
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def schema_errors(instance: Any, name: str, *, limit: int = 50) -> list[str]:
    """Every violation as '<json path>: <message>', deepest first within a path, sorted by path."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    lines = []
    for error in errors[:limit]:
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties") or {})
            unknown = sorted(k for k in error.instance if k not in allowed and not k.startswith("x-"))
            if unknown:
                message = (f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                           f"(allowed: {', '.join(sorted(allowed))}, or x-*)")
        if len(message) > 200:
            message = message[:197] + "..."
        lines.append(f"{json_path(error.absolute_path)}: {message}")
    return lines
