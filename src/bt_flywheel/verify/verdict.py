"""One score, end to end: the verdict of DESIGN.md §8 (part of :mod:`bt_flywheel.verify.stats`).

:func:`compare_paired` runs every statistic in :mod:`bt_flywheel.verify.stats` for one score and gives
a verdict; :func:`apply_holm` corrects regression claims across scores. Import them from
``bt_flywheel.verify.stats`` (re-exported there).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bt_flywheel.verify.keep import GUARD_HELD, GUARD_NOT_ENOUGH_ROWS, GUARD_REGRESSED
from bt_flywheel.verify.reported import mcnemar_odds_ratio, reported_figures
from bt_flywheel.verify.stats import (
    DEFAULT_ALPHA,
    DEFAULT_MARGIN,
    DEFAULT_POWER,
    DEFAULT_RESAMPLES,
    DEFAULT_THRESHOLD,
    MISSING_LIMIT,
    BootstrapResult,
    ConfidenceInterval,
    DegenerateDataWarning,
    McNemarResult,
    NonInferiorityResult,
    PairedRows,
    PowerResult,
    RowRegression,
    TostResult,
    TTestResult,
    _iv,
    _nan_to_none,
    _noninferiority_from,
    _tost_from,
    bound_power,
    bound_required_n,
    holm,
    majority,
    mcnemar_exact,
    pair_rows,
    paired_bootstrap,
    row_regressions,
    ttest_differences,
)


@dataclass
class ScoreComparison:
    """Everything measured for one score; ``verdict`` as DESIGN.md §8 defines it."""

    name: str
    role: str
    n: int
    baseline_mean: float
    candidate_mean: float
    effect: float
    ci: ConfidenceInterval
    se: float
    df: float
    p: float
    method: str
    verdict: str
    alpha: float
    min_effect: float
    margin: float
    binary: bool
    sd: float = math.nan
    n_clusters: int | None = None
    trials: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, Any] = field(default_factory=dict)
    p_holm: float | None = None
    bootstrap: BootstrapResult | None = None
    mcnemar: McNemarResult | None = None
    tost: TostResult | None = None
    noninferiority: NonInferiorityResult | None = None
    power: PowerResult | None = None
    regressions: list[RowRegression] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "score"
    metric: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Target: improved; guard: held (non-inferior)."""
        return self.verdict == ("improved" if self.role == "target" else GUARD_HELD)

    def to_dict(self) -> dict[str, Any]:
        f = _nan_to_none
        out: dict[str, Any] = {
            "name": self.name, "role": self.role, "kind": self.kind, "n": self.n, "n_clusters": self.n_clusters,
            "baseline_mean": f(self.baseline_mean), "candidate_mean": f(self.candidate_mean),
            "effect": f(self.effect), "ci": self.ci.as_list(), "confidence_level": 1 - self.alpha,
            "se": f(self.se), "sd": f(self.sd), "df": f(self.df), "p": f(self.p), "p_holm": f(self.p_holm),
            "method": self.method, "verdict": self.verdict, "ok": self.ok, "binary": self.binary,
            "alpha": self.alpha, "min_effect": self.min_effect, "margin": self.margin,
            "trials": self.trials, "missing": self.missing,
            "bootstrap": None, "mcnemar": None, "tost": None, "noninferiority": None, "power": None,
            "regressions": [r.to_dict() for r in self.regressions], "notes": list(self.notes),
        }
        if self.bootstrap:
            b = self.bootstrap
            out["bootstrap"] = {"ci": b.confidence_interval.as_list(), "se": f(b.se),
                                "n_resamples": b.n_resamples, "method": b.method}
        if self.mcnemar:
            m = self.mcnemar
            odds = mcnemar_odds_ratio(m.gained, m.lost, alpha=self.alpha)
            out["mcnemar"] = {"lost": m.lost, "gained": m.gained, "both_pass": m.both_pass,
                              "both_fail": m.both_fail, "ties": m.ties, "p": f(m.pvalue), "method": m.method,
                              "odds_ratio": f(odds.estimate), "odds_ratio_ci": [f(odds.low), f(odds.high)]}
        if self.tost:
            t = self.tost
            out["tost"] = {"margin": t.margin, "p": f(t.pvalue), "p_lower": f(t.p_lower),
                           "p_upper": f(t.p_upper), "equivalent": t.equivalent}
        if self.noninferiority:
            g = self.noninferiority
            out["noninferiority"] = {"margin": g.margin, "lower_bound": f(g.lower_bound),
                                     "p": f(g.pvalue), "non_inferior": g.non_inferior}
        if self.metric is not None:
            out["metric"] = self.metric
        if self.reported is not None:
            out["reported"] = self.reported
        if self.power:
            p = self.power
            out["power"] = {"effect": f(p.effect), "sd": f(p.sd), "n": p.n, "power_at_n": f(p.power_at_n),
                            "required_n": p.required_n, "target_power": p.power, "note": p.note,
                            "bound": f(p.bound), "side": p.side}
        return out


def _power_for(res: TTestResult, sd: float, *, role: str, min_effect: float, margin: float,
               alpha: float) -> PowerResult:
    """Rows for 80% power for the CI bound the verdict is waiting on (same bound, same α)."""
    est, n = res.estimate, res.n
    if role == "guard" and est > -margin:
        bound, side, aim = -margin, "lower", f"show the guard holds (lower bound above -{margin:g})"
    elif role == "target" and est > min_effect:
        bound, side, aim = min_effect, "lower", f"show the effect exceeds min_effect {min_effect:g}"
    elif est < 0:
        bound, side, aim = 0.0, "upper", "show the regression (upper bound below 0)"
    else:
        return PowerResult(est, sd, n, math.nan, None, DEFAULT_POWER, alpha,
                           f"observed effect {est:+.4g} is not above min_effect {min_effect:g}; "
                           "more rows would not show an improvement of that size")
    distance = est - bound if side == "lower" else -est
    if not math.isfinite(sd) or n < 2:
        return PowerResult(distance, sd, n, math.nan, None, DEFAULT_POWER, alpha,
                           "too few rows to estimate variance", bound, side)
    need = bound_required_n(distance, sd, alpha=alpha)
    now = bound_power(distance, sd, n, alpha=alpha)
    note = (f"rows needed for 80% power to {aim} at the observed SD of row differences"
            if need else "no feasible sample size")
    if res.n_clusters is not None:
        note += " (computed as if rows were independent; clustered rows need more)"
    return PowerResult(distance, sd, n, now, need, DEFAULT_POWER, alpha, note, bound, side)


def _constant_differences(c: float, n: int, *, alpha: float, margin: float, guard: bool
                          ) -> tuple[ConfidenceInterval, float, TostResult, NonInferiorityResult | None]:
    """Exact answers when every row difference equals ``c`` (the t-test is undefined).

    c == 0: p = 1; the share of rows that could differ is at most 1 - (α/2)^(1/n) (two-sided
    Clopper-Pearson with 0 of n), and with scores in [0, 1] the mean effect is within ± that.
    TOST uses the one-sided bound 1 - α^(1/n). c != 0: p is the two-sided sign test 2·0.5^n;
    the CI is the point c when p < α and otherwise spans 0 and c.
    """
    if c == 0:
        bound, one_sided = 1 - (alpha / 2) ** (1 / n), 1 - alpha ** (1 / n)
        ci, p = ConfidenceInterval(-bound, bound), 1.0
        equivalent = one_sided < margin
        p_tost = (1 - margin) ** n  # P(no row differs | share of differing rows = margin)
        tost_res = TostResult(margin, p_tost, p_tost, p_tost, alpha, equivalent)
    else:
        p = min(1.0, 2 * 0.5 ** n)
        ci = ConfidenceInterval(c, c) if p < alpha else ConfidenceInterval(min(c, 0.0), max(c, 0.0))
        tost_res = TostResult(margin, math.nan, math.nan, math.nan, alpha, False)
    nonin = None
    if guard:
        nonin = NonInferiorityResult(margin, ci.low, math.nan, alpha, bool(ci.low > -margin))
    return ci, p, tost_res, nonin


def _constant_power(c: float, n: int, *, alpha: float, margin: float, min_effect: float, role: str
                    ) -> PowerResult:
    """Rows for the exact bound of :func:`_constant_differences` to settle the verdict, if the
    rows keep showing the same difference (power is then 1 from ``required_n`` on, 0 before)."""
    if c == 0 and role == "guard":
        # 1 - (α/2)^(1/n) < margin  <=>  n > ln(α/2) / ln(1 - margin)
        need = math.floor(math.log(alpha / 2) / math.log1p(-margin)) + 1 if margin > 0 else None
        bound, side = -margin, "lower"
        note = ("all row differences are 0: the exact Clopper-Pearson bound on the share of rows that could "
                f"differ clears -{margin:g} from {need} rows on, if they keep showing no difference"
                if need else "with margin 0 no number of identical rows shows non-inferiority")
    elif c == 0 or (role == "target" and 0 < c <= min_effect):
        return PowerResult(c, 0.0, n, math.nan, None, DEFAULT_POWER, alpha,
                           f"observed effect {c:+.4g} is not above min_effect {min_effect:g}; "
                           "more rows would not show an improvement of that size")
    else:
        need = math.floor(math.log2(2 / alpha)) + 1  # two-sided sign test 2·0.5^n < α
        bound, side = (0.0, "upper") if c < 0 else ((-margin, "lower") if role == "guard" else (min_effect, "lower"))
        note = (f"all row differences equal {c:+g}: the sign test settles it from {need} rows on, "
                "if they keep showing the same difference")
    power_at_n = math.nan if need is None else (1.0 if n >= need else 0.0)
    return PowerResult(abs(c - bound), 0.0, n, power_at_n, need, DEFAULT_POWER, alpha, note, bound, side)


def compare_paired(baseline: Mapping[str, Any], candidate: Mapping[str, Any], /, *, name: str = "score",
                   role: str = "target", min_effect: float = 0.0, margin: float = DEFAULT_MARGIN,
                   alpha: float = DEFAULT_ALPHA, threshold: float = DEFAULT_THRESHOLD,
                   clusters: Mapping[str, Hashable] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                   rng: Any = None, paired: PairedRows | None = None) -> ScoreComparison:
    """Compare one score between two experiments (DESIGN.md §8) and give a verdict.

    Target verdicts: ``improved`` if the (1-α) CI lower bound > ``min_effect``; ``regressed``
    if its upper bound < 0; ``equivalent`` only if TOST within ±``margin`` passes; else
    ``inconclusive`` (with ``power.required_n``). Guard verdicts: ``non_inferior`` (held) if the CI
    lower bound > -``margin``; ``regressed`` if the upper bound < 0; else ``not_enough_rows``
    (with ``power.required_n`` for that same bound). Beside the verdict, never voting in it:
    the McNemar odds ratio and the figures of :mod:`bt_flywheel.verify.reported`.
    ``n_resamples=0`` skips the bootstrap. Pass ``paired`` to reuse an existing pairing.
    """
    opts = _iv(role=role, min_effect=min_effect, margin=margin, alpha=alpha, threshold=threshold,
               n_resamples=n_resamples, rng=rng)
    alpha, margin, min_effect = opts["alpha"], opts["margin"], opts["min_effect"]
    if paired is None:
        paired = pair_rows(baseline, candidate, clusters=clusters)
    notes: list[str] = []
    if paired.missing_exceeds_limit:
        notes.append(f"{paired.missing_fraction:.1%} of rows are scored on one side only (> {MISSING_LIMIT:.0%}); "
                     f"they are excluded and the verdict rests on the {paired.n} paired rows")
    d = paired.differences
    res = _ttest_noting(d, paired.clusters, notes)
    bounds = _bounds(res, d, role=role, alpha=alpha, margin=margin, notes=notes)
    verdict = str(target_verdicts(bounds.ci.low, bounds.ci.high, bounds.tost.equivalent, min_effect=min_effect)
                  if role == "target" else guard_verdicts(bounds.ci.low, bounds.ci.high, margin=margin))
    power = None
    if verdict in ("inconclusive", GUARD_NOT_ENOUGH_ROWS):
        power = (_constant_power(res.estimate, d.size, alpha=alpha, margin=margin, min_effect=min_effect, role=role)
                 if bounds.constant else
                 _power_for(res, bounds.sd, role=role, min_effect=min_effect, margin=margin, alpha=alpha))
    return ScoreComparison(
        name=name, role=role, n=paired.n,
        baseline_mean=float(paired.baseline.mean()) if paired.n else math.nan,
        candidate_mean=float(paired.candidate.mean()) if paired.n else math.nan,
        effect=res.estimate, ci=bounds.ci, se=res.se, df=res.df, p=bounds.p, method=bounds.method, verdict=verdict,
        alpha=alpha, min_effect=min_effect, margin=margin, binary=paired.binary, sd=bounds.sd,
        n_clusters=res.n_clusters, trials=trial_summaries(paired), missing=missing_summary(paired),
        bootstrap=_bootstrap(d, paired, n_resamples=opts["n_resamples"], alpha=alpha, rng=opts["rng"]),
        mcnemar=(mcnemar_exact(majority(paired.baseline), majority(paired.candidate))
                 if paired.binary and paired.n else None),
        tost=bounds.tost, noninferiority=bounds.nonin, power=power,
        regressions=row_regressions(paired, threshold=opts["threshold"]), notes=notes,
        reported=(reported_figures(paired.baseline, paired.candidate, alpha=alpha,
                                   rng=opts["rng"] if rng is not None else 0) if paired.n else None),
    )


def target_verdicts(low: Any, high: Any, equivalent: Any, *, min_effect: float) -> np.ndarray:
    """The target verdict from the (1-α) CI bounds and the TOST decision; broadcasts over arrays
    (the A/A simulation decides 2,000 comparisons at once with this same rule). NaN bounds
    (too few rows) are inconclusive."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return np.select([low > min_effect, high < 0, np.asarray(equivalent, dtype=bool) & np.isfinite(low)],
                     ["improved", "regressed", "equivalent"], "inconclusive")


def guard_verdicts(low: Any, high: Any, *, margin: float) -> np.ndarray:
    """A score guard's verdict from its (1-α) CI bounds: held (non_inferior) when the lower bound
    is above -margin, regressed when the upper bound is below 0, else not_enough_rows (NaN
    bounds included); broadcasts over arrays."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return np.select([low > -margin, high < 0], [GUARD_HELD, GUARD_REGRESSED], GUARD_NOT_ENOUGH_ROWS)


def missing_summary(paired: PairedRows) -> dict[str, Any]:
    """The `missing` object of a score: rows scored on one side only."""
    return {"baseline_only": len(paired.baseline_only), "candidate_only": len(paired.candidate_only),
            "fraction": round(paired.missing_fraction, 6), "exceeds_limit": paired.missing_exceeds_limit,
            "limit": MISSING_LIMIT, "baseline_only_ids": paired.baseline_only[:20],
            "candidate_only_ids": paired.candidate_only[:20]}


def trial_summaries(paired: PairedRows) -> dict[str, Any]:
    """The `trials` object of a score: the fewest and most trials per row on each side."""
    return {"baseline": _trial_summary(paired.baseline_trials), "candidate": _trial_summary(paired.candidate_trials)}


def _ttest_noting(d: np.ndarray, clusters: Any, notes: list[str]) -> TTestResult:
    """The paired t-test; its degenerate-data warnings become notes (and are re-raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateDataWarning)
        res = ttest_differences(d, clusters=clusters)
    for w in caught:
        notes.append(str(w.message))
        warnings.warn(w.message, DegenerateDataWarning, stacklevel=3)
    return res


@dataclass(frozen=True)
class _Bounds:
    """The interval a verdict reads, with its p, method, TOST and non-inferiority."""

    ci: ConfidenceInterval
    p: float
    method: str
    tost: TostResult
    nonin: NonInferiorityResult | None
    sd: float
    constant: bool


def _bounds(res: TTestResult, d: np.ndarray, *, role: str, alpha: float, margin: float,
            notes: list[str]) -> _Bounds:
    """The t-interval, or the exact bound when every row difference is equal (t undefined)."""
    sd = float(np.std(d, ddof=1)) if d.size >= 2 else math.nan
    nonin = _noninferiority_from(res, margin=margin, alpha=alpha) if role == "guard" else None
    constant = bool(res.se == 0 and d.size >= 2 and np.all(d == d[0]))
    if not constant:
        return _Bounds(res.confidence_interval(1 - alpha), res.pvalue, res.method,
                       _tost_from(res, margin=margin, alpha=alpha), nonin, sd, False)
    ci, p_value, tost_res, nonin = _constant_differences(res.estimate, d.size, alpha=alpha, margin=margin,
                                                         guard=role == "guard")
    notes.append(f"all {d.size} row differences equal {res.estimate:+g}; used the sign test and the "
                 "Clopper-Pearson bound on the share of rows that could differ (scores in [0, 1])")
    return _Bounds(ci, p_value, "exact bound (all row differences equal)", tost_res, nonin, sd, True)


def _bootstrap(d: np.ndarray, paired: PairedRows, *, n_resamples: int, alpha: float, rng: Any
               ) -> BootstrapResult | None:
    """The paired bootstrap cross-check (None when skipped or below 2 rows)."""
    if not n_resamples or paired.n < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        return paired_bootstrap(d, n_resamples=n_resamples, confidence_level=1 - alpha, rng=rng,
                                clusters=paired.clusters)


def _trial_summary(counts: np.ndarray) -> dict[str, Any]:
    if counts.size == 0:
        return {"min": None, "max": None}
    return {"min": int(counts.min()), "max": int(counts.max())}


def apply_holm(results: Sequence[ScoreComparison], /) -> None:
    """Set ``p_holm`` on each result (Holm across the scores) and downgrade a ``regressed``
    verdict whose Holm-adjusted p is not below α to ``inconclusive`` (a regression claim
    across several scores must survive the correction)."""
    adjusted = holm([r.p if math.isfinite(r.p) else math.nan for r in results])
    for r, adj in zip(results, adjusted, strict=True):
        r.p_holm = float(adj) if math.isfinite(adj) else None
        if r.verdict == "regressed" and len(results) > 1 and not (r.p_holm is not None and r.p_holm < r.alpha):
            r.verdict = "inconclusive" if r.role == "target" else GUARD_NOT_ENOUGH_ROWS
            r.notes.append(f"CI excludes 0 but the Holm-adjusted p ({adj:.3g}) across {len(results)} scores "
                           f"is not below alpha {r.alpha:g}; no regression is claimed")
            if r.power is None and r.kind == "metric":
                r.power = _rise_power(r)
            elif r.power is None:
                res = TTestResult(r.effect, r.se, r.df, math.nan, r.p, r.n, 0.0, r.n_clusters, r.method)
                r.power = _power_for(res, r.sd, role=r.role, min_effect=r.min_effect, margin=r.margin,
                                     alpha=r.alpha)


def _rise_power(r: ScoreComparison) -> PowerResult:
    """Rows for a metric guard's rise (the ratio's lower bound above 1, i.e. the t-interval of
    mean(c - b) above 0) to show at 80% power, when Holm withdrew the regression claim."""
    if r.n < 2 or not (math.isfinite(r.sd) and r.sd > 0 and r.effect > 0):
        return PowerResult(r.effect, r.sd, r.n, math.nan, None, DEFAULT_POWER, r.alpha,
                           "too few rows to estimate variance", 1.0, "lower")
    return PowerResult(r.effect, r.sd, r.n, bound_power(r.effect, r.sd, r.n, alpha=r.alpha),
                       bound_required_n(r.effect, r.sd, alpha=r.alpha), DEFAULT_POWER, r.alpha,
                       "rows needed for 80% power to show the increase (the ratio's lower bound above 1) "
                       "at the observed SD", 1.0, "lower")
