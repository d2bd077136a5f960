"""Figures reported beside a verdict and never voting in it (DESIGN.md §8, seed 004).

All take the per-row differences ``d = candidate - baseline`` (row means over trials) or the two
sets of row means, like :mod:`bt_flywheel.verify.stats`:

- :func:`mcnemar_odds_ratio` - conditional odds ratio gained/lost of a binary score with its exact
  CI (Clopper-Pearson on gained out of gained + lost, mapped through p/(1-p));
- :func:`wilcoxon_signed_rank` - SciPy's signed-rank test with zero differences handled by
  Pratt's method (zeros are ranked, then dropped);
- :func:`hodges_lehmann` - median of the Walsh averages with Tukey's distribution-free CI (the
  inversion of the signed-rank test; exact critical value up to 50 rows, normal beyond);
- :func:`cohens_dz` - mean difference over its SD, CI by inverting the noncentral t;
- :func:`cliffs_delta` - P(candidate row > baseline row) - P(<) over all pairs of row means
  (ordinal dominance of the two score distributions; the pairing is not used);
- :func:`paired_permutation` - sign-flip permutation test of the mean difference, exact while
  2^(non-zero rows) <= ``exact_max`` sign patterns, seeded Monte-Carlo beyond;
- :func:`minimum_detectable_effect` - the smallest true effect the verdict's CI bound would clear
  with 80% power at the observed n and SD;
- :func:`dersimonian_laird` - random-effects pooling of one change's effect measured several
  times (slices, seeds, runs): pooled effect, CI, tau^2, I^2, Q.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

from bt_flywheel.verify.stats import DEFAULT_ALPHA, DEFAULT_POWER, StatsInputError, _as_1d, _iv, bound_power

EXACT_PERMUTATION_MAX = 1 << 16   # sign patterns enumerated exactly (16 non-zero rows)
PERMUTATION_RESAMPLES = 9_999
HL_EXACT_MAX_N = 50
_BATCH_VALUES = 1 << 20


def _f(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# ------------------------------------------------------------------------------ McNemar OR

@dataclass(frozen=True)
class OddsRatio:
    estimate: float
    low: float
    high: float


def mcnemar_odds_ratio(gained: int, lost: int, /, *, alpha: float = DEFAULT_ALPHA) -> OddsRatio:
    """Conditional (paired) odds ratio ``gained / lost`` and its exact CI: the Clopper-Pearson
    interval of p = gained / (gained + lost) mapped through p / (1 - p)."""
    alpha = _iv(alpha=alpha)["alpha"]
    n = gained + lost
    if n == 0:
        return OddsRatio(math.nan, math.nan, math.nan)
    ci = _clopper_pearson(gained, n, alpha)

    def odds(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p)

    estimate = math.inf if lost == 0 else gained / lost
    return OddsRatio(estimate, odds(ci.low), odds(ci.high))


@lru_cache(maxsize=4096)
def _clopper_pearson(k: int, n: int, alpha: float) -> Any:
    """SciPy's exact CI of k/n (each comparison's to_dict asks again for the same counts)."""
    return _st.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")


# ------------------------------------------------------------------------------ Wilcoxon

@dataclass(frozen=True)
class WilcoxonResult:
    statistic: float
    pvalue: float
    n_nonzero: int
    zero_method: str = "pratt"
    method: str = "Wilcoxon signed-rank (SciPy), zero differences ranked then dropped (Pratt)"


def wilcoxon_signed_rank(d: Any, /) -> WilcoxonResult | None:
    """``scipy.stats.wilcoxon(d, zero_method='pratt')``; None when every difference is 0 or n < 2.

    Up to 13 rows with ties or zeros SciPy runs an exact sign-flip permutation test through
    ``permutation_test`` with a statistic it ranks again for each of the 2**n patterns (about 2 s
    at n = 13, for every score and slice of a compare); the same test is computed here over all
    patterns at once, with SciPy's tolerance for ties in the null distribution."""
    d = _as_1d("d", d)
    nonzero = int(np.count_nonzero(d))
    if d.size < 2 or nonzero == 0:
        return None
    ranks = _st.rankdata(np.abs(d))
    tied = np.unique(ranks).size < ranks.size
    if d.size <= 13 and (tied or nonzero < d.size):
        r_plus, r_minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
        null = (np.where(_sign_patterns(d.size), -d, d) > 0) @ ranks   # r_plus under every sign flip
        return WilcoxonResult(min(r_plus, r_minus), _two_sided_p(null, r_plus), nonzero)
    res = _st.wilcoxon(d, zero_method="pratt")
    return WilcoxonResult(float(res.statistic), float(res.pvalue), nonzero)


# ------------------------------------------------------------------------------ Hodges-Lehmann

@dataclass(frozen=True)
class HodgesLehmann:
    estimate: float
    low: float
    high: float
    method: str


_WALSH_MATERIALIZE = 4_000_000  # Walsh averages held in memory at once (32 MB); beyond, bisection


def _walsh_kth(ds: np.ndarray, ks: list[int]) -> list[float]:
    """The k-th smallest (1-based) Walsh averages (d_i + d_j)/2, i <= j, of sorted ``ds``."""
    n = ds.size
    if n * (n + 1) // 2 <= _WALSH_MATERIALIZE:
        i, j = np.triu_indices(n)
        walsh = (ds[i] + ds[j]) / 2
        picked = np.partition(walsh, [k - 1 for k in ks])
        return [float(picked[k - 1]) for k in ks]
    return [_walsh_kth_bisect(ds, k) for k in ks]


def _walsh_kth_bisect(ds: np.ndarray, k: int) -> float:
    """Bisection on the value with an O(n log n) pair count, for rows too many to hold every
    Walsh average; exact to ~1e-12 of the data's scale."""
    n = ds.size
    idx = np.arange(n)
    tol = 1e-12 * max(1.0, float(np.abs(ds).max()))

    def count_le(t: float) -> int:
        j = np.searchsorted(ds, 2 * t - ds + tol, side="right")
        return int(np.maximum(j - idx, 0).sum())

    lo, hi = float(ds[0]), float(ds[-1])
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if count_le(mid) >= k:
            hi = mid
        else:
            lo = mid
    return hi


def _signed_rank_critical(n: int, alpha: float) -> tuple[int, str]:
    """C = the largest c with P(T+ <= c) <= alpha/2 under H0 (exact for n <= 50, else normal)."""
    m = n * (n + 1) // 2
    if n <= HL_EXACT_MAX_N:
        counts = np.zeros(m + 1)
        counts[0] = 1.0
        for r in range(1, n + 1):  # number of subsets of {1..n} with each rank sum
            counts[r:] = counts[r:] + counts[:-r].copy()
        cdf = np.cumsum(counts) / 2.0 ** n
        below = np.flatnonzero(cdf <= alpha / 2)
        return (int(below[-1]) if below.size else -1), "exact signed-rank critical value"
    z = _st.norm.isf(alpha / 2)
    c = math.floor(m / 2 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24))
    return c, "normal approximation to the signed-rank critical value"


def hodges_lehmann(d: Any, /, *, alpha: float = DEFAULT_ALPHA) -> HodgesLehmann | None:
    """Hodges-Lehmann shift (median Walsh average) with the distribution-free (1-α) CI
    [W_(C+1), W_(M-C)] that inverts the signed-rank test (Tukey); None below 2 rows."""
    alpha = _iv(alpha=alpha)["alpha"]
    ds = np.sort(_as_1d("d", d))
    n = ds.size
    if n < 2:
        return None
    m = n * (n + 1) // 2
    c, how = _signed_rank_critical(n, alpha)
    middle = [(m + 1) // 2] if m % 2 else [m // 2, m // 2 + 1]
    picked = _walsh_kth(ds, middle + ([c + 1, m - c] if c >= 0 else []))
    estimate = float(np.mean(picked[:len(middle)]))
    low, high = (picked[-2], picked[-1]) if c >= 0 else (-math.inf, math.inf)
    return HodgesLehmann(estimate, low, high, f"median of Walsh averages; CI from the {how}")


# ------------------------------------------------------------------------------ effect sizes

@dataclass(frozen=True)
class CohensDz:
    estimate: float
    low: float
    high: float
    method: str = "mean/SD of row differences; CI inverts the noncentral t"


def _nct_cdf(t: float, df: float, nc: float) -> float:
    """P(T <= t) for the noncentral t; SciPy's cdf gives NaN far in a tail, where 1 - sf is exact."""
    with warnings.catch_warnings():  # SciPy warns (and may give NaN) where its series does not converge
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(_st.nct.cdf(t, df, nc))
        if math.isnan(value):
            value = 1.0 - float(_st.nct.sf(t, df, nc))
    if math.isnan(value):
        value = 0.0 if t < nc else 1.0
    return value


_NCT_MAX_T = 200.0  # beyond |t| = 200 SciPy's noncentral t is slow and no more exact than the normal


def cohens_dz(d: Any, /, *, alpha: float = DEFAULT_ALPHA) -> CohensDz | None:
    """Cohen's d_z = mean(d)/sd(d) with the exact CI from the noncentral t distribution of
    t = d_z·sqrt(n) (df n-1); None when n < 2 or the SD is 0. Past |t| = 200 (differences
    nearly constant, e.g. timestamps' rounding) the CI is the normal approximation
    d_z ± z·sqrt(1/n + d_z²/(2(n-1))), which the noncentral t approaches there."""
    alpha = _iv(alpha=alpha)["alpha"]
    d = _as_1d("d", d)
    n = d.size
    if n < 2:
        return None
    sd = float(np.std(d, ddof=1))
    if sd <= 1e-12 * max(1.0, float(np.abs(d).max())):  # constant differences (up to rounding)
        return None
    dz = float(d.mean()) / sd
    t, df, root_n = dz * math.sqrt(n), n - 1, math.sqrt(n)
    spread = math.sqrt(1 + t * t / (2 * df))  # the noncentral t's SD, roughly: scales the bracket
    if abs(t) > _NCT_MAX_T:
        half = float(_st.norm.isf(alpha / 2)) * spread / root_n
        return CohensDz(dz, dz - half, dz + half, "mean/SD of row differences; CI by the normal approximation "
                        "to the noncentral t (|t| > 200)")

    cdf: dict[float, float] = {}  # the bracket search and brentq ask for the same points again

    def nc_for(target: float) -> float:  # noncentrality whose P(T <= t) equals target
        def f(nc: float) -> float:
            if nc not in cdf:
                cdf[nc] = _nct_cdf(t, df, nc)
            return cdf[nc] - target
        step = 10.0 * spread
        lo, hi = t - step, t + step
        for _ in range(20):  # P(T <= t) falls as nc rises: widen until the root is bracketed
            if f(lo) >= 0:
                break
            lo -= step
        for _ in range(20):
            if f(hi) <= 0:
                break
            hi += step
        if not (f(lo) >= 0 >= f(hi)):  # the noncentral t is not computable this far out
            return math.nan
        return float(_opt.brentq(f, lo, hi, xtol=1e-12))

    return CohensDz(dz, nc_for(1 - alpha / 2) / root_n, nc_for(alpha / 2) / root_n)


def cliffs_delta(candidate: Any, baseline: Any, /) -> float | None:
    """Cliff's δ = (#{c_i > b_j} - #{c_i < b_j}) / (n_c·n_b) over all pairs of row means."""
    c = np.sort(_as_1d("candidate", candidate))
    b = np.sort(_as_1d("baseline", baseline))
    if c.size == 0 or b.size == 0:
        return None
    greater = np.searchsorted(b, c, side="left").sum()          # b_j < c_i
    less = (b.size - np.searchsorted(b, c, side="right")).sum()  # b_j > c_i
    return float((greater - less) / (c.size * b.size))


# ------------------------------------------------------------------------------ permutation

@dataclass(frozen=True)
class PermutationResult:
    pvalue: float
    exact: bool
    n_resamples: int
    method: str


def permutation_batch(n: int) -> int:
    """Sign patterns evaluated at once: about a million values in memory whatever the rows."""
    return max(1, _BATCH_VALUES // max(n, 1))


def paired_permutation(d: Any, /, *, rng: Any = 0, exact_max: int = EXACT_PERMUTATION_MAX,
                       n_resamples: int = PERMUTATION_RESAMPLES) -> PermutationResult | None:
    """Two-sided sign-flip permutation test of mean(d) = 0: what ``scipy.stats.permutation_test``
    gives with ``permutation_type='samples'`` on one sample, ``batch=permutation_batch(n)`` and
    the same ``rng`` (the same sign patterns, counts and tolerance; tests check it to 1e-6), done
    natively because SciPy builds every sign pattern in a Python loop. Zero differences are left
    out (flipping 0 changes nothing), so the test is exact while 2^(non-zero rows) <=
    ``exact_max`` and a seeded Monte-Carlo test with ``n_resamples`` sign patterns beyond."""
    opts = _iv(rng=rng)
    d = _as_1d("d", d)
    nz = d[d != 0]
    if d.size < 2:
        return None
    if nz.size < 2:  # both signs of one changed row give the same |mean|
        return PermutationResult(1.0, True, 2 ** nz.size, "sign-flip permutation (at most one row changed)")
    exact = 2 ** nz.size <= exact_max
    if exact:
        null = np.mean(np.where(_sign_patterns(nz.size), -nz, nz), axis=-1)
    else:
        null = _random_sign_flips(nz, n_resamples, opts["rng"])
    how = (f"exact sign-flip permutation over {2 ** nz.size} sign patterns" if exact else
           f"Monte-Carlo sign-flip permutation, {n_resamples} seeded resamples")
    return PermutationResult(_two_sided_p(null, float(np.mean(nz)), adjustment=0 if exact else 1), exact,
                             int(2 ** nz.size if exact else n_resamples), how)


@lru_cache(maxsize=32)
def _sign_patterns(n: int) -> np.ndarray:
    """Every one of the 2^n sign patterns of n rows: True where the row's sign is flipped (built
    once per n: 1 MB at the exact limit of 16 rows, a third of an exact test's cost)."""
    flips = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) == 1
    flips.flags.writeable = False
    return flips


def _two_sided_p(null: np.ndarray, observed: float, *, adjustment: int = 0) -> float:
    """``scipy.stats.permutation_test``'s two-sided p: twice the smaller tail, with its tolerance
    (100 eps of the observed value) for ties, and +1 on both sides for a Monte-Carlo null."""
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = (np.count_nonzero(null <= observed + gamma) + adjustment) / (null.size + adjustment)
    greater = (np.count_nonzero(null >= observed - gamma) + adjustment) / (null.size + adjustment)
    return float(min(1.0, 2 * min(less, greater)))


def _random_sign_flips(x: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The mean under ``n_resamples`` random sign patterns, drawn as SciPy draws them: each row's
    pair (x, -x) shuffled with ``rng.permuted``, a batch at a time (the last batch drawn whole)."""
    batch = min(permutation_batch(x.size), n_resamples)
    batches = -(-n_resamples // batch)
    flipped = _pcg64_pair_shuffles(rng, batches * batch * x.size)
    if flipped is None:  # another bit generator: let NumPy shuffle every pair
        pairs = np.tile(np.arange(2), (batch, x.size, 1))
        flipped = np.concatenate([rng.permuted(pairs, axis=-1)[:, :, 0] == 1 for _ in range(batches)])
    else:
        flipped = flipped.reshape(batches * batch, x.size)
    out = []
    for k in range(0, n_resamples, batch):
        out.append(np.mean(np.where(flipped[k:k + min(batch, n_resamples - k)], -x, x), axis=-1))
    return np.concatenate(out)


def _pcg64_pair_shuffles(rng: np.random.Generator, count: int) -> np.ndarray | None:
    """Whether each of ``count`` successive two-element shuffles by ``rng.permuted`` swaps its pair,
    without shuffling them one by one (4x faster at 40 rows); None unless the bit generator is PCG64.

    NumPy shuffles a pair with one Fisher-Yates step, j = (next 32-bit draw) & 1, and swaps
    when j == 0; PCG64 serves 32-bit draws as the low then the high half of each 64-bit output,
    keeping the unused half in its state (``has_uint32``/``uinteger``). The same bits are read
    here from ``random_raw`` and the state is left as the shuffles leave it.
    (test_reported.py checks both against ``rng.permuted``.)"""
    bits = rng.bit_generator
    state = bits.state
    if state.get("bit_generator") != "PCG64" or count <= 0:
        return None
    first = [state["uinteger"] & 1] if state["has_uint32"] else []
    fresh = count - len(first)
    raw = bits.random_raw((fresh + 1) // 2).astype("<u8", copy=False)
    low_bits = raw.view(np.uint8)[::4] & 1  # the lowest byte of the low, then the high 32-bit half
    after = bits.state
    if raw.size:
        after["has_uint32"], after["uinteger"] = fresh % 2, int(raw[-1] >> np.uint64(32))
    else:
        after["has_uint32"] = 0
    bits.state = after
    return np.concatenate([np.asarray(first, dtype=np.uint8), low_bits[:fresh]]) == 0


# ------------------------------------------------------------------------------ MDE

def minimum_detectable_effect(sd: float, n: int, /, *, alpha: float = DEFAULT_ALPHA,
                              power: float = DEFAULT_POWER) -> float | None:
    """The smallest distance between the true mean and a verdict's bound that the (1-α) CI's
    bound clears with ``power`` at ``n`` rows and row-difference SD ``sd`` (the inverse of
    :func:`bt_flywheel.verify.stats.bound_power`); None when n < 2."""
    opts = _iv(sd=sd, alpha=alpha, power=power)
    if n < 2 or not math.isfinite(opts["sd"]):
        return None
    if opts["sd"] == 0:
        return 0.0
    es = _opt.brentq(lambda e: bound_power(e * opts["sd"], opts["sd"], n, alpha=opts["alpha"]) - opts["power"],
                     1e-9, 1e3, xtol=1e-14)
    return float(es * opts["sd"])


# ------------------------------------------------------------------------------ pooling

@dataclass(frozen=True)
class PooledEffect:
    k: int
    effect: float
    se: float
    low: float
    high: float
    tau2: float
    i2: float
    q: float
    q_pvalue: float
    method: str = "DerSimonian-Laird random effects (normal CI)"


def dersimonian_laird(effects: Any, variances: Any, /, *, alpha: float = DEFAULT_ALPHA) -> PooledEffect:
    """Random-effects pooling (DerSimonian-Laird): tau^2 = max(0, (Q - (k-1)) / C) with
    C = Σw - Σw²/Σw, weights 1/(v_i + tau^2), a normal (1-α) CI, I² = max(0, (Q - (k-1))/Q).
    Matches ``statsmodels.stats.meta_analysis.combine_effects(method_re='dl')``."""
    alpha = _iv(alpha=alpha)["alpha"]
    y = _as_1d("effects", effects)
    v = _as_1d("variances", variances)
    if y.shape != v.shape:
        raise StatsInputError(f"`effects` and `variances` must have the same length; got {y.size} and {v.size}")
    if y.size == 0:
        raise StatsInputError("`effects`: nothing to pool")
    if (v <= 0).any():
        raise StatsInputError("`variances` must be > 0 (an estimate with no variance cannot be weighted)")
    k = y.size
    w = 1 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - fixed) ** 2))
    c = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    wr = 1 / (v + tau2)
    mean = float(np.sum(wr * y) / np.sum(wr))
    se = float(math.sqrt(1 / np.sum(wr)))
    z = float(_st.norm.isf(alpha / 2))
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    q_p = float(_st.chi2.sf(q, k - 1)) if k > 1 else math.nan
    return PooledEffect(k, mean, se, mean - z * se, mean + z * se, tau2, i2, q, q_p)


# ------------------------------------------------------------------------------ all of them

def _child(rng: Any) -> Any:
    """A stream of its own for the permutation test (seeds and None pass through)."""
    if isinstance(rng, np.random.Generator):
        try:
            return rng.spawn(1)[0]
        except (AttributeError, TypeError):  # a Generator built without a SeedSequence
            return np.random.default_rng(rng.bit_generator.random_raw())
    return rng


def reported_figures(baseline: np.ndarray, candidate: np.ndarray, *, alpha: float, rng: Any = 0) -> dict[str, Any]:
    """The `reported` object of one score or slice in the comparison JSON (row means of both
    sides, paired by position). A Generator ``rng`` is not drawn from: the permutation test
    gets a child stream spawned from it, so the bootstrap's draws stay what they were."""
    d = candidate - baseline
    wil = wilcoxon_signed_rank(d)
    hl = hodges_lehmann(d, alpha=alpha)
    dz = cohens_dz(d, alpha=alpha)
    delta = cliffs_delta(candidate, baseline)
    perm = paired_permutation(d, rng=_child(rng))
    sd = float(np.std(d, ddof=1)) if d.size >= 2 else math.nan
    mde = minimum_detectable_effect(sd, int(d.size), alpha=alpha) if d.size >= 2 else None
    return {
        "wilcoxon": None if wil is None else {"statistic": _f(wil.statistic), "p": _f(wil.pvalue),
                                              "n_nonzero": wil.n_nonzero, "zero_method": wil.zero_method,
                                              "method": wil.method},
        "hodges_lehmann": None if hl is None else {"estimate": _f(hl.estimate), "ci": [_f(hl.low), _f(hl.high)],
                                                   "method": hl.method},
        "cohens_dz": None if dz is None else {"estimate": _f(dz.estimate), "ci": [_f(dz.low), _f(dz.high)],
                                              "method": dz.method},
        "cliffs_delta": None if delta is None else {"estimate": delta, "method": (
            "P(candidate row > baseline row) - P(<) over all pairs of row means")},
        "permutation": None if perm is None else {"p": _f(perm.pvalue), "exact": perm.exact,
                                                  "n_resamples": perm.n_resamples, "method": perm.method},
        "mde": None if mde is None else {"effect": _f(mde), "n": int(d.size), "sd": _f(sd),
                                         "power": DEFAULT_POWER, "method": (
                                             "smallest true distance from a verdict's bound that its CI bound "
                                             "clears with 80% power at this n and SD")},
    }
