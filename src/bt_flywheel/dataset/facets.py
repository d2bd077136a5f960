"""Facets: the one definition of "none", facet definitions, and weak buckets.

A facet is a value an LLM (or the app) logs about each trace, e.g. `issues` = "billing
dispute" or "none". Curation samples weak positives (a real value was logged) and weak
negatives (nothing was logged) per facet; a labeler then decides the ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import read_text_file

# The ONE definition of an empty facet value, used by curation, labeling and scoring.
NONE_VALUES = frozenset({"", "none", "n/a", "no match", "null"})
_SPACES = re.compile(r"\s+")


def normalize_text(value: str) -> str:
    """Lowercase, trim, collapse whitespace, drop surrounding quotes and trailing periods."""
    text = _SPACES.sub(" ", value).strip().strip("\"'`").strip().rstrip(".").strip().lower()
    return text


def is_none_value(value: Any) -> bool:
    """True when a logged or labeled facet value means "the facet does not apply".

    None, False, empty strings/lists/objects, and (case- and whitespace-insensitive,
    surrounding quotes and a final period ignored) "none", "n/a", "no match", "null".
    A list or object is none when it is empty or every element/value is none.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return normalize_text(value) in NONE_VALUES
    if isinstance(value, bool):
        return value is False
    if isinstance(value, list | tuple):
        return all(is_none_value(v) for v in value)
    if isinstance(value, Mapping):
        return all(is_none_value(v) for v in value.values())
    return False


def weak_bucket(value: Any) -> str:
    """'negative' when the logged value is none, else 'positive'."""
    return "negative" if is_none_value(value) else "positive"


def get_path(row: Mapping[str, Any], path: str) -> Any:
    """A dotted path into a span row ('metadata.facets.issues', 'output'); None when absent."""
    current: Any = row
    for part in split_path(path):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def split_path(path: str) -> list[str]:
    """'metadata."facet name".x' -> ['metadata', 'facet name', 'x']."""
    parts = re.findall(r'"([^"]+)"|([^.]+)', path)
    return [quoted or plain for quoted, plain in parts]


def sql_path(path: str) -> str:
    """A dotted path as Braintrust SQL (segments that are not plain identifiers are quoted)."""
    return ".".join(p if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) else f'"{p}"' for p in split_path(path))


@dataclass(frozen=True)
class FacetDefinition:
    """One facet of facet_definitions.yaml (schemas/facet-definitions.schema.json, `$defs/facet`)."""

    name: str
    description: str = ""
    prompt: str = ""
    value_path: str = ""
    span_filter: str = ""
    input_from: str = ""
    positive_limit: int | None = None
    negative_limit: int | None = None
    # the captured production call (`flywheel facets bootstrap`); a facet eval sends
    # messages + the row's conversation + suffix_messages to `model`
    messages: list[dict[str, Any]] = field(default_factory=list)
    suffix_messages: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    output_schema: dict[str, Any] | None = None
    captured: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # the facet's `x-` extensions

    def __post_init__(self) -> None:
        if not self.value_path:
            object.__setattr__(self, "value_path", "output" if self.span_filter else f"metadata.facets.{self.name}")
        if not self.input_from:
            object.__setattr__(self, "input_from", "span" if self.span_filter else "root")

    def limits(self, default: int) -> dict[str, int]:
        return {
            "positive": default if self.positive_limit is None else self.positive_limit,
            "negative": default if self.negative_limit is None else self.negative_limit,
        }

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> FacetDefinition:
        """One facet entry, already valid against the schema (see FacetDefinitions.from_dict)."""
        known = {k: item[k] for k in FIELDS if k in item}
        return cls(**known, extra={k: v for k, v in item.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "prompt": self.prompt,
                               "messages": self.messages, "suffix_messages": self.suffix_messages}
        if self.span_filter:
            out["span_filter"] = self.span_filter
        out.update(value_path=self.value_path, input_from=self.input_from, captured=self.captured)
        optional = {"model": self.model or None, "output_schema": self.output_schema,
                    "positive_limit": self.positive_limit, "negative_limit": self.negative_limit}
        out.update({k: v for k, v in optional.items() if v is not None})
        return {**out, **self.extra}


FIELDS = ("name", "description", "prompt", "value_path", "span_filter", "input_from", "positive_limit",
          "negative_limit", "messages", "suffix_messages", "model", "output_schema", "captured")
SCHEMA_NAME = "facet-definitions.schema.json"
HINT = "see schemas/facet-definitions.schema.json"


@dataclass(frozen=True)
class FacetDefinitions:
    """The facet definitions document: its facets in file order, names unique."""

    facets: tuple[FacetDefinition, ...]
    version: int | str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)  # top-level `x-` keys

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "facet definitions") -> FacetDefinitions:
        """Validate ``doc`` against the schema (and unique names); InputError names the first violation."""
        from bt_flywheel.core.schemas import schema_errors

        errors = schema_errors(doc, SCHEMA_NAME)
        if errors:
            more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
            raise InputError(f"{source}: {errors[0]}{more}", hint=HINT)
        seen: set[str] = set()
        for index, item in enumerate(doc["facets"]):
            if item["name"] in seen:
                raise InputError(f"{source}: $.facets[{index}].name: duplicate facet {item['name']!r}")
            seen.add(item["name"])
        return cls(facets=tuple(FacetDefinition.from_dict(item) for item in doc["facets"]),
                   version=doc.get("version"), extensions={k: v for k, v in doc.items() if k.startswith("x-")})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.version is None else {"version": self.version}
        return {**out, "facets": [f.to_dict() for f in self.facets], **self.extensions}


def read_facet_definitions(path: str | Path) -> FacetDefinitions:
    """Read facet_definitions.yaml (or .json) and validate it."""
    import yaml

    p = Path(path)
    text = read_text_file(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return FacetDefinitions.from_dict(data, source=str(p))


def load_facet_definitions(path: str | Path) -> list[FacetDefinition]:
    """The facets of facet_definitions.yaml (or .json), validated against the schema."""
    return list(read_facet_definitions(path).facets)
