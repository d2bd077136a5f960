"""Labelers: where ground truth comes from (DESIGN.md §7). Never from production output.

- `llm`:   an OpenAI-compatible model with a versioned rubric (see label/llm.py);
- `agent`: the lazy judge: `export_pending` writes the rows + rubric, a coding agent fills the
           labels, `apply_labels_file` validates and merges them (see label/agent.py);
- `file`:  labels from a CSV/JSONL/JSON file keyed by row id;
- `score`: a WEAK label from an existing production score and a threshold: a verdict on the old
           output, not ground truth for a new one; its provenance says `weak: true`.

label/registry.py is the one list of labelers and their names.

Every labeler returns a LabelRun: the labels it produced (with provenance: which labeler and
which model actually labeled each row), the rows it could not label and why.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import loads_json, read_text_file
from bt_flywheel.core.ids import content_hash
from bt_flywheel.dataset.facets import is_none_value

# How much each labeler's ground truth is worth, weakest first. A re-curation never replaces a
# label with one from a weaker labeler unless asked to (`curate --relabel`): a `score` label is
# a verdict on the old output, an `llm` label a model's reading, while `agent` (the judge read
# the row against the rubric) and `file` (a review queue, usually people) are read by hand.
PROVENANCE_STRENGTH = {"score": 0, "llm": 1, "agent": 2, "file": 2}


def outranks(stored_labeler: str | None, new_labeler: str | None) -> bool:
    """True when a label by `stored_labeler` is stronger than one `new_labeler` would give."""
    return PROVENANCE_STRENGTH.get(stored_labeler or "", -1) > PROVENANCE_STRENGTH.get(new_labeler or "", -1)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- rubric ------------------------------------------------------------------------------------


@dataclass
class Rubric:
    """A versioned labeling rubric.

    `labels` lists the allowed class labels (e.g. pass/fail); when it is empty the rubric is
    free-text (the judge writes the correct value, e.g. a facet value or "none", and the class
    label is positive/negative by the one definition of none).
    """

    version: str
    text: str
    labels: list[str] = field(default_factory=list)
    sha256: str = ""
    path: str | None = None
    show_production_output: bool = False

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = content_hash(json.dumps([self.text, self.labels]), 64)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "text": self.text,
                "labels": self.labels or None, "path": self.path}


def load_rubric(path: str | Path) -> Rubric:
    """A rubric file: YAML/JSON {version, instructions|text, labels?, show_production_output?},
    or Markdown/text with optional YAML front matter (version, labels) and the body as text.
    Without a declared version the version is 'sha256:<first 12 hex of the file>'."""
    import yaml

    p = Path(path)
    raw = read_text_file(p, what="rubric file")
    meta: dict[str, Any] = {}
    text = raw
    try:
        if p.suffix.lower() in {".yaml", ".yml", ".json"}:
            loaded = yaml.safe_load(raw)
            if not isinstance(loaded, dict):
                raise InputError(f"{p}: expected a mapping with version, instructions and labels")
            meta = loaded
            text = str(meta.get("instructions") or meta.get("text") or "")
        elif raw.startswith("---"):
            _, front, body = raw.split("---", 2)
            meta = yaml.safe_load(front) or {}
            if not isinstance(meta, dict):
                raise InputError(f"{p}: front matter must be a mapping")
            text = body.strip()
    except (yaml.YAMLError, ValueError) as exc:
        raise InputError(f"{p}: invalid rubric front matter/YAML ({exc})") from None
    if not text.strip():
        raise InputError(f"{p}: the rubric has no instructions", hint="write the criteria in the file body")
    labels = meta.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str | int) for x in labels):
        raise InputError(f"{p}: labels: expected a list of strings")
    labels = [str(x) for x in labels]
    if len(set(labels)) != len(labels):
        raise InputError(f"{p}: labels: duplicate entries")
    version = meta.get("version")
    version = str(version) if version not in (None, "") else f"sha256:{content_hash(raw, 12)}"
    return Rubric(version=version, text=text.strip(), labels=labels, path=str(p),
                  sha256=content_hash(raw, 64), show_production_output=bool(meta.get("show_production_output")))


def resolve_label(rubric_labels: list[str] | None, label: Any, expected: Any = None) -> tuple[str, Any]:
    """(class label, expected) from what a labeler gave; ValueError names what is wrong.

    With allowed labels: `label` must be one of them; expected defaults to the label.
    Free text: the value is `expected` (or `label`); its class is negative when it is none.
    """
    if rubric_labels:
        if label is None:
            raise ValueError("label: missing")
        text = str(label).strip()
        if text not in rubric_labels:
            lowered = {x.lower(): x for x in rubric_labels}
            if text.lower() not in lowered:
                raise ValueError(f"label {text!r} is not one of {', '.join(rubric_labels)}")
            text = lowered[text.lower()]
        return text, (expected if expected is not None else text)
    value = expected if expected is not None else label
    if value is None:
        raise ValueError("expected: missing (give the correct value, or 'none')")
    if is_none_value(value):
        return "negative", "none"
    return "positive", value


# -- labels and runs ---------------------------------------------------------------------------


@dataclass
class Label:
    row_id: str
    value: str
    expected: Any
    labeler: str
    labeler_model: str | None = None
    rubric_version: str | None = None
    labeled_at: str = field(default_factory=now_iso)
    rationale: str | None = None
    weak: bool = False

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "labeled", "value": self.value, "labeler": self.labeler,
                               "labeler_model": self.labeler_model, "rubric_version": self.rubric_version,
                               "labeled_at": self.labeled_at}
        if self.rationale:
            out["rationale"] = self.rationale
        if self.weak:
            out["weak"] = True
        return out


@dataclass
class LabelRun:
    labels: dict[str, Label] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # row id -> why
    pending: list[str] = field(default_factory=list)  # waiting for the agent judge
    calls: int = 0  # model calls made in this run (llm)
    cached: int = 0  # labels reused from the cache (llm)
    reused: int = 0  # labels reused from the dataset (any labeler)
    kept_stronger: dict[str, str] = field(default_factory=dict)  # row id -> the stronger stored labeler kept
    downgraded: dict[str, str] = field(default_factory=dict)  # row id -> the stronger labeler replaced (--relabel)

    def summary(self) -> dict[str, Any]:
        return {"labeled": len(self.labels), "failed": len(self.failed), "pending": len(self.pending),
                "model_calls": self.calls, "cached": self.cached, "reused": self.reused,
                "kept_stronger": len(self.kept_stronger), "downgraded": len(self.downgraded)}


def attach_label(row: dict[str, Any], label: Label) -> dict[str, Any]:
    """Write a label into a dataset row: expected + metadata.label provenance."""
    row["expected"] = label.expected
    row.setdefault("metadata", {})["label"] = label.provenance()
    return row


def mark_pending(row: dict[str, Any], *, labeler: str = "agent", rubric_version: str | None = None) -> dict[str, Any]:
    row["expected"] = None
    metadata = row.setdefault("metadata", {})
    metadata["label"] = {"status": "pending", "value": None, "labeler": labeler, "rubric_version": rubric_version}
    metadata["split"] = None
    return row


def label_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return (row.get("metadata") or {}).get("label") or {}


def is_labeled(row: Mapping[str, Any]) -> bool:
    label = label_of(row)
    return bool(label) and label.get("status", "labeled") == "labeled" and bool(label.get("value"))


def is_weak_label(row: Mapping[str, Any]) -> bool:
    """True when a row's ground truth is a weak label (the `score` labeler's verdict on old output)."""
    return bool(label_of(row).get("weak"))


# -- score labeler -----------------------------------------------------------------------------


@dataclass
class ScoreLabeler:
    """Label = pass_label when the production score >= threshold, else fail_label.

    A WEAK label: the production score judged the OLD output, so it says whether that output was
    good, not what a new output should be. Provenance records `weak: true` and `compare` notes
    when a target's ground truth came from it."""

    score: str
    threshold: float = 0.5
    pass_label: str = "pass"
    fail_label: str = "fail"
    name: ClassVar[str] = "score"

    @property
    def rubric_version(self) -> str:
        return f"score:{self.score}>={self.threshold:g}"

    def label(self, rows: list[dict[str, Any]], **_: Any) -> LabelRun:
        run = LabelRun()
        for row in rows:
            scores = ((row.get("metadata") or {}).get("production") or {}).get("scores") or {}
            value = scores.get(self.score)
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                run.failed[row["id"]] = f"no numeric score {self.score!r} on the source trace"
                continue
            cls = self.pass_label if value >= self.threshold else self.fail_label
            run.labels[row["id"]] = Label(row["id"], cls, cls, self.name, None, self.rubric_version, weak=True)
        return run

    def reuses(self, stored: Mapping[str, Any]) -> bool:
        return False  # re-derived from the score on every run


# -- file labeler ------------------------------------------------------------------------------


@dataclass
class FileLabel:
    id: str | None
    label: Any = None
    expected: Any = None
    rationale: str | None = None
    labeler_model: str | None = None
    where: str = ""
    trace_id: str | None = None


def read_label_file(path: str | Path, *, label_field: str = "label") -> list[FileLabel]:
    """CSV (header: id,label[,expected,rationale,labeler_model]), JSONL, a JSON list, or a labels JSON
    file (the labels contract, schemas/labels.schema.json: a filled export or kind=labels).

    Each entry names its row by `id` (the dataset row id) or by `root_span_id`/`trace_id`
    (the source trace); `label_field` names the column holding the class label."""
    p = Path(path)
    text = read_text_file(p, what="labels file")
    items: list[FileLabel] = []
    if p.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        names = set(reader.fieldnames or [])
        if not names & {"id", "root_span_id", "trace_id"}:
            raise InputError(f"{p}: the CSV header needs an 'id' (or 'root_span_id') column and a "
                             f"{label_field!r} or 'expected' column")
        for line, record in enumerate(reader, start=2):
            items.append(FileLabel(id=(record.get("id") or "").strip() or None,
                                   trace_id=(record.get("root_span_id") or record.get("trace_id") or "").strip() or None,
                                   label=record.get(label_field) or None,
                                   expected=record.get("expected") or None,
                                   rationale=record.get("rationale") or None,
                                   labeler_model=record.get("labeler_model") or None, where=f"{p}:{line}"))
        return items
    stripped = text.lstrip()
    if stripped.startswith("{") and p.suffix.lower() == ".json":
        return _contract_labels(loads_json(text, p), p)
    if stripped.startswith("["):
        records = [(f"{p}: [{i}]", e) for i, e in enumerate(loads_json(text, p))]
    else:
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{p}:{line_no}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}:{line_no}: invalid JSON ({exc.msg})") from None
    for where, record in records:
        trace_id = record.get("root_span_id") or record.get("trace_id") if isinstance(record, dict) else None
        if not isinstance(record, dict) or not (isinstance(record.get("id"), str) or isinstance(trace_id, str)):
            raise InputError(f"{where}: expected an object with a string 'id' (or 'root_span_id')")
        items.append(FileLabel(id=record.get("id"), trace_id=trace_id, label=record.get(label_field),
                               expected=record.get("expected"), rationale=record.get("rationale"),
                               labeler_model=record.get("labeler_model"), where=where))
    return items


def _contract_labels(data: Any, path: Path) -> list[FileLabel]:
    """A labels JSON file is the labels contract (a filled export, or kind=labels)."""
    from bt_flywheel.label.labels_doc import LabelsDoc

    document = LabelsDoc.from_dict(data, source=str(path))
    items = []
    for entry in document.entries:
        where = document.where(entry, str(path))
        if entry.problems:
            raise InputError(f"{where}: {'; '.join(entry.problems)}")
        items.append(FileLabel(id=entry.id, label=entry.label, expected=entry.expected, rationale=entry.rationale,
                               labeler_model=document.labeler_model, where=where))
    return items


@dataclass
class FileLabeler:
    path: str
    rubric: Rubric | None = None
    label_field: str = "label"
    name: ClassVar[str] = "file"

    def label(self, rows: list[dict[str, Any]], **_: Any) -> LabelRun:
        entries = read_label_file(self.path, label_field=self.label_field)
        by_id: dict[str, FileLabel] = {}
        by_trace: dict[str, FileLabel] = {}
        for entry in entries:  # the last line for an id wins
            if entry.id:
                by_id[entry.id] = entry
            if entry.trace_id:
                by_trace[entry.trace_id] = entry
        run = LabelRun()
        allowed = self.rubric.labels if self.rubric else None
        if self.rubric:
            version = self.rubric.version
        else:
            version = f"file:sha256:{content_hash(Path(self.path).read_text(encoding='utf-8'), 12)}"
        for row in rows:
            trace_id = ((row.get("metadata") or {}).get("source") or {}).get("trace_id")
            entry = by_id.get(row["id"]) or (by_trace.get(trace_id) if trace_id else None)
            if entry is None or (entry.label is None and entry.expected is None):
                run.failed[row["id"]] = f"no label in {self.path}"
                continue
            try:
                if not allowed and entry.label is not None and not self.rubric:
                    value, expected = str(entry.label), entry.expected if entry.expected is not None else entry.label
                else:
                    value, expected = resolve_label(allowed, entry.label, entry.expected)
            except ValueError as exc:
                raise InputError(f"{entry.where}: id {entry.id or entry.trace_id}: {exc}") from None
            run.labels[row["id"]] = Label(row["id"], value, expected, self.name, entry.labeler_model, version,
                                          rationale=entry.rationale)
        return run

    def reuses(self, stored: Mapping[str, Any]) -> bool:
        return False  # re-read from the file on every run

