"""The contract layer: the JSON Schemas under the plugin root's schemas/, one validator per
schema, one violation explainer and one JSON path spelling for every document the project
reads or writes (handoff, handoff draft, comparison, ledger, labels, dataset row, facet
definitions, eval config, session).

They live at the plugin root (DESIGN.md §2), beside src/, so the package is used from a
checkout or an exported skill (whose scripts/package carries its own copy);
FLYWHEEL_SCHEMAS_DIR points elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.redact import redact

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


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


def is_rfc3339(value: object) -> bool:
    """RFC 3339 date-time with an explicit offset (what JSON Schema's `date-time` means)."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@cache
def validator(name: str) -> Any:
    """The one validator factory: draft 2020-12, `date-time` always enforced. A schema from
    FLYWHEEL_SCHEMAS_DIR is checked against the meta-schema when first used; the schemas shipped
    beside the package are checked by the test suite instead (tests/test_models.py), since the
    check costs 10-100 ms per schema in every process (jsonschema's 2020-12 meta-schema).

    jsonschema checks `date-time` only when rfc3339-validator is installed; we register our own
    strict checker instead so the format is always enforced, with no extra dependency.
    """
    from jsonschema import Draft202012Validator, FormatChecker

    schema = load_schema(name)
    if schema_path(name).parent != SCHEMA_DIR:
        Draft202012Validator.check_schema(schema)
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_rfc3339)
    return Draft202012Validator(schema, format_checker=checker)


@dataclass(frozen=True)
class Violation:
    """One reason a document is invalid; `path` is a JSON path like `$.next_steps[0].intent`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def json_path(parts: Iterable[Any]) -> str:
    """`$.a[0].b`, with keys that are not plain identifiers quoted: `$["odd key"]`."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def walk_strings(value: Any, path: tuple[Any, ...] = ()) -> Iterable[tuple[tuple[Any, ...], str]]:
    """Every string in a JSON value with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from walk_strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk_strings(item, (*path, i))


def _short(value: Any, limit: int = 80) -> str:
    text = redact(repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unexpected(error: Any, path: list[Any], hints: Mapping[str, str]) -> list[Violation]:
    known = error.schema.get("properties", {})
    patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
    extras = [k for k in error.instance if k not in known and not any(p.search(k) for p in patterns)]
    allowed = ", ".join(sorted(known))
    extensions = "; extensions start with 'x-'" if patterns else ""
    return [Violation(json_path([*path, k]), hints.get(k) or f"unexpected property (allowed: {allowed}{extensions})")
            for k in sorted(extras, key=str)]


def explain(error: Any, *, hints: Mapping[str, str] | None = None) -> list[Violation]:
    """The one violation explainer: a jsonschema error as one-line violations with JSON paths.

    `hints` replaces the message for an unexpected key (e.g. a field a command computes itself).
    """
    path = list(error.absolute_path)
    kind = error.validator
    if kind == "required":
        missing = re.match(r"'(.+?)' is a required property", error.message)
        return [Violation(json_path([*path, missing.group(1) if missing else "?"]), "required property is missing")]
    if kind == "additionalProperties" and isinstance(error.instance, Mapping):
        return _unexpected(error, path, hints or {})
    where = json_path(path)
    if kind == "not":
        return [Violation(where, "looks like a secret (sk-... key or bearer token); remove it")]
    if kind == "enum":
        return [Violation(where, f"{_short(error.instance)} is not one of {list(error.validator_value)}")]
    if kind == "const":
        return [Violation(where, f"{_short(error.instance)} must be {json.dumps(error.validator_value)}")]
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [Violation(where, f"{_short(error.instance)} is not of type {expected}")]
    if kind == "format":
        return [Violation(where, f"{_short(error.instance)} is not an RFC 3339 {error.validator_value} "
                                 "(e.g. 2025-06-01T12:00:00Z)")]
    if kind == "pattern":
        return [Violation(where, f"{_short(error.instance)} does not match {error.validator_value!r}")]
    if kind == "minLength" and error.validator_value == 1:
        return [Violation(where, "must not be empty")]
    if kind in ("oneOf", "anyOf"):
        shapes = [s.get("description") or s.get("type") for s in error.validator_value if isinstance(s, Mapping)]
        allowed = " or ".join(str(s) for s in shapes if s) or "one of the allowed shapes"
        return [Violation(where, f"{_short(error.instance)} must be {allowed}")]
    message = redact(error.message)
    return [Violation(where, message if len(message) <= 200 else message[:199] + "…")]


_VALID_MAX = 4096
_valid: dict[tuple[str, bytes], None] = {}  # (schema, digest of a document found valid in this process)


def _digest(instance: Any) -> bytes | None:
    """A digest of the document's exact content. Pickle keeps every type jsonschema tells apart
    (a tuple is not an array, 1 is not true, a key 1 is not "1"), which JSON text would blur;
    with its memo off (``fast``) a shared sub-object pickles like a copy, so a document read
    back from its JSON has the digest of the one written. None when it cannot be pickled."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True
    try:
        pickler.dump(instance)
    except Exception:  # noqa: BLE001 - anything unpicklable (or cyclic) is simply validated every time
        return None
    return hashlib.blake2b(buffer.getbuffer(), digest_size=20).digest()


def violations(instance: Any, name: str, *, hints: Mapping[str, str] | None = None) -> list[Violation]:
    """Every schema violation of `instance` against schemas/<name>, sorted by path then message.

    A document is validated once per process: the same content found valid before is valid
    again (several readers along one pipeline read the same comparison; a validation costs
    milliseconds, the digest microseconds)."""
    digest = _digest(instance)
    if digest is not None and (name, digest) in _valid:
        return []
    found = [v for error in validator(name).iter_errors(instance) for v in explain(error, hints=hints)]
    if not found and digest is not None:
        if len(_valid) >= _VALID_MAX:
            _valid.clear()
        _valid[(name, digest)] = None
    return sorted(set(found), key=lambda v: (v.path, v.message))


def schema_errors(instance: Any, name: str, *, limit: int = 50) -> list[str]:
    """Every violation as '<json path>: <message>' (at most `limit`)."""
    return [str(v) for v in violations(instance, name)[:limit]]


def raise_first(found: list[Violation] | list[str], *, source: str, hint: str | None = None) -> None:
    """InputError naming the first violation and how many more there are (nothing when none)."""
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise InputError(f"{source}: {found[0]}{more}", hint=hint)


def check(instance: Any, name: str, *, source: str, hint: str | None = None) -> Any:
    """Return `instance` if valid; otherwise InputError naming the first violation and the count."""
    raise_first(violations(instance, name), source=source, hint=hint)
    return instance
