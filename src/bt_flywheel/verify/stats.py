"""Paired statistics for comparing two experiments on the same dataset rows (DESIGN.md §8).

Pure NumPy/SciPy, in the style of ``scipy.stats``: data positional, options keyword-only,
input checked in one ``_iv`` helper whose messages name the parameter, small result
dataclasses. Degenerate data (fewer than two rows, all differences equal) warns with
:class:`DegenerateDataWarning` and gives NaN or a verdict that follows from the data; it never
raises.

The unit of analysis is the dataset row. Each row's score is the mean over its trials (trial i
of one experiment is never paired with trial i of the other: trials are exchangeable draws).
Differences are ``candidate - baseline``, so a positive effect is an improvement.

Building blocks (each usable on its own):

- :func:`pair_rows` - pair two ``{row_id: [trial scores]}`` mappings -> :class:`PairedRows`
- :func:`ttest_differences` / :func:`paired_ttest` - t-test on row differences, optionally with
  cluster-robust SE -> :class:`TTestResult` (``.confidence_interval(level)``)
- :func:`mcnemar_exact` - exact McNemar on per-row majority of binary scores
- :func:`paired_bootstrap` - vectorized percentile bootstrap CI of the mean difference
- :func:`tost` - two one-sided tests for equivalence within +-margin
- :func:`noninferiority` - guard check: CI lower bound above -margin
- :func:`holm`, :func:`benjamini_hochberg` - adjusted p-values
- :func:`paired_power`, :func:`required_n` - power of the paired t-test (noncentral t)
- :func:`row_regressions` - rows whose score dropped by more than a threshold
- :func:`compare_paired` - all of the above for one score -> :class:`ScoreComparison` with a
  verdict (improved / regressed / equivalent / inconclusive for a target; non_inferior /
  regressed / not_enough_rows for a guard; see :mod:`bt_flywheel.verify.keep`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as _st

from bt_flywheel.core.errors import InputError

MISSING_LIMIT = 0.05
DEFAULT_RESAMPLES = 10_000
DEFAULT_MARGIN = 0.02
DEFAULT_THRESHOLD = 0.25
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
_CHUNK_ELEMENTS = 1 << 19  # indices per bootstrap chunk (4 MiB of int64): bounded memory, cache-friendly



class StatsInputError(InputError, ValueError):
    """Invalid input to a statistics function (a ValueError, and exit code 2 in the CLI)."""


class DegenerateDataWarning(RuntimeWarning):
    """The data cannot support the requested statistic (too few rows, zero variance)."""


# --------------------------------------------------------------------------- validation

def _iv(**params: Any) -> dict[str, Any]:
    """Validate named options; every message names the parameter and what is allowed."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name in ("alpha", "power", "confidence_level"):
            if not _is_number(value) or not 0 < float(value) < 1:
                raise StatsInputError(f"`{name}` must be a number strictly between 0 and 1; got {value!r}")
            out[name] = float(value)
        elif name in ("margin", "threshold"):
            if not _is_number(value) or not 0 <= float(value) < math.inf:
                raise StatsInputError(f"`{name}` must be a finite number >= 0; got {value!r}")
            out[name] = float(value)
        elif name in ("min_effect", "effect", "null"):
            if not _is_number(value) or not math.isfinite(float(value)):
                raise StatsInputError(f"`{name}` must be a finite number; got {value!r}")
            out[name] = float(value)
        elif name == "sd":
            if not _is_number(value) or not 0 <= float(value) < math.inf:
                raise StatsInputError(f"`sd` must be a finite number >= 0; got {value!r}")
            out[name] = float(value)
        elif name in ("n_resamples", "chunk_elements", "n", "max_n"):
            low = {"n_resamples": 0, "chunk_elements": 1, "n": 2, "max_n": 2}[name]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise StatsInputError(f"`{name}` must be an integer >= {low}; got {value!r}")
            out[name] = int(value)
        elif name == "role":
            if value not in ("target", "guard"):
                raise StatsInputError(f"`role` must be 'target' or 'guard'; got {value!r}")
            out[name] = value
        elif name == "rng":
            try:
                out[name] = np.random.default_rng(value)
            except (TypeError, ValueError):
                raise StatsInputError(f"`rng` must be None, an int seed or a numpy Generator; got {value!r}") from None
        else:  # pragma: no cover - programming error
            raise TypeError(f"_iv: unknown parameter {name}")
    return out


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _as_1d(name: str, x: Any, *, allow_nan: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise StatsInputError(f"`{name}` must be a 1-D sequence of numbers") from None
    if arr.ndim != 1:
        raise StatsInputError(f"`{name}` must be 1-D; got shape {arr.shape}")
    bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
    if bad.any():
        raise StatsInputError(f"`{name}` must be finite; element {int(np.argmax(bad))} is {arr[bad][0]}")
    return arr


def _as_clusters(clusters: Any, n: int) -> np.ndarray | None:
    if clusters is None:
        return None
    labels = np.asarray([str(c) for c in clusters], dtype=object)
    if labels.shape != (n,):
        raise StatsInputError(f"`clusters` must have one label per row ({n}); got {labels.shape[0]}")
    return labels


def _warn(message: str) -> None:
    warnings.warn(message, DegenerateDataWarning, stacklevel=3)


def _nan_to_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- pairing

@dataclass(frozen=True)
class PairedRows:
    """Rows present on both sides, with per-row trial means (row order: sorted ids).

    ``baseline_only`` / ``candidate_only`` list row ids scored on one side only; they are
    excluded from every statistic. ``missing_fraction`` is their share of all row ids.
    """

    ids: list[str]
    baseline: np.ndarray
    candidate: np.ndarray
    baseline_trials: np.ndarray
    candidate_trials: np.ndarray
    baseline_only: list[str]
    candidate_only: list[str]
    binary: bool
    clusters: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def differences(self) -> np.ndarray:
        return self.candidate - self.baseline

    @property
    def missing_fraction(self) -> float:
        total = self.n + len(self.baseline_only) + len(self.candidate_only)
        return (len(self.baseline_only) + len(self.candidate_only)) / total if total else 0.0

    @property
    def missing_exceeds_limit(self) -> bool:
        return self.missing_fraction > MISSING_LIMIT

    def subset(self, mask: np.ndarray) -> PairedRows:
        """The paired rows where ``mask`` is true (missing lists are kept as they are)."""
        mask = np.asarray(mask, dtype=bool)
        return PairedRows(
            ids=[i for i, keep in zip(self.ids, mask, strict=True) if keep],
            baseline=self.baseline[mask], candidate=self.candidate[mask],
            baseline_trials=self.baseline_trials[mask], candidate_trials=self.candidate_trials[mask],
            baseline_only=self.baseline_only, candidate_only=self.candidate_only, binary=self.binary,
            clusters=None if self.clusters is None else self.clusters[mask],
        )


def _trial_values(side: str, row_id: str, values: Any) -> list[float]:
    if type(values) is list and all(type(v) is float for v in values) and math.isfinite(sum(values)):
        return list(values)  # fast path: a list of plain finite floats (a NaN or infinity makes the sum non-finite)
    if values is None:
        return []
    if _is_number(values) or isinstance(values, bool):
        values = [values]
    elif isinstance(values, str | bytes | Mapping):
        raise StatsInputError(f"`{side}`: row {row_id!r} has a non-numeric score {values!r}")
    else:
        values = list(values)
    if all(type(v) is float for v in values) and math.isfinite(sum(values)):
        return list(values)  # plain finite floats in a tuple, array or other sequence
    out = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            v = float(v)
        if not _is_number(v):
            raise StatsInputError(f"`{side}`: row {row_id!r} has a non-numeric score {v!r}")
        v = float(v)
        if math.isnan(v):
            continue
        if math.isinf(v):
            raise StatsInputError(f"`{side}`: row {row_id!r} has an infinite score")
        out.append(v)
    return out


def pair_rows(baseline: Mapping[str, Any], candidate: Mapping[str, Any], /, *,
              clusters: Mapping[str, Hashable] | None = None) -> PairedRows:
    """Pair two experiments' scores by row id and average each row's trials.

    ``baseline`` and ``candidate`` map a dataset row id to its trial scores (a number or a
    sequence; ``None``/NaN entries are ignored). A row with no score on one side counts as
    missing there. ``clusters`` optionally maps row id -> cluster label.
    """
    sides = {}
    for side, data in (("baseline", baseline), ("candidate", candidate)):
        if not isinstance(data, Mapping):
            raise StatsInputError(f"`{side}` must be a mapping of row id -> trial scores")
        sides[side] = {str(k): vals for k, v in data.items() if (vals := _trial_values(side, str(k), v))}
    base, cand = sides["baseline"], sides["candidate"]
    ids = sorted(base.keys() & cand.keys())
    binary = all(v in (0.0, 1.0) for side in (base, cand) for i in ids for v in side[i])
    cluster_labels = None
    if clusters is not None:
        absent = [i for i in ids if i not in clusters]
        if absent:
            raise StatsInputError(f"`clusters` has no label for row {absent[0]!r} ({len(absent)} rows without one)")
        cluster_labels = np.asarray([str(clusters[i]) for i in ids], dtype=object)
    return PairedRows(
        ids=ids,
        baseline=np.array([sum(base[i]) / len(base[i]) for i in ids], dtype=float),
        candidate=np.array([sum(cand[i]) / len(cand[i]) for i in ids], dtype=float),
        baseline_trials=np.array([len(base[i]) for i in ids], dtype=int),
        candidate_trials=np.array([len(cand[i]) for i in ids], dtype=int),
        baseline_only=sorted(base.keys() - cand.keys()),
        candidate_only=sorted(cand.keys() - base.keys()),
        binary=binary,
        clusters=cluster_labels,
    )


# --------------------------------------------------------------------------- t-test

class ConfidenceInterval(NamedTuple):
    low: float
    high: float

    def as_list(self) -> list[float | None]:
        return [_nan_to_none(self.low), _nan_to_none(self.high)]


@dataclass(frozen=True)
class TTestResult:
    """A one-sample t-test on row differences (``paired_ttest`` is this on ``a - b``).

    ``estimate`` is the mean difference d̄, ``se`` its standard error (cluster-robust when
    ``n_clusters`` is set, with ``df = n_clusters - 1``), ``pvalue`` two-sided against ``null``.
    """

    estimate: float
    se: float
    df: float
    statistic: float
    pvalue: float
    n: int
    null: float = 0.0
    n_clusters: int | None = None
    method: str = "paired t on row means"

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        level = _iv(confidence_level=confidence_level)["confidence_level"]
        if not (math.isfinite(self.se) and math.isfinite(self.df)) or self.se == 0:
            return ConfidenceInterval(math.nan, math.nan)
        half = float(_st.t.ppf((1 + level) / 2, self.df)) * self.se
        return ConfidenceInterval(self.estimate - half, self.estimate + half)


def _se_df(d: np.ndarray, clusters: np.ndarray | None) -> tuple[float, float, int | None]:
    n = d.size
    if clusters is None:
        if n < 2:
            return math.nan, math.nan, None
        return float(np.std(d, ddof=1) / math.sqrt(n)), float(n - 1), None
    _, group = np.unique(clusters, return_inverse=True)
    g = int(group.max()) + 1 if n else 0
    if g < 2:
        return math.nan, math.nan, g
    sums = np.bincount(group, weights=d - d.mean(), minlength=g)
    var = g / (g - 1) * float(np.sum(sums ** 2)) / n ** 2  # CR1 sandwich for the mean
    return math.sqrt(var), float(g - 1), g


def ttest_differences(d: Any, /, *, null: float = 0.0, clusters: Sequence[Hashable] | None = None) -> TTestResult:
    """Two-sided one-sample t-test that the mean of ``d`` equals ``null``.

    With ``clusters`` (one label per element), the standard error is cluster-robust (CR1:
    ``G/(G-1) * sum_g (sum_{i in g} (d_i - d̄))^2 / n^2``) and ``df = G - 1``; this equals
    statsmodels ``OLS(d, 1).fit(cov_type='cluster', use_t=True)``.
    """
    d = _as_1d("d", d)
    null = _iv(null=null)["null"]
    labels = _as_clusters(clusters, d.size)
    n = int(d.size)
    method = "paired t on row means" if labels is None else "paired t on row means, cluster-robust SE"
    if n == 0:
        _warn("no paired rows: the t-test is undefined")
        return TTestResult(math.nan, math.nan, math.nan, math.nan, math.nan, 0, null, None, method)
    estimate = float(d.mean())
    se, df, g = _se_df(d, labels)
    if not math.isfinite(se):
        what = "fewer than 2 rows" if labels is None else f"fewer than 2 clusters ({g})"
        _warn(f"{what}: the t-test is undefined")
        return TTestResult(estimate, math.nan, math.nan, math.nan, math.nan, n, null, g, method)
    if se == 0:
        _warn(f"all {n} row differences are equal ({estimate:g}): the t-test is undefined")
        return TTestResult(estimate, 0.0, df, math.nan, math.nan, n, null, g, method)
    statistic = (estimate - null) / se
    pvalue = float(2 * _st.t.sf(abs(statistic), df))
    return TTestResult(estimate, se, df, float(statistic), min(pvalue, 1.0), n, null, g, method)


def paired_ttest(a: Any, b: Any, /, *, clusters: Sequence[Hashable] | None = None) -> TTestResult:
    """Paired t-test of ``a - b`` (``scipy.stats.ttest_rel(a, b)`` convention)."""
    a, b = _as_1d("a", a), _as_1d("b", b)
    if a.shape != b.shape:
        raise StatsInputError(f"`a` and `b` must have the same length; got {a.size} and {b.size}")
    return ttest_differences(a - b, clusters=clusters)


def _one_sided_p(res: TTestResult, bound: float, *, greater: bool) -> float:
    """p of H0: mean <= bound (greater=True) or mean >= bound, using res's SE and df."""
    if not math.isfinite(res.se) or res.se == 0:
        return math.nan
    t = (res.estimate - bound) / res.se
    return float(_st.t.sf(t, res.df) if greater else _st.t.cdf(t, res.df))


# --------------------------------------------------------------------------- TOST and guards

@dataclass(frozen=True)
class TostResult:
    """Two one-sided tests of H0: |mean| >= margin. ``pvalue`` is the larger of the two."""

    margin: float
    p_lower: float  # H0: mean <= -margin
    p_upper: float  # H0: mean >= +margin
    pvalue: float
    alpha: float
    equivalent: bool


def tost(d: Any, /, *, margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA,
         clusters: Sequence[Hashable] | None = None) -> TostResult:
    """Equivalence of the mean difference to 0 within ±margin (statsmodels ``ttost_paired``)."""
    opts = _iv(margin=margin, alpha=alpha)
    return _tost_from(ttest_differences(d, clusters=clusters), **opts)


def _tost_from(res: TTestResult, *, margin: float, alpha: float) -> TostResult:
    p_lower = _one_sided_p(res, -margin, greater=True)
    p_upper = _one_sided_p(res, margin, greater=False)
    pvalue = max(p_lower, p_upper) if not (math.isnan(p_lower) or math.isnan(p_upper)) else math.nan
    return TostResult(margin, p_lower, p_upper, pvalue, alpha, bool(pvalue < alpha))


@dataclass(frozen=True)
class NonInferiorityResult:
    """Guard check: the lower bound of the two-sided (1-α) CI is above -margin.

    Equivalently a one-sided test of H0: mean <= -margin at level α/2 (``pvalue`` is that
    one-sided p); the reported CI and the decision always agree.
    """

    margin: float
    lower_bound: float
    pvalue: float
    alpha: float
    non_inferior: bool


def noninferiority(d: Any, /, *, margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA,
                   clusters: Sequence[Hashable] | None = None) -> NonInferiorityResult:
    opts = _iv(margin=margin, alpha=alpha)
    return _noninferiority_from(ttest_differences(d, clusters=clusters), **opts)


def _noninferiority_from(res: TTestResult, *, margin: float, alpha: float) -> NonInferiorityResult:
    low = res.confidence_interval(1 - alpha).low
    p = _one_sided_p(res, -margin, greater=True)
    return NonInferiorityResult(margin, low, p, alpha, bool(math.isfinite(low) and low > -margin))


# --------------------------------------------------------------------------- McNemar

@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on per-row majority outcomes of a binary score.

    ``lost``: rows passing on baseline, failing on candidate; ``gained``: the reverse. Rows
    whose trials split evenly have no majority and are counted in ``ties`` (excluded).
    ``pvalue`` is the two-sided exact binomial p of ``gained`` out of ``lost + gained``.
    """

    lost: int
    gained: int
    both_pass: int
    both_fail: int
    ties: int
    pvalue: float
    method: str = "exact McNemar on per-row majority"


def majority(means: Any, /) -> np.ndarray:
    """Per-row majority of binary trials: 1.0, 0.0, or NaN when trials split evenly."""
    m = _as_1d("means", means)
    return np.where(m > 0.5, 1.0, np.where(m < 0.5, 0.0, np.nan))


def mcnemar_exact(baseline: Any, candidate: Any, /) -> McNemarResult:
    """Exact McNemar test on paired binary outcomes (NaN = no majority, excluded)."""
    b = _as_1d("baseline", baseline, allow_nan=True)
    c = _as_1d("candidate", candidate, allow_nan=True)
    if b.shape != c.shape:
        raise StatsInputError(f"`baseline` and `candidate` must have the same length; got {b.size} and {c.size}")
    for name, arr in (("baseline", b), ("candidate", c)):
        ok = np.isnan(arr) | (arr == 0) | (arr == 1)
        if not ok.all():
            raise StatsInputError(f"`{name}` must hold 0/1 outcomes; element {int(np.argmin(ok))} is {arr[~ok][0]}")
    valid = ~(np.isnan(b) | np.isnan(c))
    b, c = b[valid], c[valid]
    lost = int(np.sum((b == 1) & (c == 0)))
    gained = int(np.sum((b == 0) & (c == 1)))
    discordant = lost + gained
    pvalue = _binom_two_sided_half(gained, discordant) if discordant else 1.0
    return McNemarResult(lost, gained, int(np.sum((b == 1) & (c == 1))), int(np.sum((b == 0) & (c == 0))),
                         int((~valid).sum()), pvalue)


@lru_cache(maxsize=4096)
def _binom_two_sided_half(k: int, n: int) -> float:
    """SciPy's exact two-sided binomial p of k successes in n at p = 0.5 (a few (k, n) pairs
    recur across the scores, slices and simulations of one process)."""
    return float(_st.binomtest(k, n, 0.5).pvalue)


# --------------------------------------------------------------------------- bootstrap

@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap CI of the mean row difference (rows, or clusters, resampled)."""

    low: float
    high: float
    se: float
    n_resamples: int
    confidence_level: float
    method: str = "paired percentile bootstrap"

    @property
    def confidence_interval(self) -> ConfidenceInterval:
        return ConfidenceInterval(self.low, self.high)


def bootstrap_means(d: Any, /, *, n_resamples: int = DEFAULT_RESAMPLES, rng: Any = None,
                    clusters: Sequence[Hashable] | None = None,
                    chunk_elements: int = _CHUNK_ELEMENTS) -> np.ndarray:
    """The ``n_resamples`` bootstrap means of ``d``, vectorized in memory-bounded chunks.

    Each chunk draws a (rows x n) index matrix with at most ``chunk_elements`` entries. With
    ``clusters``, whole clusters are resampled and the mean is sum of resampled cluster sums
    over the resampled row count.
    """
    d = _as_1d("d", d)
    opts = _iv(n_resamples=n_resamples, rng=rng, chunk_elements=chunk_elements)
    gen, total = opts["rng"], opts["n_resamples"]
    labels = _as_clusters(clusters, d.size)
    if labels is not None:
        _, group = np.unique(labels, return_inverse=True)
        sums = np.bincount(group, weights=d)
        counts = np.bincount(group).astype(float)
    else:
        sums, counts = d, None
    n = sums.size
    out = np.empty(total, dtype=float)
    if n == 0:
        out.fill(math.nan)
        return out
    step = max(1, opts["chunk_elements"] // n)
    for start in range(0, total, step):
        rows = min(step, total - start)
        idx = gen.integers(0, n, size=(rows, n))
        if counts is None:
            out[start:start + rows] = np.take(sums, idx).sum(axis=1) / n
        else:
            out[start:start + rows] = np.take(sums, idx).sum(axis=1) / np.take(counts, idx).sum(axis=1)
    return out


def paired_bootstrap(d: Any, /, *, n_resamples: int = DEFAULT_RESAMPLES, confidence_level: float = 0.95,
                     rng: Any = None, clusters: Sequence[Hashable] | None = None,
                     chunk_elements: int = _CHUNK_ELEMENTS) -> BootstrapResult:
    """Percentile bootstrap CI for the mean of row differences ``d``."""
    level = _iv(confidence_level=confidence_level)["confidence_level"]
    d = _as_1d("d", d)
    if d.size < 2:
        _warn("fewer than 2 rows: the bootstrap is undefined")
        return BootstrapResult(math.nan, math.nan, math.nan, int(n_resamples), level)
    means = bootstrap_means(d, n_resamples=n_resamples, rng=rng, clusters=clusters, chunk_elements=chunk_elements)
    if means.size == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 0, level)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    se = float(np.std(means, ddof=1)) if means.size > 1 else math.nan
    return BootstrapResult(float(low), float(high), se, int(means.size), level)


# --------------------------------------------------------------------------- multiplicity

def _pvalues_iv(pvalues: Any) -> np.ndarray:
    p = _as_1d("pvalues", pvalues, allow_nan=True)
    if ((p < 0) | (p > 1)).any():
        raise StatsInputError("`pvalues` must lie in [0, 1]")
    return p


def holm(pvalues: Any, /) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries stay NaN and are not in the family)."""
    p = _pvalues_iv(pvalues)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m:
        vals = p[ok]
        order = np.argsort(vals, kind="stable")
        adj = np.maximum.accumulate((m - np.arange(m)) * vals[order])
        res = np.empty(m)
        res[order] = np.minimum(adj, 1.0)
        out[ok] = res
    return out


def benjamini_hochberg(pvalues: Any, /) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN entries are left out."""
    p = _pvalues_iv(pvalues)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m:
        vals = p[ok]
        order = np.argsort(vals, kind="stable")
        ranked = vals[order] * m / np.arange(1, m + 1)
        adj = np.minimum.accumulate(ranked[::-1])[::-1]
        res = np.empty(m)
        res[order] = np.minimum(adj, 1.0)
        out[ok] = res
    return out


# --------------------------------------------------------------------------- power

def paired_power(effect: float, sd: float, n: int, /, *, alpha: float = DEFAULT_ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` rows for a true mean difference
    ``effect`` when row differences have standard deviation ``sd`` (noncentral t, both tails;
    statsmodels ``TTestPower``)."""
    opts = _iv(effect=effect, sd=sd, n=n, alpha=alpha)
    if opts["sd"] == 0:
        return 1.0 if opts["effect"] != 0 else opts["alpha"]
    return float(_power(abs(opts["effect"]) / opts["sd"], np.asarray(float(opts["n"])), opts["alpha"]))


def bound_power(distance: float, sd: float, n: int, /, *, alpha: float = DEFAULT_ALPHA) -> float:
    """Power that the two-sided (1-α) t-interval's bound clears a value ``distance`` away from
    the true mean: the one-sided t-test at α/2 (statsmodels ``TTestPower(alternative='larger')``
    at ``alpha/2``). This is the power of the bound every verdict uses (improved: lower bound >
    min_effect; non-inferior: lower bound > -margin; regressed: upper bound < 0)."""
    opts = _iv(effect=distance, sd=sd, n=n, alpha=alpha)
    if opts["sd"] == 0:
        return 1.0 if opts["effect"] > 0 else 0.0
    return float(_power(opts["effect"] / opts["sd"], np.asarray(float(opts["n"])), opts["alpha"], tails=1))


def _power(es: float, n: np.ndarray, alpha: float, tails: int = 2) -> np.ndarray:
    df = n - 1
    nc = es * np.sqrt(n)
    # two tails at alpha, or the one bound of a (1-alpha) CI
    crit = _t_isf(alpha / 2, float(df)) if np.ndim(df) == 0 else _st.t.isf(alpha / 2, df)
    if tails == 1:
        return _st.nct.sf(crit, df, nc)
    return _st.nct.sf(crit, df, nc) + _st.nct.cdf(-crit, df, nc)


@lru_cache(maxsize=64)
def _z_sum(alpha: float, power: float) -> Any:
    """z_(α/2) + z_power, the normal-approximation start of every required-n search."""
    return _st.norm.isf(alpha / 2) + _st.norm.ppf(power)


@lru_cache(maxsize=1024)
def _t_isf(q: float, df: float) -> Any:
    """The t quantile a power curve keeps asking for at one n (root finders call it ~20 times)."""
    return _st.t.isf(q, df)


def required_n(effect: float, sd: float, /, *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
               max_n: int = 10_000_000) -> int | None:
    """Smallest number of rows giving at least ``power`` to detect ``effect`` (two-sided paired
    t at ``alpha``, differences with SD ``sd``). ``None`` when no n up to ``max_n`` does
    (effect 0)."""
    opts = _iv(effect=effect, sd=sd, alpha=alpha, power=power, max_n=max_n)
    return _solve_n(abs(opts["effect"]), opts["sd"], opts["alpha"], opts["power"], opts["max_n"], tails=2)


def bound_required_n(distance: float, sd: float, /, *, alpha: float = DEFAULT_ALPHA,
                     power: float = DEFAULT_POWER, max_n: int = 10_000_000) -> int | None:
    """Smallest number of rows for which :func:`bound_power` reaches ``power``; None when the
    true mean is not beyond the bound (``distance <= 0``) or no n up to ``max_n`` suffices."""
    opts = _iv(effect=distance, sd=sd, alpha=alpha, power=power, max_n=max_n)
    if opts["effect"] <= 0:
        return None
    return _solve_n(opts["effect"], opts["sd"], opts["alpha"], opts["power"], opts["max_n"], tails=1)


def _solve_n(effect: float, sd: float, alpha: float, target: float, hi_cap: int, *, tails: int) -> int | None:
    es = effect / sd if sd > 0 else (math.inf if effect else 0.0)
    if es == 0:
        return None
    if math.isinf(es):
        return 2

    def pw(n: Any) -> Any:
        return _power(es, np.asarray(n, dtype=float), alpha, tails)

    z = _z_sum(alpha, target)
    if pw(float(hi_cap)) < target:
        return None
    guess = min(hi_cap, max(2, int(min((z / es) ** 2, hi_cap))))
    window = np.arange(guess, min(guess + 64, hi_cap) + 1, dtype=float)  # t needs a few rows more than z
    hits = np.flatnonzero(pw(window) >= target)
    if hits.size and hits[0] > 0:
        return int(window[hits[0]])
    lo, hi = 2, max(3, guess)
    while pw(float(hi)) < target:
        lo, hi = hi, min(hi * 2, hi_cap)
    while lo < hi:  # smallest n in [lo, hi] with power >= target (power rises with n)
        mid = (lo + hi) // 2
        if pw(float(mid)) >= target:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)


@dataclass(frozen=True)
class PowerResult:
    """Rows needed for ``power`` at the observed SD of row differences for the verdict's CI
    bound (``side`` 'lower' or 'upper') to clear ``bound``; ``effect`` is the observed distance
    from the mean to that bound. ``power_at_n`` and ``required_n`` are for that same bound."""

    effect: float
    sd: float
    n: int
    power_at_n: float
    required_n: int | None
    power: float
    alpha: float
    note: str
    bound: float | None = None
    side: str | None = None


# --------------------------------------------------------------------------- regressions

@dataclass(frozen=True)
class RowRegression:
    id: str
    baseline: float
    candidate: float
    drop: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "baseline": self.baseline, "candidate": self.candidate, "drop": self.drop}


def row_regressions(paired: PairedRows, /, *, threshold: float = DEFAULT_THRESHOLD) -> list[RowRegression]:
    """Rows whose trial-mean score dropped by more than ``threshold``, largest drop first
    (ties by row id). A row that merely scores low on both sides is not a regression."""
    threshold = _iv(threshold=threshold)["threshold"]
    drops = paired.baseline - paired.candidate
    hits = np.flatnonzero(drops > threshold + 1e-12)
    rows = [RowRegression(paired.ids[i], float(paired.baseline[i]), float(paired.candidate[i]), float(drops[i]))
            for i in hits]
    return sorted(rows, key=lambda r: (-r.drop, r.id))
