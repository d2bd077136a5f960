"""Candidate selection for curation (DESIGN.md §7) and the dataset rows built from it.

    selection = select_score_balanced(run, ...) | select_facets(run, ...)
    rows      = build_rows(selection, ...)          # input reconstructed from the trace

Candidates come from Braintrust SQL (`bt_flywheel.backends.sql.run_query` on the local store, or any
`run(query) -> list[dict]`). Random selection is seeded: within a bucket candidates are ordered
by sha256(seed + "|" + row id) and the first N taken, so adding traces never reshuffles the rest.
A bucket with fewer candidates than asked is reported as a shortfall, never silently shrunk.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.ids import content_hash, seeded_order_key, stable_row_id
from bt_flywheel.core.sqltext import sql_string
from bt_flywheel.dataset.facets import FacetDefinition, sql_path, weak_bucket
from bt_flywheel.dataset.split import DEFAULT_SEED, DEFAULT_VALIDATION_FRACTION

Runner = Callable[[str], list[dict[str, Any]]]
FETCH_CHUNK = 200


def _window(window_days: int | None) -> str:
    return f"created >= NOW() - INTERVAL {int(window_days)} DAY" if window_days else ""


# OR as a word, whatever whitespace or parenthesis is around it ("a\nOR b", "(a)OR(b)")
_HAS_OR = re.compile(r"(?:^|[\s)])OR(?:[\s(]|$)", re.IGNORECASE)


def _and(*parts: str) -> str:
    return " AND ".join(f"({p})" if _HAS_OR.search(p) else p for p in parts if p)


@dataclass
class Candidate:
    """One selected trace (or facet span), before labeling."""

    project_id: str
    root_span_id: str
    span_id: str | None
    created: str | None
    bucket: str
    strategy: str
    facet: str | None = None
    facet_value: Any = None
    score: float | None = None
    selection_query: str = ""
    input: Any = None
    output: Any = None
    scores: dict[str, Any] | None = None
    span_metadata: dict[str, Any] | None = None

    @property
    def row_id(self) -> str:
        return stable_row_id(self.project_id, self.root_span_id, self.facet)


@dataclass
class Selection:
    strategy: str
    candidates: list[Candidate] = field(default_factory=list)
    shortfalls: list[dict[str, Any]] = field(default_factory=list)
    asked: list[dict[str, Any]] = field(default_factory=list)
    missing_trace_ids: list[str] = field(default_factory=list)
    queries: dict[str, str] = field(default_factory=dict)  # hash -> SQL
    facets: dict[str, FacetDefinition] = field(default_factory=dict)


def seeded_take(items: Sequence[Candidate], n: int, seed: str) -> list[Candidate]:
    """The first n by sha256(seed|row id); duplicates of a row id keep the first seen."""
    unique: dict[str, Candidate] = {}
    for item in items:
        unique.setdefault(item.row_id, item)
    ordered = sorted(unique.values(), key=lambda c: seeded_order_key(seed, c.row_id))
    return ordered[:n]


def _record_bucket(selection: Selection, facet: str | None, bucket: str, asked: int, pool: list[Candidate],
                   seed: str) -> None:
    chosen = seeded_take(pool, asked, seed)
    selection.candidates.extend(chosen)
    selection.asked.append({"facet": facet, "bucket": bucket, "asked": asked, "available": len(
        {c.row_id for c in pool}), "selected": len(chosen)})
    if len(chosen) < asked:
        selection.shortfalls.append({"facet": facet, "bucket": bucket, "asked": asked, "got": len(chosen),
                                     "missing": asked - len(chosen)})


# -- score-balanced ----------------------------------------------------------------------------


def score_balanced_queries(project: str, score: str, lo: float, hi: float, *, window_days: int | None = 7,
                           where: str | None = None) -> dict[str, str]:
    """The SQL for the failing (score <= lo) and passing (score >= hi) buckets."""
    column = sql_path(f"scores.{_quoted(score)}")
    base = f"SELECT root_span_id, span_id, created, {column} AS score_value FROM project_logs({sql_string(project)})"
    out = {}
    for bucket, condition in (("failing", f"{column} <= {float(lo)!r}"), ("passing", f"{column} >= {float(hi)!r}")):
        out[bucket] = f"{base} WHERE {_and('is_root = true', _window(window_days), condition, where or '')}"
    return out


def _quoted(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def select_score_balanced(run: Runner, *, project: str, project_id: str, score: str, lo: float, hi: float,
                          per_bucket: int = 100, window_days: int | None = 7, where: str | None = None,
                          trace_ids: Iterable[str] = (), seed: str = DEFAULT_SEED) -> Selection:
    """Failing (score <= lo) and passing (score >= hi) root spans, per_bucket each, seeded."""
    if lo >= hi:
        raise ValueError(f"--lo {lo} must be below --hi {hi}")
    selection = Selection("score-balanced")
    for bucket, query in score_balanced_queries(project, score, lo, hi, window_days=window_days,
                                                where=where).items():
        digest = content_hash(query)
        selection.queries[digest] = query
        pool = [Candidate(project_id, r["root_span_id"], r.get("span_id"), r.get("created"), bucket,
                          "score-balanced", score=r.get("score_value"), selection_query=digest)
                for r in run(query) if r.get("root_span_id")]
        _record_bucket(selection, None, bucket, per_bucket, pool, seed)
    _add_explicit(selection, run, project=project, project_id=project_id, trace_ids=trace_ids)
    _fetch_roots(selection.candidates, run, project)
    return selection


def _add_explicit(selection: Selection, run: Runner, *, project: str, project_id: str,
                  trace_ids: Iterable[str], facet: FacetDefinition | None = None) -> None:
    wanted = list(dict.fromkeys(t for t in trace_ids if t))
    if not wanted:
        return
    taken = {c.row_id for c in selection.candidates}
    found: set[str] = set()
    for chunk in _chunks(wanted, FETCH_CHUNK):
        ids = ", ".join(sql_string(t) for t in chunk)
        if facet is None:
            query = (f"SELECT root_span_id, span_id, created FROM project_logs({sql_string(project)}) "
                     f"WHERE root_span_id IN ({ids}) AND is_root = true")
        else:
            query = _facet_query(project, facet, None, None, only=f"root_span_id IN ({ids})")
        digest = content_hash(query)
        selection.queries[digest] = query
        for r in run(query):
            candidate = Candidate(project_id, r["root_span_id"], r.get("span_id"), r.get("created"), "explicit",
                                  "explicit", facet=facet.name if facet else None,
                                  facet_value=r.get("facet_value"), selection_query=digest)
            found.add(candidate.root_span_id)
            if candidate.row_id not in taken:
                taken.add(candidate.row_id)
                selection.candidates.append(candidate)
    for trace_id in wanted:
        if trace_id not in found and trace_id not in selection.missing_trace_ids:
            selection.missing_trace_ids.append(trace_id)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _fetch_roots(candidates: list[Candidate], run: Runner, project: str) -> None:
    """Fill input/output/scores/metadata of each candidate from its trace's root span."""
    roots = {c.root_span_id for c in candidates}
    by_root: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(roots), FETCH_CHUNK):
        query = (f"SELECT root_span_id, span_id, created, input, output, scores, metadata "
                 f"FROM project_logs({sql_string(project)}) WHERE root_span_id IN ({', '.join(sql_string(t) for t in chunk)}) "
                 "AND is_root = true")
        for r in run(query):
            by_root[r["root_span_id"]] = r
    for c in candidates:
        root = by_root.get(c.root_span_id)
        if root is None:
            continue
        c.input, c.output, c.scores = root.get("input"), root.get("output"), root.get("scores")
        c.span_metadata = root.get("metadata")
        c.span_id = c.span_id or root.get("span_id")
        c.created = c.created or root.get("created")


# -- facets ------------------------------------------------------------------------------------


def _facet_query(project: str, facet: FacetDefinition, window_days: int | None, where: str | None, *,
                 only: str = "") -> str:
    span_filter = facet.span_filter or "is_root = true"
    return (f"SELECT root_span_id, span_id, created, {sql_path(facet.value_path)} AS facet_value "
            f"FROM project_logs({sql_string(project)}) "
            f"WHERE {_and(only, span_filter, _window(window_days), where or '')}")


def select_facets(run: Runner, *, project: str, project_id: str, facets: Sequence[FacetDefinition],
                  per_bucket: int = 100, window_days: int | None = 7, where: str | None = None,
                  trace_ids: Iterable[str] = (), seed: str = DEFAULT_SEED) -> Selection:
    """Per facet: weak positives (a value was logged) and weak negatives (none), seeded."""
    selection = Selection("facet", facets={f.name: f for f in facets})
    trace_ids = list(trace_ids)
    for facet in facets:
        query = _facet_query(project, facet, window_days, where)
        digest = content_hash(query)
        selection.queries[digest] = query
        pools: dict[str, list[Candidate]] = {"positive": [], "negative": []}
        try:
            found = run(query)
        except InputError as exc:  # a bad span_filter or value_path: say which facet it came from
            raise InputError(f"facet {facet.name!r} (span_filter/value_path): {exc.message}", hint=exc.hint) from None
        for r in found:
            if not r.get("root_span_id"):
                continue
            bucket = weak_bucket(r.get("facet_value"))
            pools[bucket].append(Candidate(project_id, r["root_span_id"], r.get("span_id"), r.get("created"),
                                           bucket, "facet", facet=facet.name, facet_value=r.get("facet_value"),
                                           selection_query=digest))
        for bucket, limit in facet.limits(per_bucket).items():
            _record_bucket(selection, facet.name, bucket, limit, pools[bucket], seed)
        _add_explicit(selection, run, project=project, project_id=project_id, trace_ids=trace_ids, facet=facet)
    if trace_ids:  # a trace id is missing only if no facet found it
        found = {c.root_span_id for c in selection.candidates}
        selection.missing_trace_ids = [t for t in dict.fromkeys(trace_ids) if t not in found]
    _fetch_roots(selection.candidates, run, project)
    span_candidates = [c for c in selection.candidates if selection.facets[c.facet].input_from == "span"]
    _fetch_spans(span_candidates, run, project)
    return selection


def _fetch_spans(candidates: list[Candidate], run: Runner, project: str) -> None:
    """Facet mode with input_from=span: the facet span's own input/output/metadata."""
    by_span: dict[str, dict[str, Any]] = {}
    pairs = sorted({(c.root_span_id, c.span_id) for c in candidates if c.span_id})
    for start in range(0, len(pairs), FETCH_CHUNK):
        chunk = pairs[start:start + FETCH_CHUNK]
        roots = ", ".join(sql_string(r) for r in sorted({r for r, _ in chunk}))
        spans = ", ".join(sql_string(s) for _, s in chunk)
        query = (f"SELECT root_span_id, span_id, input, output, metadata FROM project_logs({sql_string(project)}) "
                 f"WHERE root_span_id IN ({roots}) AND span_id IN ({spans})")
        for r in run(query):
            by_span[r["span_id"]] = r
    for c in candidates:
        span = by_span.get(c.span_id or "")
        if span is not None:
            c.input, c.output, c.span_metadata = span.get("input"), span.get("output"), span.get("metadata")


# -- rows --------------------------------------------------------------------------------------


def build_row(candidate: Candidate, *, seed: str = DEFAULT_SEED,
              validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> dict[str, Any]:
    """A dataset row awaiting its label. `expected` is never the production output."""
    if candidate.facet:
        row_input: Any = {"facet_name": candidate.facet, "input": candidate.input}
    else:
        row_input = candidate.input
    production: dict[str, Any] = {"output": candidate.output, "scores": candidate.scores or {}}
    if candidate.facet:
        production["facet_value"] = candidate.facet_value
    tags = ["flywheel", f"bucket:{candidate.bucket}"] + ([f"facet:{candidate.facet}"] if candidate.facet else [])
    row = {
        "id": candidate.row_id,
        "input": row_input,
        "expected": None,
        "tags": tags,
        "metadata": {
            "split": None,
            "source": {"trace_id": candidate.root_span_id, "span_id": candidate.span_id,
                       "project_id": candidate.project_id, "created": candidate.created},
            "label": {},
            "curation": {"strategy": candidate.strategy, "bucket": candidate.bucket, "facet": candidate.facet,
                         "selection_query": candidate.selection_query, "seed": seed,
                         "validation_fraction": validation_fraction},
            "production": production,
        },
    }
    if candidate.facet:
        # where the facet-metrics recipes read it: a scorer span's input.metadata.facet_name
        row["metadata"]["facet_name"] = candidate.facet
    return row


def build_rows(selection: Selection, *, seed: str = DEFAULT_SEED,
               validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for candidate in selection.candidates:
        if candidate.row_id in seen:
            continue
        seen.add(candidate.row_id)
        rows.append(build_row(candidate, seed=seed, validation_fraction=validation_fraction))
    return rows


def parsed_calls(selection: Selection) -> list[dict[str, Any]]:
    """Facet mode: one line per selected facet call, what was logged and where it came from."""
    out = []
    for c in selection.candidates:
        if not c.facet:
            continue
        metadata = c.span_metadata or {}
        out.append({"row_id": c.row_id, "facet": c.facet, "trace_id": c.root_span_id, "span_id": c.span_id,
                    "created": c.created, "weak_bucket": c.bucket, "logged_value": c.facet_value,
                    "model": metadata.get("model"), "input": c.input, "output": c.output})
    return out


def count_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts per facet, bucket, label, split and labeler."""
    def count(key: Callable[[dict[str, Any]], Any]) -> dict[str, int]:
        return dict(sorted(Counter(str(key(r)) for r in rows).items()))

    def meta(r: dict[str, Any], *path: str) -> Any:
        value: Any = r.get("metadata") or {}
        for part in path:
            value = (value or {}).get(part)
        return value if value not in (None, "") else "(none)"

    return {
        "rows": len(rows),
        "by_facet": count(lambda r: meta(r, "curation", "facet")),
        "by_bucket": count(lambda r: meta(r, "curation", "bucket")),
        "by_label": count(lambda r: meta(r, "label", "value")),
        "by_split": count(lambda r: meta(r, "split")),
        "by_labeler": count(lambda r: meta(r, "label", "labeler")),
        "by_labeler_model": count(lambda r: meta(r, "label", "labeler_model")),
    }

