"""The `agent` labeler, the lazy judge: export pending rows + rubric, a coding agent (or the
flywheel-judge subagent) fills in labels, apply validates and merges them.

Apply rules (schemas/labels.schema.json):
- a file that is not JSON or breaks the schema's top level is rejected whole;
- each bad row (unknown id, duplicate id, wrong type, label out of the rubric's range) is
  named on its own line; by default the whole file is then rejected and nothing is written,
  with `skip_bad` the good rows are applied and the bad ones reported;
- rows left null (or absent) are not errors: they stay pending and are reported as left;
- labels already applied are never lost: a missing or null entry keeps the stored label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import atomic_write_json, atomic_write_jsonl, read_json_file, read_jsonl_objects
from bt_flywheel.dataset.split import DEFAULT_SEED, DEFAULT_VALIDATION_FRACTION, split_rows
from bt_flywheel.label.base import (
    Label,
    LabelRun,
    Rubric,
    attach_label,
    is_labeled,
    label_of,
    now_iso,
    resolve_label,
)
from bt_flywheel.label.labels_doc import LabelEntry, LabelsDoc, RubricSpec

INSTRUCTIONS = (
    "For each row, read `input` (and `context`) and apply the rubric. Set `label` to one of "
    "rubric.labels when the rubric lists labels; otherwise set `expected` to the correct value "
    "(write \"none\" when it does not apply). Add a one-sentence `rationale`. Leave a row's label "
    "null to skip it for now. Set top-level `labeler_model` to the model that judged. Never copy "
    "context.production_output as ground truth. Then run `flywheel label apply <this file> "
    "--dataset-rows <rows file>`."
)


@dataclass
class AgentLabeler:
    """The lazy judge inside `curate`: every row without a label becomes pending in the export."""

    rubric: Rubric
    name: ClassVar[str] = "agent"
    waits_for_judge: ClassVar[bool] = True

    def label(self, rows: list[dict[str, Any]], **_: Any) -> LabelRun:
        return LabelRun(pending=[r["id"] for r in rows])

    def reuses(self, stored: Mapping[str, Any]) -> bool:
        return stored.get("labeler") == self.name and stored.get("rubric_version") == self.rubric.version


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Dataset rows from JSONL; errors name the file and line."""
    return read_jsonl_objects(path, what="dataset rows", require_id=True)


def export_pending(rows_path: str | Path, rubric: Rubric, out: str | Path, *, include_labeled: bool = False
                   ) -> dict[str, Any]:
    """Write the lazy-judge export: every row still without a label, the rubric and its version."""
    rows = read_rows(rows_path)
    pending = [r for r in rows if include_labeled or not is_labeled(r)]
    document = LabelsDoc(
        kind="export", created_at=now_iso(), dataset_rows=str(rows_path),
        rubric=RubricSpec(rubric.version, rubric.text, tuple(rubric.labels), rubric.sha256, rubric.path),
        rubric_version=rubric.version, labeler_model=None, instructions=INSTRUCTIONS,
        entries=tuple(_export_row(i, r, rubric) for i, r in enumerate(pending)))
    atomic_write_json(out, document.to_dict())
    return {"exported": len(pending), "already_labeled": len(rows) - len(pending), "out": str(out),
            "rubric_version": rubric.version}


def _export_row(index: int, row: dict[str, Any], rubric: Rubric) -> LabelEntry:
    metadata = row.get("metadata") or {}
    curation = metadata.get("curation") or {}
    context: dict[str, Any] = {"bucket": curation.get("bucket"), "facet": curation.get("facet"),
                               "trace_id": (metadata.get("source") or {}).get("trace_id")}
    if rubric.show_production_output:
        context["production_output"] = (metadata.get("production") or {}).get("output")
    labeled = is_labeled(row)
    return LabelEntry(index, row["id"], label_of(row).get("value") if labeled else None,
                      row.get("expected") if labeled else None, None, row.get("input"), context)


@dataclass
class ApplyResult:
    applied: int = 0
    relabeled: int = 0
    unchanged: int = 0
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rejected: bool = False
    rubric_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "relabeled": self.relabeled, "unchanged": self.unchanged,
                "left": len(self.left), "left_ids": self.left[:50], "problems": self.problems,
                "rejected": self.rejected, "rubric_version": self.rubric_version}


def apply_labels_file(labels_path: str | Path, rows_path: str | Path, *, rubric: Rubric | None = None,
                      skip_bad: bool = False, write: bool = True) -> ApplyResult:
    """Validate a filled export (or a kind=labels file) and merge it into the dataset rows file."""
    path = Path(labels_path)
    document = LabelsDoc.from_dict(read_json_file(path), source=str(path))
    allowed, version = _rubric_of(document, rubric, path)
    rows = read_rows(rows_path)
    result = ApplyResult(rubric_version=version)
    accepted = _accepted_labels(document, path, rows, rows_path, allowed, version, result)
    if result.problems and not skip_bad:
        result.rejected = True
        result.left = [r["id"] for r in rows if not is_labeled(r)]
        return result
    _merge(accepted, result)
    curation = next(((r.get("metadata") or {}).get("curation") or {} for r in rows), {})
    split_rows(rows, seed=curation.get("seed") or DEFAULT_SEED,
               validation_fraction=curation.get("validation_fraction", DEFAULT_VALIDATION_FRACTION))
    result.left = [r["id"] for r in rows if not is_labeled(r)]
    if write and (result.applied or result.relabeled):
        atomic_write_jsonl(rows_path, rows)
    return result


def _accepted_labels(document: LabelsDoc, path: Path, rows: list[dict[str, Any]], rows_path: str | Path,
                     allowed: list[str], version: str, result: ApplyResult) -> list[tuple[dict[str, Any], Label]]:
    """Step 2: each filled entry as a Label for its row; every bad entry named in `result.problems`."""
    by_id = {r["id"]: r for r in rows}
    seen: set[str] = set()
    accepted: list[tuple[dict[str, Any], Label]] = []
    for entry in document.entries:
        where = document.where(entry, str(path))
        if entry.problems:
            result.problems.append(f"{where}: {'; '.join(entry.problems)}")
            continue
        if entry.id not in by_id:
            result.problems.append(f"{where}: unknown id (not in {rows_path})")
            continue
        if entry.id in seen:
            result.problems.append(f"{where}: duplicate id (labeled twice in this file)")
            continue
        seen.add(entry.id)
        if not entry.filled:
            continue  # not filled in yet: stays as it is
        try:
            value, expected = resolve_label(allowed, entry.label, entry.expected)
        except ValueError as exc:
            result.problems.append(f"{where}: {exc}")
            continue
        accepted.append((by_id[entry.id], Label(entry.id, value, expected, AgentLabeler.name,
                                                document.labeler_model, version, now_iso(), entry.rationale)))
    return accepted


def _merge(accepted: list[tuple[dict[str, Any], Label]], result: ApplyResult) -> None:
    """Step 3: attach each accepted label; the same label by the same labeler counts as unchanged."""
    for row, label in accepted:
        current = label_of(row)
        if is_labeled(row) and current.get("value") == label.value and row.get("expected") == label.expected \
                and current.get("labeler") == AgentLabeler.name:
            result.unchanged += 1
            continue
        if is_labeled(row):
            result.relabeled += 1
        else:
            result.applied += 1
        attach_label(row, label)


def _rubric_of(document: LabelsDoc, rubric: Rubric | None, path: Path) -> tuple[list[str], str]:
    """Step 1: the allowed labels and the rubric version (the export's own, or --rubric's)."""
    if document.rubric is not None:
        file_version = document.rubric.version
        if rubric is not None and rubric.version != file_version:
            raise InputError(f"{path}: rubric version {file_version!r} does not match --rubric "
                             f"{rubric.version!r}")
        return list(document.rubric.labels), file_version
    if rubric is None:
        raise InputError(f"{path}: a kind=labels file needs --rubric (to know the allowed labels and version)")
    file_version = document.rubric_version
    if file_version and file_version != rubric.version:
        raise InputError(f"{path}: rubric_version {file_version!r} does not match --rubric {rubric.version!r}")
    return list(rubric.labels), rubric.version
