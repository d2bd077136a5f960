"""Compare two experiments, local or in Braintrust: the Verify step's numbers (DESIGN.md §8).

``compare_experiments(backend_or_store_path, baseline, candidate, target=..., guards=[...])`` reads
both experiments' root rows through the backend (``Backend.experiment_roots``: scorer spans'
scores rolled up onto the roots, so SDK-shaped experiments read alike), keys each row by
``metadata.dataset_row_id`` (falling back to ``origin.id``), takes the trial index from
``metadata.trial`` and the score from ``scores[<name>]``, runs
:func:`bt_flywheel.verify.verdict.compare_paired` for the target and every guard, applies Holm across
the scores (regression claims) and, with ``slice_key``, Benjamini-Hochberg across the slice
tests. ``metric_guards`` add span-metric guards (tokens, cost, latency, duration; read through
``Backend.experiment_span_metrics`` and judged by :mod:`bt_flywheel.verify.metrics`), and
``pool`` pools each score's slice effects (DerSimonian-Laird; :func:`pool_comparisons` pools
saved comparisons). A local store is opened read-only.

``Comparison.to_dict()`` (what ``flywheel compare --json`` prints; strict JSON, NaN -> null)::

    {
      "contract": "bt-flywheel-comparison/v1",
      "baseline": "<experiment id>", "candidate": "<experiment id>",
      "experiments": {"baseline": {"id", "name", "created", "root_rows", "rows", "trials",
                                   "dataset_id", "dataset_version", "split", "git_sha"},
                      "candidate": {...same...}},
      "target": "<score>", "guards": ["<score>", ...],
      "metric_guards": [{"metric": "tokens" | "cost" | "latency" | "duration", "max_increase": 0.1}],
      "status": "passed" | "failed" | "inconclusive",   # passed <=> keep; failed: target
                                     # regressed or a guard not non-inferior; else inconclusive
      "keep": bool,                  # target improved and every guard non-inferior
      "target_verdict": "improved" | "regressed" | "equivalent" | "inconclusive",
      "guards_ok": bool | null,      # null when there are no guards
      "alpha": 0.05, "min_effect": 0.0, "margin": 0.02, "regression_threshold": 0.25,
      "n_resamples": 10000, "seed": int | null, "cluster_key": str | null,
      "scores": [ScoreComparison.to_dict(), ...],   # target first; see verdict.ScoreComparison
          # each: name, role, n, n_clusters, baseline_mean, candidate_mean, effect, ci [lo, hi],
          # confidence_level, se, sd, df, p, p_holm, method, verdict, ok, binary, alpha,
          # min_effect, margin, trials {baseline,candidate: {min,max}}, missing {baseline_only,
          # candidate_only, fraction, exceeds_limit, limit, *_ids}, bootstrap {ci, se,
          # n_resamples, method} | null, mcnemar {lost, gained, both_pass, both_fail, ties, p,
          # method, odds_ratio, odds_ratio_ci} | null, tost {margin, p, p_lower, p_upper,
          # equivalent}, noninferiority {margin, lower_bound, p, non_inferior} | null (guards),
          # kind "score" | "metric" (a metric guard also has metric {metric, unit, ratio,
          # ratio_ci, max_increase, source}), power {effect, sd, n,
          # power_at_n, required_n, target_power, note} | null (inconclusive only),
          # regressions [{id, baseline, candidate, drop}], notes [str], reported {wilcoxon,
          # hodges_lehmann, cohens_dz, cliffs_delta, permutation, mde} (beside the verdict, never
          # voting: verify.reported)
      "regressions": [{"score", "row_id", "baseline", "candidate", "drop"}],  # all scores, by drop
      "multiplicity": {"method": "holm", "applies_to": "..."},
      "slices": {"key": str, "correction": "benjamini_hochberg", "tests": int,
                 "results": [{"value", "score", "role", "n", "baseline_mean", "candidate_mean",
                              "effect", "ci", "p", "q", "significant", "direction", "se",
                              "reported"}]} | null,
      "pooled": [{"score", "k", "effect", "ci", "se", "tau2", "i2", "q", "q_p", "method",
                  "sources"}] | null,        # with pool (compare --pool)
      "health": {"stuck_scores": [names whose every row scored the same 0 or 1 on both sides]},
      "notes": [str]
    }
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bt_flywheel.backends.base import Backend, as_backend
from bt_flywheel.core.errors import InputError
from bt_flywheel.label.base import is_weak_label
from bt_flywheel.verify import metrics as metrics_mod
from bt_flywheel.verify import stats, verdict
from bt_flywheel.verify.comparison_model import CONTRACT
from bt_flywheel.verify.keep import KeepDecision, keep_decision
from bt_flywheel.verify.metrics import MetricGuard
from bt_flywheel.verify.reported import dersimonian_laird

_MISSING_VALUE = "(none)"


@dataclass
class ExperimentScores:
    """One experiment's per-row, per-trial scores (plus row keys for clusters and slices)."""

    id: str
    name: str
    created: str | None
    metadata: dict[str, Any]
    root_rows: int
    scores: dict[str, dict[str, list[float | None]]]  # score -> row id -> trial values
    available: set[str]
    clusters: dict[str, str] = field(default_factory=dict)
    slices: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    weak_label_rows: set[str] = field(default_factory=set)  # rows whose expected is a weak label
    metrics: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)  # metric -> row -> trials

    @property
    def rows(self) -> int:
        return len({r for per_row in self.scores.values() for r in per_row})

    def describe(self) -> dict[str, Any]:
        meta = self.metadata
        trials = meta.get("trials")
        return {"id": self.id, "name": self.name, "created": self.created, "root_rows": self.root_rows,
                "rows": self.rows, "trials": trials, "dataset_id": meta.get("dataset_id"),
                "dataset_version": meta.get("dataset_version"), "split": meta.get("split"),
                "git_sha": meta.get("git_sha"), "candidate": (meta.get("candidate") or {}).get("id")}


@dataclass
class SliceResult:
    value: str
    score: str
    role: str
    n: int
    baseline_mean: float
    candidate_mean: float
    effect: float
    ci: stats.ConfidenceInterval
    p: float
    q: float = math.nan
    se: float = math.nan
    reported: dict[str, Any] | None = None

    def to_dict(self, alpha: float) -> dict[str, Any]:
        f = stats._nan_to_none
        significant = bool(math.isfinite(self.q) and self.q < alpha)
        direction = None
        if significant:
            direction = "up" if self.effect > 0 else "down"
        return {"value": self.value, "score": self.score, "role": self.role, "n": self.n,
                "baseline_mean": f(self.baseline_mean), "candidate_mean": f(self.candidate_mean),
                "effect": f(self.effect), "ci": self.ci.as_list(), "p": f(self.p), "q": f(self.q),
                "significant": significant, "direction": direction, "se": f(self.se), "reported": self.reported}


@dataclass
class Comparison:
    baseline: ExperimentScores
    candidate: ExperimentScores
    target: str
    guards: list[str]
    scores: list[verdict.ScoreComparison]
    alpha: float
    min_effect: float
    margin: float
    threshold: float
    n_resamples: int
    seed: int | None = None
    cluster_key: str | None = None
    slice_key: str | None = None
    slices: list[SliceResult] = field(default_factory=list)
    stuck_scores: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metric_guards: list[MetricGuard] = field(default_factory=list)
    pool: bool = False

    @property
    def target_result(self) -> verdict.ScoreComparison:
        return self.scores[0]

    @property
    def guard_results(self) -> list[verdict.ScoreComparison]:
        return self.scores[1:]

    @property
    def decision(self) -> KeepDecision:
        """The keep rule (:func:`bt_flywheel.verify.keep.keep_decision`) on these verdicts."""
        return keep_decision(self.target_result.verdict, {g.name: g.verdict for g in self.guard_results})

    @property
    def guards_ok(self) -> bool | None:
        return self.decision.guards_ok

    @property
    def keep(self) -> bool:
        return self.decision.keep

    @property
    def status(self) -> str:
        return self.decision.status

    def pooled(self) -> list[dict[str, Any]]:
        """Each score's effect pooled across its slices (DerSimonian-Laird random effects)."""
        out = []
        for s in self.scores:
            parts = [x for x in self.slices if x.score == s.name and math.isfinite(x.se) and x.se > 0]
            if len(parts) >= 2:
                out.append(pooled_entry(s.name, [x.effect for x in parts], [x.se for x in parts], alpha=self.alpha,
                                        sources=[f"{self.slice_key}={x.value}" for x in parts]))
        return out

    def regressions(self) -> list[dict[str, Any]]:
        rows = [{"score": s.name, "row_id": r.id, "baseline": r.baseline, "candidate": r.candidate, "drop": r.drop}
                for s in self.scores for r in s.regressions]
        return sorted(rows, key=lambda r: (-r["drop"], r["score"], r["row_id"]))

    def to_dict(self) -> dict[str, Any]:
        decision = self.decision
        slices = None
        if self.slice_key:
            tested = [s for s in self.slices if math.isfinite(s.p)]
            slices = {"key": self.slice_key, "correction": "benjamini_hochberg", "tests": len(tested),
                      "results": [s.to_dict(self.alpha) for s in self.slices]}
        return {
            "contract": CONTRACT,
            "baseline": self.baseline.id,
            "candidate": self.candidate.id,
            "experiments": {"baseline": self.baseline.describe(), "candidate": self.candidate.describe()},
            "target": self.target,
            "guards": list(self.guards),
            "metric_guards": [{"metric": g.metric, "max_increase": g.max_increase} for g in self.metric_guards],
            "status": decision.status,
            "keep": decision.keep,
            "target_verdict": self.target_result.verdict,
            "guards_ok": decision.guards_ok,
            "needs_rows": decision.needs_rows,
            "reason": decision.reason,
            "alpha": self.alpha, "min_effect": self.min_effect, "margin": self.margin,
            "regression_threshold": self.threshold, "n_resamples": self.n_resamples, "seed": self.seed,
            "cluster_key": self.cluster_key,
            "scores": [s.to_dict() for s in self.scores],
            "regressions": self.regressions(),
            "multiplicity": {"method": "holm" if len(self.scores) > 1 else "none",
                             "applies_to": (f"regression claims across {len(self.scores)} scores; guards are "
                                            "each tested at alpha (intersection-union)"
                                            if len(self.scores) > 1 else "a single score: no correction")},
            "slices": slices,
            "pooled": self.pooled() if self.pool else None,
            "health": {"stuck_scores": list(self.stuck_scores)},
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------ loading

def resolve_path(row: dict[str, Any], path: str) -> Any:
    """A dotted path into a row (``metadata.facet``, ``input.category``); None if absent."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def row_key(row: dict[str, Any]) -> str | None:
    """The dataset row id a root row is paired by: ``metadata.dataset_row_id``, else ``origin.id``
    (the dataset record of a plain ``braintrust eval`` run); None when it has neither."""
    key = (row.get("metadata") or {}).get("dataset_row_id") or (row.get("origin") or {}).get("id")
    return str(key) if key else None


def _label(value: Any) -> str:
    if value is None or value == "":
        return _MISSING_VALUE
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def load_experiment(backend: Backend, name_or_id: str, score_names: list[str], *, project: str | None = None,
                    cluster_key: str | None = None, slice_key: str | None = None,
                    metric_names: list[str] | tuple[str, ...] = (),
                    prices: dict[str, tuple[float, float]] | None = None) -> ExperimentScores:
    """Read one experiment's root rows (from either backend) into per-row trial scores for
    ``score_names``; with ``metric_names``, also every span's metrics into per-row trial values
    (``Backend.experiment_span_metrics``; see :mod:`bt_flywheel.verify.metrics`)."""
    found = backend.experiment(name_or_id, project=project)
    scores: dict[str, dict[str, dict[int, float | None]]] = {n: defaultdict(dict) for n in score_names}
    available: set[str] = set()
    clusters: dict[str, str] = {}
    slices: dict[str, str] = {}
    root_rows = duplicates = 0
    weak: set[str] = set()
    next_trial: dict[str, int] = defaultdict(int)
    traces: dict[str, tuple[str, int]] = {}  # root span id -> (dataset row id, trial)
    for row in backend.experiment_roots(found):
        root_rows += 1
        meta = row.get("metadata") or {}
        row_id = row_key(row)
        if row_id is None:
            raise InputError(f"experiment {found.name!r}: root row {row.get('id')!r} has no "
                             "metadata.dataset_row_id", hint="run it with `flywheel eval` so rows can be paired")
        trial = meta.get("trial")
        if not isinstance(trial, int) or isinstance(trial, bool):
            trial = next_trial[row_id]
        next_trial[row_id] = max(next_trial[row_id], trial + 1)
        traces[str(row.get("root_span_id") or row.get("span_id") or row.get("id"))] = (row_id, trial)
        row_scores = row.get("scores") or {}
        available.update(k for k, v in row_scores.items() if v is not None)
        seen = False
        for name in score_names:
            per_row = scores[name][row_id]
            seen = seen or trial in per_row
            value = row_scores.get(name)
            per_row[trial] = None if value is None or isinstance(value, bool) else float(value)
        duplicates += seen
        if is_weak_label(row):
            weak.add(row_id)
        if cluster_key:
            clusters.setdefault(row_id, _label(resolve_path(row, cluster_key)))
        if slice_key:
            slices.setdefault(row_id, _label(resolve_path(row, slice_key)))
    metric_values = (metrics_mod.metric_rows(backend.experiment_span_metrics(found), traces, metric_names,
                                             prices or metrics_mod.DEFAULT_PRICES, experiment=found.name)
                     if metric_names else {})
    return ExperimentScores(
        id=found.id, name=found.name, created=found.created, metadata=dict(found.metadata), root_rows=root_rows,
        metrics=metric_values,
        scores={n: {r: [v[t] for t in sorted(v)] for r, v in per.items()} for n, per in scores.items()},
        available=available, clusters=clusters, slices=slices, duplicates=duplicates, weak_label_rows=weak)


# ------------------------------------------------------------------------------------ comparing

def compare_experiments(source: str | Path | Backend, baseline: str, candidate: str, *, target: str,
                        guards: list[str] | tuple[str, ...] = (), min_effect: float = 0.0,
                        margin: float = stats.DEFAULT_MARGIN, alpha: float = stats.DEFAULT_ALPHA,
                        threshold: float = stats.DEFAULT_THRESHOLD, slice_key: str | None = None,
                        cluster_key: str | None = None, n_resamples: int = stats.DEFAULT_RESAMPLES,
                        seed: int | None = 0, project: str | None = None,
                        metric_guards: list[MetricGuard] | tuple[MetricGuard, ...] = (),
                        prices: dict[str, tuple[float, float]] | None = None, pool: bool = False) -> Comparison:
    """Load both experiments from a backend (a store path means the local store) and compare them;
    ``metric_guards`` also guard span metrics (tokens, cost, latency, duration; ``prices`` USD per
    million input/output tokens by model, default ``metrics.DEFAULT_PRICES``)."""
    backend = as_backend(source)
    names = [target, *[g for g in guards if g != target]]
    if len(set(names)) != len(names):
        raise InputError(f"--guard: a score is listed twice ({', '.join(names)})")
    stats._iv(min_effect=min_effect, margin=margin, alpha=alpha, threshold=threshold, n_resamples=n_resamples)
    _check_metric_guards(metric_guards, names)
    with backend.reading():
        base, cand = (load_experiment(backend, name, names, project=project, cluster_key=cluster_key,
                                      slice_key=slice_key, metric_names=[g.metric for g in metric_guards],
                                      prices=prices)
                      for name in (baseline, candidate))
    return compare_loaded(base, cand, target=target, guards=names[1:], min_effect=min_effect, margin=margin,
                          alpha=alpha, threshold=threshold, slice_key=slice_key, cluster_key=cluster_key,
                          n_resamples=n_resamples, seed=seed, metric_guards=metric_guards, pool=pool)


def _check_metric_guards(metric_guards: Any, score_names: list[str]) -> None:
    seen: set[str] = set()
    for g in metric_guards:
        if g.metric in score_names:
            raise InputError(f"--guard-metric {g.metric}: also a score name; compare it once")
        if g.metric in seen:
            raise InputError(f"--guard-metric {g.metric}: listed twice")
        seen.add(g.metric)


def compare_loaded(base: ExperimentScores, cand: ExperimentScores, *, target: str, guards: list[str],
                   min_effect: float = 0.0, margin: float = stats.DEFAULT_MARGIN,
                   alpha: float = stats.DEFAULT_ALPHA, threshold: float = stats.DEFAULT_THRESHOLD,
                   slice_key: str | None = None, cluster_key: str | None = None,
                   n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int | None = 0,
                   metric_guards: list[MetricGuard] | tuple[MetricGuard, ...] = (), pool: bool = False) -> Comparison:
    """Compare two loaded experiments (see :func:`compare_experiments`); ``pool`` pools each
    score's slice effects (needs ``slice_key``)."""
    if pool and not slice_key:
        raise InputError("--pool: pools each score's effect across slices; give --slice KEY too",
                         hint="or pool several comparison files: flywheel compare --pool-from A.json --pool-from B.json")
    notes = _check_and_note(base, cand, target, guards)
    rng = np.random.default_rng(seed)
    clusters = {**cand.clusters, **base.clusters} if cluster_key else None
    results: list[verdict.ScoreComparison] = []
    paired_by_score: dict[str, stats.PairedRows] = {}
    stuck: list[str] = []
    for name in [target, *guards]:
        paired = stats.pair_rows(base.scores[name], cand.scores[name], clusters=clusters)
        paired_by_score[name] = paired
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            results.append(verdict.compare_paired(
                {}, {}, paired=paired, name=name, role="target" if name == target else "guard",
                min_effect=min_effect, margin=margin, alpha=alpha, threshold=threshold, n_resamples=n_resamples,
                rng=rng))
        values = np.concatenate([paired.baseline, paired.candidate])
        if values.size and np.all(values == values[0]) and values[0] in (0.0, 1.0):
            stuck.append(name)
    for guard in metric_guards:
        paired = stats.pair_rows(_metric_values(base, guard), _metric_values(cand, guard), clusters=clusters)
        results.append(metrics_mod.compare_metric(paired, guard, alpha=alpha, rng=rng))
    verdict.apply_holm(results)
    comparison = Comparison(base, cand, target, list(guards), results, alpha, min_effect, margin, threshold,
                            n_resamples, seed=seed, cluster_key=cluster_key, slice_key=slice_key,
                            stuck_scores=stuck, notes=notes, metric_guards=list(metric_guards), pool=pool)
    if stuck:
        notes.append(f"score(s) {', '.join(stuck)} are the same 0 or 1 on every row of both experiments: "
                     "check the scorer before trusting them")
    if slice_key:
        comparison.slices = _slices(paired_by_score, results, {**cand.slices, **base.slices}, alpha=alpha,
                                    margin=margin, min_effect=min_effect)
    return comparison


def _check_and_note(base: ExperimentScores, cand: ExperimentScores, target: str, guards: list[str]) -> list[str]:
    """Refuse a score either experiment lacks; note what the reader should know about the pairing."""
    notes: list[str] = []
    if base.id == cand.id:
        notes.append("baseline and candidate are the same experiment")
    for name in [target, *guards]:
        for exp in (base, cand):
            if name not in exp.available:
                shown = ", ".join(sorted(exp.available)) or "(none)"
                raise InputError(f"score {name!r}: not found in experiment {exp.name!r}",
                                 hint=f"scores there: {shown}")
    for key in ("dataset_id", "dataset_version", "split"):
        b, c = base.metadata.get(key), cand.metadata.get(key)
        if b is not None and c is not None and b != c:
            notes.append(f"{key} differs (baseline {b!r}, candidate {c!r}); rows are paired by dataset row id")
    weak = base.weak_label_rows | cand.weak_label_rows
    if weak:
        notes.append(f"the ground truth of {len(weak)} row(s) is a weak label (the score labeler: a threshold on the "
                     f"production score, a verdict on the old output): target {target!r} measured against it shows "
                     "agreement with the old scorer, not correctness; relabel with llm, agent or file to trust it")
    for exp in (base, cand):
        if exp.duplicates:
            notes.append(f"experiment {exp.name!r}: {exp.duplicates} root rows repeat a (row, trial); the last one is used")
    return notes


def _metric_values(exp: ExperimentScores, guard: MetricGuard) -> dict[str, list[float | None]]:
    if guard.metric not in exp.metrics:
        raise InputError(f"--guard-metric {guard.metric}: experiment {exp.name!r} was loaded without its span metrics")
    return exp.metrics[guard.metric]


def _slices(paired_by_score: dict[str, stats.PairedRows], results: list[verdict.ScoreComparison],
            labels: dict[str, str], *, alpha: float, margin: float, min_effect: float) -> list[SliceResult]:
    out: list[SliceResult] = []
    for res in results:
        if res.kind != "score":  # metric guards are judged on the whole set only
            continue
        paired = paired_by_score[res.name]
        row_labels = np.asarray([labels.get(i, _MISSING_VALUE) for i in paired.ids], dtype=object)
        for value in sorted(set(row_labels.tolist())):
            sub = paired.subset(row_labels == value)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", stats.DegenerateDataWarning)
                r = verdict.compare_paired({}, {}, paired=sub, name=res.name, role=res.role, alpha=alpha,
                                         margin=margin, min_effect=min_effect, n_resamples=0)
            out.append(SliceResult(value, res.name, res.role, r.n, r.baseline_mean, r.candidate_mean, r.effect,
                                   r.ci, r.p if r.p is not None else math.nan, se=r.se, reported=r.reported))
    qs = stats.benjamini_hochberg([s.p for s in out]) if out else []
    for s, q in zip(out, qs, strict=True):
        s.q = float(q)
    return out


def pooled_entry(score: str, effects: list[float], ses: list[float], *, alpha: float,
                 sources: list[str]) -> dict[str, Any]:
    """One `pooled[]` item: DerSimonian-Laird across estimates of the same change's effect."""
    f = stats._nan_to_none
    res = dersimonian_laird(effects, [s * s for s in ses], alpha=alpha)
    return {"score": score, "k": res.k, "effect": f(res.effect), "ci": [f(res.low), f(res.high)], "se": f(res.se),
            "tau2": f(res.tau2), "i2": f(res.i2), "q": f(res.q), "q_p": f(res.q_pvalue), "method": res.method,
            "sources": sources}


def pool_comparisons(docs: list[tuple[str, Any]], *, alpha: float = stats.DEFAULT_ALPHA) -> dict[str, Any]:
    """Pool each score's whole-set effect across several comparison files (the same change
    measured with other seeds or runs): ``{"pooled": [...], "alpha", "files"}``."""
    from bt_flywheel.verify.comparison_model import as_comparison

    if len(docs) < 2:
        raise InputError("--pool-from: give at least two comparison files to pool")
    models = [(src, as_comparison(d, source=str(src))) for src, d in docs]
    pooled = []
    for name in [s.name for s in models[0][1].scores]:
        parts = [(str(src), s) for src, m in models for s in m.scores
                 if s.name == name and s.effect is not None and s.se is not None and s.se > 0]
        if len(parts) >= 2:
            pooled.append(pooled_entry(name, [s.effect for _, s in parts], [s.se for _, s in parts], alpha=alpha,
                                       sources=[src for src, _ in parts]))
    return {"pooled": pooled, "alpha": alpha, "files": [str(src) for src, _ in docs]}
