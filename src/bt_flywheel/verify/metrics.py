"""Metric guards: tokens, cost, latency and duration must not rise (DESIGN.md §8, issue 14).

``flywheel compare --guard-metric tokens|cost|latency|duration[:max_increase]`` reads the span
``metrics`` of every trace (one trace per dataset row and trial) and compares them as a ratio of
paired means, candidate over baseline, against ``1 + max_increase`` (default +10%):

- tokens: the trace's LLM spans' ``metrics.tokens`` (else prompt + completion tokens), summed; a
  trace without LLM spans uses its root span's own metrics;
- cost: the LLM spans' ``metrics.estimated_cost`` when every one has it, otherwise their prompt and
  completion tokens x a price table (USD per million tokens, by ``metadata.model``), which
  ``--price MODEL=INPUT,OUTPUT`` overrides;
- latency: the root span's ``metrics.end - metrics.start`` (what the caller waits, scorers included);
- duration: the task span's ``end - start`` (the agent's own time), else the root's.

Verdict (the three guard states of :mod:`bt_flywheel.verify.keep`): ``non_inferior`` (held) when
the upper bound of the ratio's (1-α) Fieller interval is below ``1 + max_increase``, i.e. the
t-interval of mean(c - (1 + max_increase)·b) lies below 0; ``regressed`` when the metric rose
(the t-interval of mean(c - b) lies above 0); otherwise ``not_enough_rows`` with the rows that the
same bound needs for 80% power.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from bt_flywheel.core.errors import InputError
from bt_flywheel.verify import stats
from bt_flywheel.verify.keep import GUARD_HELD, GUARD_NOT_ENOUGH_ROWS, GUARD_REGRESSED
from bt_flywheel.verify.reported import reported_figures
from bt_flywheel.verify.verdict import ScoreComparison, missing_summary, trial_summaries

METRICS = ("tokens", "cost", "latency", "duration")
UNITS = {"tokens": "tokens", "cost": "USD", "latency": "s", "duration": "s"}
DEFAULT_MAX_INCREASE = 0.10
# USD per million (input, output) tokens; `--price MODEL=INPUT,OUTPUT` adds or overrides entries
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60), "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40), "o3-mini": (1.10, 4.40),
    "claude-3-5-haiku-latest": (0.80, 4.00), "claude-3-5-sonnet-latest": (3.00, 15.00),
}


@dataclass(frozen=True)
class MetricGuard:
    metric: str
    max_increase: float = DEFAULT_MAX_INCREASE


def parse_metric_guard(text: str) -> MetricGuard:
    """``tokens`` or ``cost:0.2`` (an allowed increase of 20%)."""
    name, _, limit = text.partition(":")
    name = name.strip()
    if name not in METRICS:
        raise InputError(f"--guard-metric {text!r}: the metric must be one of {', '.join(METRICS)}")
    if not limit:
        return MetricGuard(name)
    try:
        value = float(limit)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"--guard-metric {text!r}: the allowed increase must be a number >= 0 (0.1 = +10%)")
    return MetricGuard(name, value)


def parse_prices(items: Iterable[str]) -> dict[str, tuple[float, float]]:
    """The default price table with ``MODEL=INPUT,OUTPUT`` (USD per million tokens) overrides."""
    table = dict(DEFAULT_PRICES)
    for item in items:
        model, _, pair = item.partition("=")
        parts = pair.split(",")
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            values = ()
        if not model.strip() or len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
            raise InputError(f"--price {item!r}: expected MODEL=INPUT,OUTPUT in USD per million tokens "
                             "(e.g. gpt-4o-mini=0.15,0.6)")
        table[model.strip()] = (values[0], values[1])
    return table


# ------------------------------------------------------------------------------ reading spans

def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _tokens(m: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    prompt, completion = _num(m.get("prompt_tokens")), _num(m.get("completion_tokens"))
    total = _num(m.get("tokens"))
    if total is None and (prompt is not None or completion is not None):
        total = (prompt or 0.0) + (completion or 0.0)
    return total, prompt, completion


def _elapsed(span: Mapping[str, Any] | None) -> float | None:
    m = (span or {}).get("metrics") or {}
    start, end = _num(m.get("start")), _num(m.get("end"))
    return end - start if start is not None and end is not None and end >= start else None


def trace_metric(metric: str, root: Mapping[str, Any], spans: list[Mapping[str, Any]],
                 prices: Mapping[str, tuple[float, float]], *, where: str) -> float | None:
    """One trace's value of ``metric`` (see the module docstring); None when the spans lack it."""
    if metric == "latency":
        return _elapsed(root)
    if metric == "duration":
        task = next((s for s in spans if (s.get("span_attributes") or {}).get("type") == "task"), None)
        return _elapsed(task) if task is not None else _elapsed(root)
    llm = [s for s in spans if (s.get("span_attributes") or {}).get("type") == "llm"] or [root]
    if metric == "tokens":
        values = [_tokens(s.get("metrics") or {})[0] for s in llm]
        values = [v for v in values if v is not None]
        return float(sum(values)) if values else None
    costs = [_num((s.get("metrics") or {}).get("estimated_cost")) for s in llm]
    if costs and all(c is not None for c in costs):
        return float(sum(costs))
    total = 0.0
    for s in llm:
        _, prompt, completion = _tokens(s.get("metrics") or {})
        if prompt is None and completion is None:
            return None
        model = str((s.get("metadata") or {}).get("model") or "")
        if model not in prices:
            raise InputError(f"{where}: no price for model {model or '(none)'!r} to compute cost from tokens",
                             hint="add --price MODEL=INPUT,OUTPUT (USD per million tokens)")
        p_in, p_out = prices[model]
        total += ((prompt or 0.0) * p_in + (completion or 0.0) * p_out) / 1e6
    return total


def metric_rows(spans: Iterable[Mapping[str, Any]], roots: Mapping[str, tuple[str, int]], metrics: Iterable[str],
                prices: Mapping[str, tuple[float, float]], *, experiment: str) -> dict[str, dict[str, list[float | None]]]:
    """``{metric: {row id: [value per trial]}}`` from every span of an experiment; ``roots`` maps a
    root span id to its (dataset row id, trial)."""
    by_trace: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    root_rows: dict[str, Mapping[str, Any]] = {}
    for span in spans:
        rid = str(span.get("root_span_id") or span.get("span_id") or span.get("id"))
        if rid not in roots:
            continue
        if span.get("span_id") == rid or span.get("is_root"):
            root_rows[rid] = span
        else:
            by_trace[rid].append(span)
    out: dict[str, dict[str, list[float | None]]] = {}
    for metric in metrics:
        per_row: dict[str, dict[int, float | None]] = defaultdict(dict)
        for rid, (row_id, trial) in roots.items():
            root = root_rows.get(rid, {})
            per_row[row_id][trial] = trace_metric(metric, root, by_trace.get(rid, []), prices,
                                                  where=f"experiment {experiment!r}, row {row_id!r}")
        if not any(v is not None for trials in per_row.values() for v in trials.values()):
            raise InputError(f"--guard-metric {metric}: no trace in experiment {experiment!r} carries it",
                             hint="latency needs metrics.start/end; tokens and cost need LLM spans' metrics")
        out[metric] = {r: [t[k] for k in sorted(t)] for r, t in per_row.items()}
    return out


# ------------------------------------------------------------------------------ the verdict

def fieller_ratio(b: np.ndarray, c: np.ndarray, *, alpha: float) -> tuple[float, float, float]:
    """mean(c)/mean(b) and its (1-α) Fieller interval for paired rows (NaN bounds when unbounded)."""
    n = b.size
    bm, cm = float(b.mean()), float(c.mean())
    ratio = cm / bm if bm > 0 else math.nan
    if n < 2 or bm <= 0:
        return ratio, math.nan, math.nan
    t2 = float(_st.t.isf(alpha / 2, n - 1)) ** 2
    cov = np.cov(np.vstack([b, c]), ddof=1) / n
    qa = bm * bm - t2 * cov[0, 0]
    qb = -2 * (cm * bm - t2 * cov[0, 1])
    qc = cm * cm - t2 * cov[1, 1]
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return ratio, math.nan, math.nan
    root = math.sqrt(disc)
    return ratio, (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


def _quiet_ttest(d: np.ndarray) -> stats.TTestResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        return stats.ttest_differences(d)


def metric_verdicts(held_high: Any, rise_low: Any) -> np.ndarray:
    """The metric guard rule on the (1-α) t-interval bounds of mean(c - (1+max_increase)·b)
    (``held_high``) and of mean(c - b) (``rise_low``); broadcasts over arrays."""
    held_high, rise_low = np.asarray(held_high, dtype=float), np.asarray(rise_low, dtype=float)
    return np.select([held_high < 0, rise_low > 0], [GUARD_HELD, GUARD_REGRESSED], GUARD_NOT_ENOUGH_ROWS)


def metric_verdict(b: np.ndarray, c: np.ndarray, *, max_increase: float, alpha: float
                   ) -> tuple[str, stats.PowerResult | None]:
    """held / regressed / not_enough_rows for paired metric rows (and the power for the bound
    that is still open)."""
    limit = 1 + max_increase
    e, d = c - limit * b, c - b
    held_t, rise_t = _quiet_ttest(e), _quiet_ttest(d)
    if b.size and float(b.mean()) <= 0 and float(c.mean()) <= 0:
        return GUARD_HELD, None  # nothing spent on either side
    if held_t.se == 0 and b.size >= 2:
        return (GUARD_HELD if held_t.estimate < 0 else GUARD_REGRESSED), None
    verdict = str(metric_verdicts(held_t.confidence_interval(1 - alpha).high,
                                  rise_t.confidence_interval(1 - alpha).low))
    if verdict != GUARD_NOT_ENOUGH_ROWS:
        return verdict, None
    if held_t.estimate < 0:  # within the allowance: rows to show the ratio's upper bound below it
        target, sd, bound, side, aim = -held_t.estimate, float(np.std(e, ddof=1)), limit, "upper", (
            f"show the ratio's upper bound below {limit:g}")
    else:
        target, sd, bound, side, aim = d.mean(), float(np.std(d, ddof=1)), 1.0, "lower", (
            "show the increase (the ratio's lower bound above 1)")
    n = int(b.size)
    if n < 2 or not math.isfinite(sd) or sd == 0 or target <= 0:
        return GUARD_NOT_ENOUGH_ROWS, stats.PowerResult(float(target), sd, n, math.nan, None, stats.DEFAULT_POWER,
                                                        alpha, "too few rows to estimate variance", bound, side)
    need = stats.bound_required_n(float(target), sd, alpha=alpha)
    now = stats.bound_power(float(target), sd, n, alpha=alpha)
    note = f"rows needed for 80% power to {aim} at the observed SD" if need else "no feasible sample size"
    return GUARD_NOT_ENOUGH_ROWS, stats.PowerResult(float(target), sd, n, now, need, stats.DEFAULT_POWER, alpha,
                                                    note, bound, side)


def compare_metric(paired: stats.PairedRows, guard: MetricGuard, *, alpha: float, rng: Any = 0,
                   source: str = "") -> ScoreComparison:
    """One metric guard as a comparison entry (``kind`` 'metric'): effect and CI in the metric's
    units, the verdict on the ratio (see the module docstring)."""
    b, c = paired.baseline, paired.candidate
    d = c - b
    res = _quiet_ttest(d)
    ci = res.confidence_interval(1 - alpha)
    verdict, power = metric_verdict(b, c, max_increase=guard.max_increase, alpha=alpha)
    ratio, r_low, r_high = fieller_ratio(b, c, alpha=alpha) if paired.n else (math.nan, math.nan, math.nan)
    f = stats._nan_to_none
    pct = f"{(ratio - 1):+.1%}" if math.isfinite(ratio) else "n/a"
    shown = (f"{ratio:.3g} (95% CI {r_low:.3g} to {r_high:.3g})" if math.isfinite(r_low)
             else f"{ratio:.3g} (CI unbounded)") if math.isfinite(ratio) else "undefined (baseline mean 0)"
    state = {GUARD_HELD: "held", GUARD_REGRESSED: "regressed",
             GUARD_NOT_ENOUGH_ROWS: "not shown to hold yet (not enough rows)"}[verdict]
    note = (f"{guard.metric} {pct} (candidate/baseline mean ratio {shown}); allowed increase "
            f"+{guard.max_increase:.0%}: {state}")
    metric = {"metric": guard.metric, "unit": UNITS[guard.metric], "ratio": f(ratio), "ratio_ci": [f(r_low), f(r_high)],
              "max_increase": guard.max_increase, "source": source or f"span metrics ({guard.metric})"}
    return ScoreComparison(
        name=guard.metric, role="guard", n=paired.n,
        baseline_mean=float(b.mean()) if paired.n else math.nan,
        candidate_mean=float(c.mean()) if paired.n else math.nan,
        effect=res.estimate, ci=ci, se=res.se, df=res.df, p=res.pvalue,
        method="paired t on row means; ratio of paired means with a Fieller interval",
        verdict=verdict, alpha=alpha, min_effect=0.0, margin=guard.max_increase, binary=False,
        sd=float(np.std(d, ddof=1)) if paired.n >= 2 else math.nan,
        trials=trial_summaries(paired), missing=missing_summary(paired),
        power=power, notes=[note], kind="metric", metric=metric,
        reported=reported_figures(b, c, alpha=alpha, rng=rng) if paired.n else None,
    )
