"""What the report reads besides the comparison: per-row outputs and scores from a backend (the
local store or Braintrust), the dataset's split/label balance, the ledger file, and (with several
experiments) the leaderboard. `build_report_inputs` gathers all of it for `flywheel report`.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bt_flywheel.backends.base import Backend, as_backend
from bt_flywheel.core.errors import InputError
from bt_flywheel.report.html import _as_text, _num, _short
from bt_flywheel.verify.comparison_model import as_comparison


def load_report_rows(source: str | os.PathLike[str] | Backend, baseline: str, candidate: str, *,
                     project: str | None = None,
                     trace_url: Callable[[str, Mapping[str, Any]], str | None] | None = None) -> list[dict[str, Any]]:
    """Per dataset row: input, both outputs (first trial), per-score trial means on each side.

    `source` is a Backend or a local store path. `trace_url(side, root_row)` may return a link to
    the trace (Braintrust); side is 'baseline' or 'candidate'.
    """
    backend = as_backend(source)
    sides: dict[str, dict[str, dict[str, Any]]] = {}
    with backend.reading():
        for side, name in (("baseline", baseline), ("candidate", candidate)):
            found = backend.experiment(name, project=project)
            sides[side] = _collect_side(backend.experiment_roots(found), side, trace_url)
    out = []
    for row_id in sorted(set(sides["baseline"]) | set(sides["candidate"])):
        b, c = sides["baseline"].get(row_id, {}), sides["candidate"].get(row_id, {})
        out.append({"row_id": row_id, "input": (b or c).get("input"), "expected": (b or c).get("expected"),
                    "metadata": (b or c).get("metadata"),
                    "baseline_output": b.get("output"), "candidate_output": c.get("output"),
                    "baseline_scores": b.get("scores", {}), "candidate_scores": c.get("scores", {}),
                    "baseline_url": b.get("url"), "candidate_url": c.get("url")})
    return out


def _collect_side(roots: Iterable[dict[str, Any]], side: str,
                  trace_url: Callable[[str, Mapping[str, Any]], str | None] | None) -> dict[str, dict[str, Any]]:
    from bt_flywheel.verify.compare import row_key

    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in roots:
        grouped[row_key(row) or str(row.get("id"))].append(row)
    out = {}
    for row_id, trials in grouped.items():
        trials.sort(key=lambda r: ((r.get("metadata") or {}).get("trial") or 0))
        sums: dict[str, list[float]] = defaultdict(list)
        for t in trials:
            for name, value in (t.get("scores") or {}).items():
                if _num(value) is not None:
                    sums[name].append(float(value))
        first = trials[0]
        out[row_id] = {"input": first.get("input"), "expected": first.get("expected"),
                       "metadata": first.get("metadata"), "output": first.get("output"),
                       "scores": {k: sum(v) / len(v) for k, v in sums.items()},
                       "url": trace_url(side, first) if trace_url else None}
    return out


def _label_of(expected: Any) -> str:
    if expected is None:
        return "(none)"
    if isinstance(expected, bool):
        return "true" if expected else "false"
    if isinstance(expected, str | int | float):
        return _short(expected, 40)
    if isinstance(expected, Mapping):
        for key in ("label", "decision", "class", "category", "answer", "expected"):
            if key in expected and isinstance(expected[key], str | int | float | bool):
                return _label_of(expected[key])
        if len(expected) == 1:
            return _label_of(next(iter(expected.values())))
    return _short(_as_text(expected), 40)


def summarize_dataset(rows: Iterable[Mapping[str, Any]], *, name: str | None = None) -> dict[str, Any]:
    """Split/label balance of dataset rows ({id, expected, metadata: {split, label, ...}}).

    The label is `metadata.label.value` (what the labeler decided) when present, else the row's
    expected class: `expected` itself when scalar, else its label/decision/class key (or its
    only value).
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    labelers: Counter[str] = Counter()
    total = 0
    for row in rows:
        meta = row.get("metadata") or {}
        split = str(meta.get("split") or "(no split)")
        label_meta = meta.get("label") if isinstance(meta.get("label"), Mapping) else {}
        value = label_meta.get("value")
        counts[split][_label_of(value if value is not None else row.get("expected"))] += 1
        if label_meta.get("labeler"):
            labelers[str(label_meta["labeler"])] += 1
        total += 1
    source = ("labels by " + ", ".join(f"{k} ({v})" for k, v in labelers.most_common())) if labelers else ""
    return {"name": name, "rows": total, "by_split_label": {s: dict(c) for s, c in counts.items()},
            "label_source": source}


def read_dataset_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Dataset rows from a JSONL file (one row per line) or a JSON array; errors name the line."""

    from bt_flywheel.core.fileio import read_jsonl_objects

    return read_jsonl_objects(path, what="dataset rows", allow_array=True)


def experiment_trace_urls(backend: Backend, project: str | None, baseline: str,
                          candidate: str) -> Callable[[str, Mapping[str, Any]], str | None] | None:
    """A link per root row to its trace on the experiment's Braintrust page
    (`.../experiments/<name>?r=<root_span_id>`); None when the backend has no pages (local)."""
    links = backend.links(project)
    if links is None:
        return None
    names = {side: backend.experiment(name, project=project).name
             for side, name in (("baseline", baseline), ("candidate", candidate))}

    def url(side: str, row: Mapping[str, Any]) -> str | None:
        rid = row.get("root_span_id") or row.get("id")
        return links.experiment_url(names[side], root_span_id=str(rid)) if rid else None

    return url


def dataset_summary(source: str | os.PathLike[str] | Backend, experiment: str, *,
                    project: str | None = None) -> dict[str, Any] | None:
    """The split/label balance of the dataset the experiment recorded (its metadata.dataset_id)."""
    backend = as_backend(source)
    found = backend.experiment(experiment, project=project)
    dataset_id = found.metadata.get("dataset_id")
    if not dataset_id:
        return None
    dataset = backend.dataset(str(dataset_id), project=project)
    if dataset is None:
        return None
    return summarize_dataset(backend.dataset_rows(project or str(dataset.project_id or ""), dataset.id),
                             name=dataset.name)


def build_report_inputs(source: str | os.PathLike[str] | Backend, baseline: str, candidate: str, *,
                        comparison: Any = None, project: str | None = None,
                        more: Sequence[str] = (), target: str | None = None,
                        guards: Sequence[str] = (), slice_key: str | None = None, min_effect: float | None = None,
                        margin: float | None = None, alpha: float | None = None, threshold: float | None = None,
                        ledger: Any = None,
                        ledger_path: str | os.PathLike[str] | None = None,
                        dataset_rows_path: str | os.PathLike[str] | None = None,
                        leaderboard_by: Sequence[str] = ("experiment",)) -> dict[str, Any]:
    """Everything `render_report` takes, from a backend (a store path: the local store) and the files given.

    Pass `comparison` (a `Comparison.to_dict()` already computed, as the demo has) to skip
    recomputing it; otherwise it is computed with compare.compare_experiments. Rows link to their
    traces when the backend has pages (Braintrust). Returns
    {"comparison", "rows", "ledger", "dataset_summary", "leaderboard"}:
    `write_report(inputs.pop("comparison"), out, **inputs)`.
    """
    from bt_flywheel.core.fileio import read_json_file

    backend = as_backend(source)
    # the files first: a bad path fails before any statistics are computed
    if ledger is None and ledger_path:
        ledger = read_json_file(ledger_path)
    if dataset_rows_path:
        summary = summarize_dataset(read_dataset_rows(dataset_rows_path), name=Path(dataset_rows_path).name)
    if comparison is None:
        from bt_flywheel.verify import compare as compare_mod

        if not target:
            raise InputError("--target: name the score the change should improve")
        options = {k: v for k, v in (("min_effect", min_effect), ("margin", margin), ("alpha", alpha),
                                     ("threshold", threshold)) if v is not None}
        comparison = compare_mod.compare_experiments(
            backend, baseline, candidate, target=target, guards=list(guards), slice_key=slice_key,
            project=project, **options)
    comparison = as_comparison(comparison)
    urls = experiment_trace_urls(backend, project, baseline, candidate)
    rows = load_report_rows(backend, baseline, candidate, project=project, trace_url=urls)
    if not dataset_rows_path:
        summary = dataset_summary(backend, baseline, project=project)
    board = None
    if more:
        from bt_flywheel.report.leaderboard import leaderboard_from_store

        board = leaderboard_from_store(backend, [baseline, candidate, *more],
                                       score=comparison.target, by=list(leaderboard_by),
                                       alpha=alpha or 0.05, project=project).to_dict()
    return {"comparison": comparison, "rows": rows, "ledger": ledger, "dataset_summary": summary,
            "leaderboard": board}

