"""Curation end to end (DESIGN.md §7): select -> label -> split -> write -> upsert.

    from bt_flywheel.curate.pipeline import CurateOptions, curate, make_labeler
    summary = curate(CurateOptions(project="support", strategy="score-balanced", score="resolution",
                                   lo=0.0, hi=1.0, out_dir="curation", dataset="refusals"),
                     labeler=make_labeler(name, LabelerOptions(...)))  # label.registry

Ground truth comes only from the labeler, never from production output. Rows keep their stable
id and split forever: a rerun reuses labels already in the dataset (agent, llm) or re-derives
them (file, score), keeps stored splits and timestamps, and upserts nothing when nothing changed.
Rows still waiting for a label (the agent's export, or a failed llm call) are written to
dataset_rows.jsonl as pending and never uploaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bt_flywheel.backends.base import Backend, runner_for
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import atomic_write_json, atomic_write_jsonl
from bt_flywheel.core.redact import redact_obj
from bt_flywheel.curate.select import (
    Runner,
    Selection,
    build_rows,
    count_summary,
    parsed_calls,
    select_facets,
    select_score_balanced,
)
from bt_flywheel.dataset.facets import load_facet_definitions
from bt_flywheel.dataset.row_model import DatasetRow
from bt_flywheel.dataset.split import (
    DEFAULT_SEED,
    DEFAULT_VALIDATION_FRACTION,
    check_fraction,
    split_rows,
    stratum_counts,
)
from bt_flywheel.label.agent import AgentLabeler, export_pending, read_rows
from bt_flywheel.label.base import (
    LabelRun,
    attach_label,
    is_labeled,
    label_of,
    mark_pending,
    now_iso,
    outranks,
)
from bt_flywheel.label.registry import make_labeler

__all__ = ["CurateOptions", "curate", "make_labeler", "select_facets", "select_score_balanced", "build_rows",
           "UpsertPlan", "plan_upsert"]

ROWS_FILE = "dataset_rows.jsonl"
SUMMARY_FILE = "summary.json"
PARSED_CALLS_FILE = "parsed_calls.jsonl"
EXPORT_FILE = "label_export.json"
CACHE_FILE = "label_cache.jsonl"
DATASET_FIELDS = ("input", "expected", "metadata", "tags")


@dataclass
class CurateOptions:
    project: str
    out_dir: str | Path
    strategy: str = "score-balanced"  # score-balanced | facet | rows
    store_path: str | Path = ".flywheel/store.duckdb"
    score: str | None = None
    lo: float = 0.0
    hi: float = 1.0
    facets_path: str | Path | None = None
    per_bucket: int = 100
    window_days: int | None = 7
    where: str | None = None
    trace_ids: Sequence[str] = ()
    seed: str = DEFAULT_SEED
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    from_rows: str | Path | None = None
    dataset: str | None = None
    dataset_project: str | None = None
    dry_run: bool = False
    relabel: bool = False  # allow a weaker labeler to replace stored labels (label.base.PROVENANCE_STRENGTH)


@dataclass
class UpsertPlan:
    insert: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not uploaded: no label yet
    relabel: dict[str, str] = field(default_factory=dict)  # updated id -> "old labeler -> new labeler"
    kept_stronger: dict[str, str] = field(default_factory=dict)  # id -> stronger stored labeler, kept

    def as_dict(self) -> dict[str, Any]:
        return {"insert": len(self.insert), "update": len(self.update), "unchanged": len(self.unchanged),
                "not_uploaded_pending": len(self.pending), "label_changes": _tally(self.relabel),
                "kept_stronger_labels": _tally(self.kept_stronger)}


def _tally(by_id: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in by_id.values():
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


# -- existing rows ---------------------------------------------------------------------------


def dataset_record(row: dict[str, Any]) -> dict[str, Any]:
    record = {"id": row["id"], **{k: row.get(k) for k in DATASET_FIELDS}}
    if row.get("created"):
        record["created"] = row["created"]
    return record


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps({k: row.get(k) for k in DATASET_FIELDS}, sort_keys=True, default=str)


def plan_upsert(rows: Sequence[dict[str, Any]], existing: Sequence[dict[str, Any]],
                kept_stronger: dict[str, str] | None = None) -> UpsertPlan:
    """What an upsert by stable id would do: insert new ids, update changed rows, leave the rest;
    for updates whose label provenance changes, which labeler replaces which."""
    stored_rows = {r["id"]: r for r in existing}
    stored = {i: _canonical(r) for i, r in stored_rows.items()}
    plan = UpsertPlan(kept_stronger=dict(kept_stronger or {}))
    for row in rows:
        if not is_labeled(row):
            plan.pending.append(row["id"])
        elif row["id"] not in stored:
            plan.insert.append(row["id"])
        elif stored[row["id"]] != _canonical(row):
            plan.update.append(row["id"])
            old, new = label_of(stored_rows[row["id"]]).get("labeler"), label_of(row).get("labeler")
            if old != new:
                plan.relabel[row["id"]] = f"{old} -> {new}"
        else:
            plan.unchanged.append(row["id"])
    return plan


# -- the pipeline --------------------------------------------------------------------------------


def _same_except_time(new: dict[str, Any], old: dict[str, Any]) -> bool:
    def strip(row: dict[str, Any]) -> str:
        copy = json.loads(json.dumps({k: row.get(k) for k in DATASET_FIELDS}, default=str))
        (copy.get("metadata") or {}).get("label", {}).pop("labeled_at", None)
        (copy.get("metadata") or {}).pop("split", None)
        return json.dumps(copy, sort_keys=True)

    return strip(new) == strip(old)


def label_rows(rows: list[dict[str, Any]], labeler: Any, previous: dict[str, dict[str, Any]], *,
               progress: Any = None, relabel: bool = False) -> LabelRun:
    """Label rows in place, reusing stored labels the labeler would repeat, and keeping stored
    labels from a stronger labeler (PROVENANCE_STRENGTH) unless `relabel`."""
    todo = []
    reused = 0
    kept: dict[str, str] = {}
    downgraded: dict[str, str] = {}
    for row in rows:
        old = previous.get(row["id"])
        stronger = old is not None and is_labeled(old) and outranks(label_of(old).get("labeler"), labeler.name)
        if old is not None and is_labeled(old) and (labeler.reuses(label_of(old)) or (stronger and not relabel)):
            row["expected"] = old.get("expected")
            row["metadata"]["label"] = dict(label_of(old))
            if stronger:
                kept[row["id"]] = label_of(old)["labeler"]
            else:
                reused += 1
        else:
            if stronger:
                downgraded[row["id"]] = label_of(old)["labeler"]
            todo.append(row)
    run = labeler.label(todo, progress=progress) if todo else LabelRun()
    run.reused = reused
    run.kept_stronger, run.downgraded = kept, downgraded
    version = getattr(getattr(labeler, "rubric", None), "version", None) or getattr(labeler, "rubric_version", None)
    for row in todo:
        label = run.labels.get(row["id"])
        if label is not None:
            attach_label(row, label)
        else:
            mark_pending(row, labeler=labeler.name, rubric_version=version)
            if row["id"] in run.failed:
                row["metadata"]["label"]["error"] = run.failed[row["id"]]
    return run


def curate(options: CurateOptions, *, labeler: Any, backend: Backend | None = None, runner: Runner | None = None,
           confirm: Callable[[list[dict[str, Any]], UpsertPlan], bool] | None = None,
           progress: Any = None) -> dict[str, Any]:
    """Run curation; returns the summary (also written to <out_dir>/summary.json).

    `backend` holds the candidates and the dataset (default: the local store at
    `options.store_path`); `runner` overrides where candidate queries run."""
    check_fraction(options.validation_fraction)
    out_dir = Path(options.out_dir)
    dataset_project = options.dataset_project or options.project
    if backend is None:
        from bt_flywheel.backends.local import LocalBackend

        backend = LocalBackend(options.store_path)

    with backend.reading():     # the selection's queries and the stored dataset: one open store
        rows, selection = _candidate_rows(options, backend, runner)
        stored, previous_file, previous = _already_stored(options, backend, dataset_project, out_dir)
    if options.strategy == "rows":
        label_run = LabelRun(labels={}, pending=[r["id"] for r in rows if not is_labeled(r)])
    else:
        label_run = label_rows(rows, labeler, previous, progress=progress, relabel=options.relabel)
    rows = _stamp_and_split(options, rows, stored, previous_file, previous)
    export = _write_rows(out_dir, rows, selection, labeler)

    plan = plan_upsert(rows, stored, label_run.kept_stronger)
    summary = _summary(options, selection, rows, label_run, plan, export)
    if options.dataset:
        summary["dataset"] = _upsert_dataset(options, backend, dataset_project, rows, plan, confirm)
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _candidate_rows(options: CurateOptions, backend: Backend,
                    runner: Runner | None) -> tuple[list[dict[str, Any]], Selection | None]:
    """Step 1: the candidate rows, from a previous rows file or from a selection strategy."""
    if options.strategy == "rows":
        if not options.from_rows:
            raise InputError("--from-rows FILE is required to publish already curated rows")
        rows = read_rows(options.from_rows)
        for row in rows:
            if row.get("metadata", {}).get("split") and not is_labeled(row):
                row["metadata"]["split"] = None
        return rows, None
    run = runner or runner_for(backend, options.project)
    project_id = backend.project_id(options.project)
    common = dict(project=options.project, project_id=project_id, per_bucket=options.per_bucket,
                  window_days=options.window_days, where=options.where, trace_ids=options.trace_ids,
                  seed=options.seed)
    if options.per_bucket < 0:
        raise InputError(f"--per-bucket: expected a non-negative integer, got {options.per_bucket}")
    if options.strategy == "score-balanced":
        if not options.score:
            raise InputError("--strategy score-balanced needs --score NAME")
        if options.lo >= options.hi:
            raise InputError(f"--lo {options.lo} must be below --hi {options.hi}")
        selection = select_score_balanced(run, score=options.score, lo=options.lo, hi=options.hi, **common)
    elif options.strategy == "facet":
        if not options.facets_path:
            raise InputError("--strategy facet needs --facets facet_definitions.yaml")
        facets = load_facet_definitions(options.facets_path)
        selection = select_facets(run, facets=facets, **common)
    else:
        raise InputError(f"--strategy: expected score-balanced or facet, got {options.strategy!r}")
    return build_rows(selection, seed=options.seed, validation_fraction=options.validation_fraction), selection


def _already_stored(options: CurateOptions, backend: Backend, dataset_project: str, out_dir: Path,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Step 2: what is already stored: the dataset (authoritative), then a previous run's rows file."""
    stored = backend.dataset_rows(dataset_project, options.dataset) if options.dataset else []
    previous_file = read_rows(out_dir / ROWS_FILE) if (out_dir / ROWS_FILE).exists() else []
    previous = {r["id"]: r for r in previous_file}
    previous.update({r["id"]: r for r in stored})
    return stored, previous_file, previous


def _stamp_and_split(options: CurateOptions, rows: list[dict[str, Any]], stored: list[dict[str, Any]],
                     previous_file: list[dict[str, Any]], previous: dict[str, dict[str, Any]],
                     ) -> list[dict[str, Any]]:
    """Step 4: redact, keep stored timestamps, split (stored splits never move), check each row."""
    # stored rows and files are redacted: compare like with like (a rationale may quote a key too)
    rows = [redact_obj(row) for row in rows]
    # keep stored timestamps when nothing but the time would change; stamp new rows
    now = now_iso()
    for row in rows:
        old = previous.get(row["id"])
        if old is not None and is_labeled(row) and is_labeled(old) and _same_except_time(row, old):
            row["metadata"]["label"]["labeled_at"] = label_of(old).get("labeled_at")
        row["created"] = (old or {}).get("created") or row.get("created") or now

    stored_ids = {r["id"] for r in stored}
    split_rows(rows, validation_fraction=options.validation_fraction, seed=options.seed,
               existing_rows=list(stored) + [r for r in previous_file if r["id"] not in stored_ids])
    for index, row in enumerate(rows):
        DatasetRow.from_dict(row, source=f"{Path(options.out_dir) / ROWS_FILE}: row {index + 1} (id {row['id']})")
    return rows


def _write_rows(out_dir: Path, rows: list[dict[str, Any]], selection: Selection | None,
               labeler: Any) -> dict[str, Any] | None:
    """Step 5: the rows file, the facet calls file, and the judge export of pending rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out_dir / ROWS_FILE, rows)
    if selection is not None and selection.strategy == "facet":
        atomic_write_jsonl(out_dir / PARSED_CALLS_FILE, parsed_calls(selection))
    pending_ids = [r["id"] for r in rows if not is_labeled(r)]
    if getattr(labeler, "waits_for_judge", False) and pending_ids:
        return export_pending(out_dir / ROWS_FILE, labeler.rubric, out_dir / EXPORT_FILE)
    return None


def _upsert_dataset(options: CurateOptions, backend: Backend, dataset_project: str, rows: list[dict[str, Any]],
                    plan: UpsertPlan, confirm: Callable[[list[dict[str, Any]], UpsertPlan], bool] | None,
                    ) -> dict[str, Any]:
    """Step 6: upsert the changed labeled rows by stable id (after confirmation when asked)."""
    info: dict[str, Any] = {"name": options.dataset, "project": dataset_project, "backend": backend.name,
                            "plan": plan.as_dict(), "written": False, "dry_run": options.dry_run}
    labeled = [r for r in rows if is_labeled(r)]
    changes = plan.insert or plan.update
    if not options.dry_run and changes:
        if confirm is not None and not confirm(labeled, plan):
            info["declined"] = True
        else:
            changed_ids = set(plan.insert) | set(plan.update)
            to_write = [r for r in labeled if r["id"] in changed_ids]
            result = {"inserted": len(plan.insert), "updated": len(plan.update),
                      **backend.upsert_dataset(dataset_project, options.dataset,
                                               [dataset_record(r) for r in to_write])}
            result["unchanged"] = result.get("unchanged", 0) + len(plan.unchanged)
            info.update(written=True, result=result)
    elif not options.dry_run:
        info.update(written=True, result={"inserted": 0, "updated": 0, "unchanged": len(plan.unchanged)})
    return info


def _summary(options: CurateOptions, selection: Selection | None, rows: list[dict[str, Any]], label_run: LabelRun,
             plan: UpsertPlan, export: dict[str, Any] | None) -> dict[str, Any]:
    counts = count_summary(rows)
    pending = [r for r in rows if not is_labeled(r)]
    summary: dict[str, Any] = {
        "strategy": options.strategy,
        "project": options.project,
        "seed": options.seed,
        "validation_fraction": options.validation_fraction,
        **counts,
        "strata": [s.as_dict() for s in stratum_counts(rows, validation_fraction=options.validation_fraction)],
        "buckets": selection.asked if selection else [],
        "shortfalls": selection.shortfalls if selection else [],
        "missing_trace_ids": selection.missing_trace_ids if selection else [],
        "selection_queries": selection.queries if selection else {},
        "labeling": label_run.summary(),
        "unlabeled": [{"id": r["id"], "labeler": label_of(r).get("labeler"), "why": label_of(r).get("error")
                       or ("waiting for the agent judge" if label_of(r).get("labeler") == AgentLabeler.name else "no label")}
                      for r in pending][:200],
        "plan": plan.as_dict(),
        "files": {"dataset_rows": str(Path(options.out_dir) / ROWS_FILE)},
    }
    if selection is not None and selection.strategy == "facet":
        summary["files"]["parsed_calls"] = str(Path(options.out_dir) / PARSED_CALLS_FILE)
    if export:
        summary["files"]["label_export"] = export["out"]
        summary["next"] = (f"fill {export['out']} (the lazy judge), then run: flywheel label apply {export['out']} "
                           f"--dataset-rows {summary['files']['dataset_rows']}")
    return summary
