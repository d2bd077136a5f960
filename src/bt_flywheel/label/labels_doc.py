"""The labels document (`bt-flywheel-labels/v1`, schemas/labels.schema.json) as one typed model.

`flywheel label export` writes it (kind=export: the pending rows, the rubric and its version);
the judge fills each row's `label`/`expected`; `flywheel label apply` and the `file` labeler read
it back (kind=export, or the compact kind=labels). ``LabelsDoc.from_dict`` is the one reader: a
document whose top level breaks the schema is rejected whole (one line naming the file and the
JSON path); a bad row is kept as an entry carrying its own problems, so apply can name each bad
row on its own line and still apply the good ones when asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bt_flywheel.core import schemas
from bt_flywheel.core.errors import InputError

CONTRACT = "bt-flywheel-labels/v1"
SCHEMA_NAME = "labels.schema.json"
HINT = "see schemas/labels.schema.json"
_ENTRY_PATH = re.compile(r"^\$\.(rows|labels)\[(\d+)\](.*)$")


@dataclass(frozen=True)
class RubricSpec:
    """The rubric an export carries: its version, text and (when it lists them) allowed labels."""

    version: str
    text: str
    labels: tuple[str, ...] = ()
    sha256: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "text": self.text,
                "labels": list(self.labels) or None, "path": self.path}


@dataclass(frozen=True)
class LabelEntry:
    """One row of the file: what the judge filled in, or (``problems``) why the row is invalid."""

    index: int
    id: str | None
    label: str | None = None
    expected: Any = None
    rationale: str | None = None
    input: Any = None
    context: Mapping[str, Any] | None = None
    problems: tuple[str, ...] = ()

    @property
    def filled(self) -> bool:
        """False while the judge has left the row null: it stays pending, which is not an error."""
        return self.label is not None or self.expected is not None

    def to_dict(self, *, compact: bool) -> dict[str, Any]:
        if compact:
            return {"id": self.id, "label": self.label, "expected": self.expected, "rationale": self.rationale}
        return {"id": self.id, "input": self.input, "context": dict(self.context) if self.context is not None else None,
                "label": self.label, "expected": self.expected, "rationale": self.rationale}


@dataclass(frozen=True)
class LabelsDoc:
    """A labels file: kind=export (rubric + rows) or kind=labels (just the labels)."""

    kind: str
    entries: tuple[LabelEntry, ...]
    labeler_model: str | None = None
    rubric_version: str | None = None
    rubric: RubricSpec | None = None
    dataset_rows: str | None = None
    instructions: str | None = None
    created_at: str | None = None

    @property
    def entries_key(self) -> str:
        return "rows" if self.kind == "export" else "labels"

    def where(self, entry: LabelEntry, source: str) -> str:
        """`<file>: rows[3] (id ...)`, how a row is named in apply's problems."""
        named = f" (id {entry.id})" if isinstance(entry.id, str) else ""
        return f"{source}: {self.entries_key}[{entry.index}]{named}"

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "labels") -> LabelsDoc:
        """Validate ``doc``; InputError names the first top-level violation, row problems stay per row."""
        if not isinstance(doc, Mapping):
            raise InputError(f"{source}: expected a JSON object with contract, kind and rows/labels", hint=HINT)
        top: list[schemas.Violation] = []
        row_problems: dict[int, list[str]] = {}
        for violation in schemas.violations(doc, SCHEMA_NAME):
            match = _ENTRY_PATH.match(violation.path)
            if match is None or match.group(1) != ("rows" if doc.get("kind") == "export" else "labels"):
                top.append(violation)
                continue
            field = match.group(3).lstrip(".")
            row_problems.setdefault(int(match.group(2)), []).append(
                f"{field}: {violation.message}" if field else violation.message)
        schemas.raise_first(top, source=source, hint=HINT)
        kind = doc["kind"]
        items = doc["rows"] if kind == "export" else doc["labels"]
        entries = tuple(_entry(i, item, tuple(row_problems.get(i, ()))) for i, item in enumerate(items))
        spec = doc.get("rubric") if kind == "export" else None
        rubric = None if spec is None else RubricSpec(
            version=spec["version"], text=spec["text"], labels=tuple(spec.get("labels") or ()),
            sha256=spec.get("sha256"), path=spec.get("path"))
        return cls(kind=kind, entries=entries, labeler_model=doc.get("labeler_model"),
                   rubric_version=doc.get("rubric_version"), rubric=rubric, dataset_rows=doc.get("dataset_rows"),
                   instructions=doc.get("instructions"), created_at=doc.get("created_at"))

    def to_dict(self) -> dict[str, Any]:
        """The document as `label export` writes it (kind=export) or the compact kind=labels form."""
        if self.kind == "export":
            if self.rubric is None:
                raise ValueError("an export carries its rubric")
            return {"contract": CONTRACT, "kind": "export", "created_at": self.created_at,
                    "dataset_rows": self.dataset_rows, "rubric": self.rubric.to_dict(),
                    "rubric_version": self.rubric_version, "labeler_model": self.labeler_model,
                    "instructions": self.instructions,
                    "rows": [e.to_dict(compact=False) for e in self.entries]}
        return {"contract": CONTRACT, "kind": "labels", "labeler_model": self.labeler_model,
                "rubric_version": self.rubric_version, "labels": [e.to_dict(compact=True) for e in self.entries]}


def _entry(index: int, item: Any, problems: tuple[str, ...]) -> LabelEntry:
    if problems or not isinstance(item, Mapping):
        entry_id = item.get("id") if isinstance(item, Mapping) else None
        return LabelEntry(index, entry_id if isinstance(entry_id, str) else None,
                          problems=problems or ("not an object",))
    return LabelEntry(index, item["id"], item.get("label"), item.get("expected"), item.get("rationale"),
                      item.get("input"), item.get("context"))
