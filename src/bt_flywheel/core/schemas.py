"""The JSON Schemas under the plugin root's schemas/: where they are, loading them, and
explaining violations one line each with their JSON path.

They live at the plugin root (DESIGN.md §2), beside src/, so the package is used from a
checkout or an exported skill (whose scripts/package carries its own copy);
FLYWHEEL_SCHEMAS_DIR points elsewhere.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"


def schema_path(name: str) -> Path:
    """schemas/<name> under FLYWHEEL_SCHEMAS_DIR if set, else at the plugin root."""
    override = os.environ.get("FLYWHEEL_SCHEMAS_DIR")
    candidates = [Path(override) / name] if override else []
    candidates.append(SCHEMA_DIR / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{candidates[-1]}: schema not found",
                     hint="run from a checkout of bt-flywheel or set FLYWHEEL_SCHEMAS_DIR")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema by file name (e.g. 'dataset-row.schema.json')."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


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
