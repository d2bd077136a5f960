"""The dataset row (schemas/dataset-row.schema.json) as one typed model.

``DatasetRow.from_dict`` validates a row against the schema (one line naming the source, i.e. the
file and row, and the JSON path of the first violation) and gives typed access to what the
schema defines: split, source, label provenance and curation. Like the comparison model it keeps
the row it was read from (``raw``), so ``to_dict`` writes a row back exactly as it was, metadata
the schema leaves open (the production output and scores, a facet's name) included.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bt_flywheel.core import schemas

SCHEMA_NAME = "dataset-row.schema.json"


@dataclass(frozen=True)
class RowSource:
    """The trace (root span id) and span a row was built from."""

    trace_id: str
    span_id: str | None
    project_id: str
    created: str | None


@dataclass(frozen=True)
class RowLabel:
    """Label provenance: who labeled the row, with which model and rubric, or that it is pending."""

    labeler: str
    status: str
    value: str | None
    labeler_model: str | None = None
    rubric_version: str | None = None
    labeled_at: str | None = None
    rationale: str | None = None
    weak: bool = False

    @property
    def labeled(self) -> bool:
        return self.status == "labeled"


@dataclass(frozen=True)
class RowCuration:
    bucket: str
    seed: str
    strategy: str | None = None
    facet: str | None = None
    selection_query: str | None = None


@dataclass(frozen=True)
class DatasetRow:
    id: str
    input: Any
    expected: Any
    split: str | None
    source: RowSource
    label: RowLabel
    curation: RowCuration
    facet_name: str | None
    tags: tuple[str, ...] | None
    created: str | None
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, row: Any, *, source: str = "dataset row") -> DatasetRow:
        """Validate ``row``; InputError names the first violation (`<source>: $.metadata.split: ...`)."""
        schemas.check(row, SCHEMA_NAME, source=source)
        metadata = row["metadata"]
        src, label, curation = metadata["source"], metadata["label"], metadata["curation"]
        tags = row.get("tags")
        return cls(
            id=row["id"], input=row["input"], expected=row["expected"], split=metadata["split"],
            source=RowSource(src["trace_id"], src["span_id"], src["project_id"], src["created"]),
            label=RowLabel(label["labeler"], label.get("status", "labeled"), label.get("value"),
                           label.get("labeler_model"), label.get("rubric_version"), label.get("labeled_at"),
                           label.get("rationale"), bool(label.get("weak", False))),
            curation=RowCuration(curation["bucket"], curation["seed"], curation.get("strategy"), curation.get("facet"),
                                 curation.get("selection_query")),
            facet_name=metadata.get("facet_name"), tags=None if tags is None else tuple(tags),
            created=row.get("created"), raw=copy.deepcopy(dict(row)))

    def to_dict(self) -> dict[str, Any]:
        """The row as it was read (a copy)."""
        return copy.deepcopy(dict(self.raw))
