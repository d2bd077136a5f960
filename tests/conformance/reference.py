"""Python reference answers for tests/conformance/*.jsonl, computed from the same generated rows.
Each function takes a `World` and returns the expected rows (dicts keyed like the query's columns)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from statistics import mean
from typing import Any

from bt_flywheel.backends.store import local_id
from tests.conformance.generate import EXPERIMENTS, PROJECT


@dataclass
class World:
    now: datetime
    rows: dict[str, list[dict[str, Any]]]

    @property
    def logs(self) -> list[dict[str, Any]]:
        return self.rows["logs"]

    def within(self, days: float, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        cut = self.now - timedelta(days=days)
        return [r for r in (self.logs if rows is None else rows) if created(r) > cut]


def created(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["created"].replace("Z", "+00:00"))


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def get(row: dict[str, Any], *path: str) -> Any:
    value: Any = row
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": r["id"]} for r in rows]


def _prices() -> dict[str, tuple[float, float]]:
    text = resources.files("bt_flywheel.backends.btsql").joinpath("prices.json").read_text(encoding="utf-8")
    return {k: (v["input"], v["output"]) for k, v in json.loads(text)["models"].items()}


def cost(row: dict[str, Any]) -> float | None:
    metrics = row.get("metrics") or {}
    if "prompt_tokens" not in metrics and "completion_tokens" not in metrics:
        return None
    model = (get(row, "metadata", "model") or "").lower()
    names = [n for n in _prices() if model.startswith(n)]
    if not names:
        return None
    price = _prices()[max(names, key=len)]
    return (metrics.get("prompt_tokens", 0) * price[0] + metrics.get("completion_tokens", 0) * price[1]) / 1e6


def traces_of(rows: list[dict[str, Any]], matching: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roots = {r["root_span_id"] for r in matching}
    return [r for r in rows if r["root_span_id"] in roots]


def _filter(world: World, predicate, days: float = 30) -> list[dict[str, Any]]:  # noqa: ANN001
    return ids([r for r in world.within(days) if predicate(r)])


def _tags(row: dict[str, Any]) -> list[str]:
    return row.get("tags") or []


def _tokens_by(world: World, bucket) -> list[dict[str, Any]]:  # noqa: ANN001
    sums: dict[datetime, list[float]] = defaultdict(lambda: [0, 0, 0])
    for r in world.logs:
        m = r.get("metrics") or {}
        key = bucket(created(r))
        sums[key][0] += m.get("total_tokens", 0)
        sums[key][1] += m.get("prompt_tokens", 0)
        sums[key][2] += m.get("completion_tokens", 0)
    return [{"time": iso(k), "total_tokens": v[0], "input_tokens": v[1], "output_tokens": v[2]}
            for k, v in sorted(sums.items())]


def _day(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


REFERENCES: dict[str, Any] = {}


def ref(fn):  # noqa: ANN001, ANN201
    REFERENCES[fn.__name__] = fn
    return fn


@ref
def factuality_over_08_last_7d_newest_first(w: World):
    rows = sorted([r for r in w.within(7) if get(r, "scores", "Factuality") is not None
                   and r["scores"]["Factuality"] > 0.8], key=created, reverse=True)
    return ids(rows[:100])


@ref
def errored_spans_7d(w: World):
    return [{"id": r["id"], "error": r["error"], "type": r["span_attributes"]["type"]}
            for r in w.within(7) if r.get("error") is not None]


@ref
def errored_traces_7d(w: World):
    matching = [r for r in w.within(7) if r.get("error") is not None]
    return [{"id": r["id"], "error": r.get("error"), "type": r["span_attributes"]["type"]}
            for r in traces_of(w.logs, matching)]


@ref
def tokens_by_day(w: World):
    return _tokens_by(w, _day)


@ref
def token_distribution_per_trace(w: World):
    out = []
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in traces_of(w.logs, w.within(7)):
        by_trace[r["root_span_id"]].append(r)
    for spans in by_trace.values():
        costs = [c for c in (cost(s) for s in spans) if c is not None]
        out.append({"user": next(get(s, "metadata", "user_id") for s in spans if s["is_root"]),
                    "model": next(get(s, "metadata", "model") for s in spans if s["is_root"]),
                    "prompt_tokens": sum(get(s, "metrics", "prompt_tokens") or 0 for s in spans),
                    "completion_tokens": sum(get(s, "metrics", "completion_tokens") or 0 for s in spans),
                    "total_cost": sum(costs) if costs else None})
    return out


@ref
def token_distribution_per_user_model(w: World):
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for t in token_distribution_per_trace(w):
        groups[(t["user"], t["model"])].append(t)
    return [{"user": u, "model": m, "total_prompt_tokens": sum(t["prompt_tokens"] for t in ts),
             "total_completion_tokens": sum(t["completion_tokens"] for t in ts),
             "total_cost": sum(t["total_cost"] for t in ts)} for (u, m), ts in groups.items()]


def _experiment_scores(w: World, names: tuple[str, ...], field: str = "scores") -> list[tuple[str, str, float, dict]]:
    out = []
    for name in names:
        for r in w.rows[name]:
            for key, value in (r.get(field) or {}).items():
                if value is not None:
                    out.append((name, key, float(value), r))
    return out


@ref
def scores_across_experiments(w: World):
    groups: dict[tuple[str, str], list[tuple[float, dict]]] = defaultdict(list)
    for name, key, value, row in _experiment_scores(w, EXPERIMENTS):
        groups[(name, key)].append((value, row))
    project_id = local_id("project", PROJECT)
    rows = [{"experiment_id": local_id("experiment", f"{project_id}:{n}"), "score": k, "avg": mean(v for v, _ in vs),
             "last_updated": iso(max(created(r) for _, r in vs))} for (n, k), vs in groups.items()]
    return sorted(rows, key=lambda r: r["last_updated"], reverse=True)


@ref
def metrics_per_name_exp_a(w: World):
    groups: dict[str, list[float]] = defaultdict(list)
    for _, key, value, _row in _experiment_scores(w, ("exp-a",), "metrics"):
        groups[key].append(value)
    return [{"name": k, "avg": mean(v)} for k, v in groups.items()]


@ref
def factuality_over_08_30d(w: World):
    return _filter(w, lambda r: (get(r, "scores", "Factuality") or 0) > 0.8)


@ref
def factuality_over_05_30d(w: World):
    return _filter(w, lambda r: (get(r, "scores", "Factuality") or 0) > 0.5)


@ref
def production_user_123(w: World):
    return _filter(w, lambda r: "production" in _tags(r) and get(r, "metadata", "user_id") == "user-123")


@ref
def since_2024_under_2s(w: World):
    def short(r: dict[str, Any]) -> bool:
        m = r.get("metrics") or {}
        return "end" in m and "start" in m and m["end"] - m["start"] < 2.0
    return ids([r for r in w.logs if created(r) >= datetime(2024, 1, 1, tzinfo=UTC) and short(r)])


@ref
def triage_tag_30d(w: World):
    return _filter(w, lambda r: "triage" in _tags(r))


@ref
def triage_tag_all(w: World):
    return ids([r for r in w.logs if "triage" in _tags(r)])


@ref
def triage_not_triaged_30d(w: World):
    return _filter(w, lambda r: "triage" in _tags(r) and "triaged" not in _tags(r))


@ref
def older_than_yesterday(w: World):
    cut = _day(datetime.now(UTC)) - timedelta(days=1)
    return ids([r for r in w.logs if created(r) < cut])


@ref
def user_1234_30d(w: World):
    return _filter(w, lambda r: get(r, "metadata", "user_id") == "1234")


@ref
def input_hello_30d(w: World):
    return _filter(w, lambda r: "hello" in json.dumps(r.get("input")).lower())


@ref
def model_gpt4_turbo_30d(w: World):
    return _filter(w, lambda r: get(r, "metadata", "model") == "gpt-4-turbo")


@ref
def model_gpt4_30d(w: World):
    return _filter(w, lambda r: get(r, "metadata", "model") == "gpt-4")


@ref
def tokens_over_model_threshold_30d(w: World):
    def over(r: dict[str, Any]) -> bool:
        tokens = get(r, "metrics", "tokens")
        limit = 1000 if get(r, "metadata", "model") == "gpt-4-turbo" else 500
        return tokens is not None and tokens > limit
    return _filter(w, over)


KB_USERS = ("50157c3d-edd9-4287-85ee-48c119967099", "a3fe059a-e4f4-4e9f-b3e3-0da04ed1f075",
            "913b6ae1-72aa-4113-964e-e41364933a43")


@ref
def kb_user_ids_30d(w: World):
    return _filter(w, lambda r: get(r, "metadata", "user_id") in KB_USERS)


@ref
def kb_two_user_ids_30d(w: World):
    return _filter(w, lambda r: get(r, "metadata", "user_id") in KB_USERS[:2])


@ref
def needs_review_30d(w: World):
    return _filter(w, lambda r: "needs-review" in _tags(r))


@ref
def not_needs_review_30d(w: World):
    return _filter(w, lambda r: r.get("tags") is not None and "needs-review" not in _tags(r))


@ref
def inference_transcripts_30d(w: World):
    return _filter(w, lambda r: get(r, "input", "type") == "inferenceTranscript")


@ref
def summary_factuality_over_08(w: World):
    out = []
    for r in w.within(30):
        if r["is_root"] and (get(r, "scores", "Factuality") or 0) > 0.8:
            out.append({"root_span_id": r["root_span_id"], "f": r["scores"]["Factuality"]})
    return out


def _bucket_counts(w: World, seconds: int) -> list[dict[str, Any]]:
    counts: dict[datetime, int] = defaultdict(int)
    for r in w.within(7):
        ts = created(r)
        epoch = int(ts.timestamp()) // seconds * seconds
        counts[datetime.fromtimestamp(epoch, UTC)] += 1
    return [{"bucket": iso(k), "n": v} for k, v in sorted(counts.items())]


@ref
def count_by_15_minutes_7d(w: World):
    return _bucket_counts(w, 900)


@ref
def count_by_2_hours_7d(w: World):
    return _bucket_counts(w, 7200)


def _truncated_counts(w: World, trunc) -> list[dict[str, Any]]:  # noqa: ANN001
    counts: dict[datetime, int] = defaultdict(int)
    for r in w.logs:
        counts[trunc(created(r))] += 1
    return [{"t": iso(k), "n": v} for k, v in sorted(counts.items())]


@ref
def count_by_hour_all(w: World):
    return _truncated_counts(w, lambda ts: ts.replace(minute=0, second=0, microsecond=0))


@ref
def count_by_week_all(w: World):
    return _truncated_counts(w, lambda ts: _day(ts) - timedelta(days=ts.weekday()))


@ref
def count_by_month_all(w: World):
    return _truncated_counts(w, lambda ts: _day(ts).replace(day=1))


@ref
def count_by_year_all(w: World):
    return _truncated_counts(w, lambda ts: _day(ts).replace(month=1, day=1))


@ref
def category_support_30d(w: World):
    n = sum(1 for r in w.within(30) if get(r, "metadata", "category") == "support")
    return [{"category": "support", "n": n}]


@ref
def json_extract_production_30d(w: World):
    return _filter(w, lambda r: get(r, "metadata", "raw") and json.loads(r["metadata"]["raw"])["env"] == "production")


@ref
def p95_llm_tokens_30d(w: World):
    values = sorted(get(r, "metrics", "tokens") for r in w.within(30) if get(r, "metrics", "tokens") is not None)
    pos = 0.95 * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return [{"p95": values[low] + (values[high] - values[low]) * (pos - low)}]


@ref
def rounded_factuality_30d(w: World):
    def sql_round(x: float) -> float:   # SQL rounds halves away from zero; Python's round() to even
        return float(Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return [{"id": r["id"], "f": sql_round(r["scores"]["Factuality"])} for r in w.within(30)
            if get(r, "scores", "Factuality") is not None]


@ref
def cost_by_model_30d(w: World):
    sums: dict[str, float] = defaultdict(float)
    for r in w.within(30):
        c = cost(r)
        if c is not None:
            sums[get(r, "metadata", "model")] += c
    return [{"model": k, "cost": v} for k, v in sums.items()]


@ref
def quality_bands_30d(w: World):
    def band(f: float) -> str:
        return "high" if f > 0.8 else "medium" if f > 0.5 else "low"
    return [{"id": r["id"], "band": band(r["scores"]["Factuality"])} for r in w.within(30)
            if r["is_root"]]


@ref
def any_span_tool_error_and_big_llm_7d(w: World):
    window = w.within(7)
    with_error = {r["root_span_id"] for r in w.logs if r.get("error") is not None}
    big = {r["root_span_id"] for r in w.logs if (get(r, "metrics", "tokens") or 0) > 1000}
    chosen = [r for r in window if r["root_span_id"] in with_error and r["root_span_id"] in big]
    return ids(traces_of(w.logs, chosen))


@ref
def filter_spans_llm_of_error_traces_7d(w: World):
    matching = [r for r in w.within(7) if r.get("error") is not None]
    return ids([r for r in traces_of(w.logs, matching) if r["span_attributes"]["type"] == "llm"])


@ref
def pivot_scores_exp_a(w: World):
    rows = []
    for r in w.rows["exp-a"]:
        rows.append({"id": r["id"], "accuracy": r["scores"]["accuracy"], "Factuality": r["scores"]["Factuality"]})
    return rows


@ref
def tag_counts_30d(w: World):
    counts: dict[str, int] = defaultdict(int)
    for r in w.within(30):
        for t in _tags(r):
            counts[t] += 1
    return [{"tag": k, "n": v} for k, v in counts.items()]


@ref
def summary_rollup_7d(w: World):
    out = []
    window = {r["root_span_id"] for r in w.within(7)}
    for root in window:
        spans = [r for r in w.logs if r["root_span_id"] == root]
        costs = [c for c in (cost(s) for s in spans) if c is not None]
        out.append({"root_span_id": root,
                    "tokens": sum(get(s, "metrics", "tokens") or 0 for s in spans),
                    "cost": sum(costs),
                    "llm_calls": sum(1 for s in spans if s["span_attributes"]["type"] == "llm"),
                    "factuality": next(s["scores"]["Factuality"] for s in spans if s["is_root"])})
    return out


@ref
def classification_labels_30d(w: World):
    counts: dict[str, int] = defaultdict(int)
    for r in w.within(30):
        label = (get(r, "classifications", "Task") or [{}])[0].get("label")
        if label:
            counts[label] += 1
    return [{"label": k, "n": v} for k, v in counts.items()]


@ref
def response_quality_30d(w: World):
    return [{"id": r["id"], "rq": r["scores"]["Response Quality"]} for r in w.within(30)
            if get(r, "scores", "Response Quality") is not None]


@ref
def count_last_hour_3600s(w: World):
    return [{"n": len(w.within(1 / 24))}]


@ref
def count_7_days_string_interval(w: World):
    return [{"n": len(w.within(7))}]
