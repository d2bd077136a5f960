"""Stable dataset row ids (DESIGN.md §4).

The same trace (and facet) always yields the same row id, so rerunning curation upserts
instead of duplicating, and the split can hash the id rather than a position.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ROW_ID_PREFIX = "flywheel-row-v1"
ROW_ID_LENGTH = 32


def stable_row_id(project_id: str, root_span_id: str, facet: str | None = None) -> str:
    """sha256("flywheel-row-v1|" + project_id + "|" + root_span_id + "|" + facet_or_empty)[:32]."""
    if not project_id or not isinstance(project_id, str):
        raise ValueError("project_id: expected a non-empty string")
    if not root_span_id or not isinstance(root_span_id, str):
        raise ValueError("root_span_id: expected a non-empty string")
    text = f"{ROW_ID_PREFIX}|{project_id}|{root_span_id}|{facet or ''}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ROW_ID_LENGTH]


def seeded_order_key(seed: str, key: str) -> str:
    """sha256(seed + "|" + key): the one seeded ordering used for sampling and splitting."""
    return hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()


def content_hash(text: str, length: int = 16) -> str:
    """A short sha256 of some text (selection queries, rubric text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def input_hash(value: Any) -> str:
    """The dataset_row_id of a case that has no id: sha256 of its canonical JSON input, 32 hex chars."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(("flywheel-input-v1|" + text).encode("utf-8")).hexdigest()[:32]
