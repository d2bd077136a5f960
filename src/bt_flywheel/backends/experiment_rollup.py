"""An experiment's roots in the shape `flywheel compare` reads (DESIGN.md §4), whoever ran it.

The Braintrust SDK logs a root `eval` span per (case, trial) without scores, one `score` span per
scorer, and no trial index (BRAINTRUST.md §2). `flywheel eval` and `flywheel ingest` of such an
experiment (what `bt eval` / `braintrust eval` in CI leaves, or a `bt sync pull` of it) both use
these helpers, so both store the same thing on each root:

- `scores`: the root's own scores updated with every child scorer span's `scores`;
- `metadata.dataset_row_id`: kept if set, else the dataset record id (`origin.id`), else the
  EvalCase id (a scorer span's `input.id`), else a hash of the input (`core.ids.input_hash`);
- `metadata.split`: kept, else null;
- `metadata.trial`: kept if set, else numbered within the dataset row after the known ones, in
  `created` then root id order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bt_flywheel.core.ids import input_hash


def is_score_span(span: dict[str, Any]) -> bool:
    return (span.get("span_attributes") or {}).get("type") == "score"


def rolled_scores(root: dict[str, Any], spans: list[dict[str, Any]]) -> dict[str, Any]:
    """The root's scores updated with its child scorer spans' scores."""
    rolled = dict(root.get("scores") or {})
    for span in spans:
        if span is not root and is_score_span(span):
            rolled.update(span.get("scores") or {})
    return rolled


def dataset_row_id(root: dict[str, Any], spans: list[dict[str, Any]]) -> str:
    """metadata.dataset_row_id, else origin.id, else a scorer span's input.id, else an input hash."""
    found = (root.get("metadata") or {}).get("dataset_row_id") or (root.get("origin") or {}).get("id")
    if not found:
        found = next((s["input"]["id"] for s in spans if is_score_span(s) and isinstance(s.get("input"), dict)
                      and isinstance(s["input"].get("id"), str) and s["input"]["id"]), None)
    return str(found) if found else input_hash(root.get("input"))


def fill_missing_trials(roots: list[dict[str, Any]]) -> None:
    """A root without metadata.trial is numbered within its dataset row after the known ones."""
    by_row: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for root in roots:
        by_row[str(root["metadata"]["dataset_row_id"])].append(root)
    for group in by_row.values():
        used = {r["metadata"]["trial"] for r in group if _is_trial(r["metadata"].get("trial"))}
        free = (i for i in range(len(group) + len(used)) if i not in used)
        for root in sorted(group, key=lambda r: (str(r.get("created") or ""), str(r.get("id")))):
            if not _is_trial(root["metadata"].get("trial")):
                root["metadata"]["trial"] = next(free)


def roll_up(roots: list[dict[str, Any]], spans_by_root: dict[str, list[dict[str, Any]]]) -> None:
    """Give each root (in place) its rolled-up scores, dataset_row_id, split and trial."""
    for root in roots:
        spans = spans_by_root.get(root.get("root_span_id") or root["id"], [])
        metadata = dict(root.get("metadata") or {})
        metadata["dataset_row_id"] = dataset_row_id({**root, "metadata": metadata}, spans)
        metadata.setdefault("split", None)
        metadata.setdefault("trial", None)
        root["metadata"] = metadata
        root["scores"] = rolled_scores(root, spans)
    fill_missing_trials(roots)


def _is_trial(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
