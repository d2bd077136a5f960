"""The figures reported beside a verdict (verify/reported.py) equal SciPy / statsmodels on the
same data to 1e-6; Cliff's δ is checked against a hand-worked published example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fakes.comparisons import sliced_experiments
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

from bt_flywheel.verify import reported as R
from bt_flywheel.verify import stats as S
from bt_flywheel.verify.comparison_model import ComparisonDoc

TOL = 1e-6


def _diffs(n: int, seed: int, *, ties: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:  # row means of 3 binary trials on each side: few distinct values, many zeros
        b = (rng.random((n, 3)) < 0.6).mean(axis=1)
        c = (rng.random((n, 3)) < 0.7).mean(axis=1)
        return c - b
    return rng.normal(0.05, 0.2, n)


@pytest.mark.parametrize(("gained", "lost"), [(12, 2), (3, 9), (7, 0), (0, 5), (25, 25)])
def test_mcnemar_odds_ratio_and_exact_ci_match_statsmodels(gained, lost):
    table = np.array([[30, lost], [gained, 10]])  # rows baseline pass/fail, columns candidate pass/fail
    b = np.array([1] * 30 + [1] * lost + [0] * gained + [0] * 10, dtype=float)
    c = np.array([1] * 30 + [0] * lost + [1] * gained + [0] * 10, dtype=float)
    ours = S.mcnemar_exact(b, c)
    assert ours.pvalue == pytest.approx(sm_mcnemar(table, exact=True).pvalue, abs=TOL)
    odds = R.mcnemar_odds_ratio(ours.gained, ours.lost)
    low, high = proportion_confint(gained, gained + lost, alpha=0.05, method="beta")
    as_odds = [math.inf if p >= 1 else p / (1 - p) for p in (low, high)]
    assert odds.low == pytest.approx(as_odds[0], abs=TOL) and odds.high == pytest.approx(as_odds[1], abs=TOL)
    assert odds.estimate == (gained / lost if lost else math.inf)


@pytest.mark.parametrize("ties", [False, True])
def test_wilcoxon_is_scipys_with_pratt_zero_handling(ties):
    d = _diffs(60, 1, ties=ties)
    ours = R.wilcoxon_signed_rank(d)
    ref = st.wilcoxon(d, zero_method="pratt")
    assert ours.statistic == pytest.approx(ref.statistic, abs=TOL) and ours.pvalue == pytest.approx(ref.pvalue, abs=TOL)
    assert ours.n_nonzero == int(np.count_nonzero(d)) and ours.zero_method == "pratt"
    assert R.wilcoxon_signed_rank(np.zeros(10)) is None


def test_wilcoxon_on_a_few_rows_with_ties_or_zeros_is_scipys_exact_permutation_p():
    """Up to 13 rows with ties or zeros SciPy enumerates every sign flip; ours must give its p."""
    rng = np.random.default_rng(11)
    checked = 0
    for n in (2, 3, 5, 7, 9, 10):
        for _ in range(3):
            d = rng.choice([-1.0, -0.5, 0.0, 0.0, 0.25, 0.5, 1.0], size=n)
            if not d.any():
                continue
            ours, ref = R.wilcoxon_signed_rank(d), st.wilcoxon(d, zero_method="pratt")
            assert ours.statistic == pytest.approx(ref.statistic, abs=TOL)
            assert ours.pvalue == pytest.approx(ref.pvalue, abs=TOL), d
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("n", [12, 30, 50, 400])
def test_hodges_lehmann_is_the_median_walsh_average_and_inverts_scipys_wilcoxon(n):
    d = _diffs(n, n)
    hl = R.hodges_lehmann(d)
    i, j = np.triu_indices(n)
    walsh = (d[i] + d[j]) / 2
    assert hl.estimate == pytest.approx(float(np.median(walsh)), abs=TOL)
    # the CI is the set of shifts the two-sided signed-rank test does not reject
    method = "exact" if n <= 50 else "approx"
    eps = 1e-9
    for bound, outside in ((hl.low, hl.low - eps), (hl.high, hl.high + eps)):
        inside = bound + (eps if bound == hl.low else -eps)
        assert st.wilcoxon(d - outside, method=method).pvalue < 0.05
        assert st.wilcoxon(d - inside, method=method).pvalue >= 0.05 - (0 if n <= 50 else 2e-3)
    assert hl.low < hl.estimate < hl.high


def test_hodges_lehmann_with_ties_matches_the_definition():
    d = _diffs(300, 3, ties=True)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2)
    hl = R.hodges_lehmann(d)
    assert hl.estimate == pytest.approx(float(np.median(walsh)), abs=TOL)
    c, _ = R._signed_rank_critical(d.size, 0.05)
    assert (hl.low, hl.high) == (pytest.approx(walsh[c]), pytest.approx(walsh[walsh.size - c - 1]))


def test_cohens_dz_and_its_noncentral_t_ci():
    d = _diffs(40, 5)
    dz = R.cohens_dz(d)
    t = st.ttest_1samp(d, 0.0).statistic
    assert dz.estimate == pytest.approx(t / math.sqrt(40), abs=TOL)
    # the bounds are the noncentrality parameters that put the observed t at the 97.5% / 2.5% points
    assert st.nct.cdf(t, 39, dz.low * math.sqrt(40)) == pytest.approx(0.975, abs=TOL)
    assert st.nct.cdf(t, 39, dz.high * math.sqrt(40)) == pytest.approx(0.025, abs=TOL)
    assert R.cohens_dz(np.full(10, 0.3)) is None


@pytest.mark.parametrize("t", [150.0, 199.0, 250.0, 4e6])
def test_cohens_dz_far_out_meets_the_normal_approximation(t):
    """Nearly constant differences (a latency of timestamps ~1.7e9 s apart from their rounding):
    past |t| = 200 the CI is the normal approximation, which the exact CI approaches there."""
    n = 24
    d = 0.05 + np.tile([-1.0, 1.0], n // 2) * 0.05 / (t / math.sqrt(n)) * math.sqrt((n - 1) / n)
    dz = R.cohens_dz(d)
    assert dz.estimate * math.sqrt(n) == pytest.approx(t, rel=1e-6)
    half = st.norm.isf(0.025) * math.sqrt(1 / n + dz.estimate ** 2 / (2 * (n - 1)))
    assert (dz.low, dz.high) == (pytest.approx(dz.estimate - half, rel=0.02), pytest.approx(dz.estimate + half, rel=0.02))
    assert ("normal approximation" in dz.method) == (t > 200)


def test_cliffs_delta_on_the_tortoise_and_hare_example():
    """Wikipedia, "Mann–Whitney U test", section "Illustration of calculation methods": six
    tortoises and six hares finish in the order T H H H H H T T T T T H; counting, each hare beats
    5, 5, 5, 5, 5, 0 tortoises (U_H = 25) and each tortoise beats 6, 1, 1, 1, 1, 1 hares
    (U_T = 11). Cliff's δ (Cliff 1993) of hares over tortoises is (U_H - U_T) / (6·6) = 14/36."""
    order = "THHHHHTTTTTH"
    speed = {k: [12 - i for i, a in enumerate(order) if a == k] for k in "TH"}  # first home is fastest
    assert R.cliffs_delta(speed["H"], speed["T"]) == pytest.approx(14 / 36, abs=1e-12)
    assert R.cliffs_delta(speed["T"], speed["H"]) == pytest.approx(-14 / 36, abs=1e-12)
    rng = np.random.default_rng(9)  # with ties: the dominance definition, pair by pair
    x, y = rng.integers(0, 4, 37) / 3, rng.integers(0, 4, 29) / 3
    assert R.cliffs_delta(x, y) == pytest.approx(np.sign(np.subtract.outer(x, y)).mean(), abs=1e-12)


def _scipy_sign_flip(d, **kw):
    return st.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                               vectorized=True, alternative="two-sided", **kw).pvalue


@pytest.mark.parametrize(("n", "ties"), [(5, False), (16, True), (16, False), (30, True)])
def test_permutation_is_exact_up_to_16_nonzero_rows_and_matches_scipy(n, ties):
    d = _diffs(n, 7, ties=ties)
    if np.count_nonzero(d) > 16:  # keep 16 changed rows (and the zeros): still exact
        d[np.flatnonzero(d)[16:]] = 0.0
    ours = R.paired_permutation(d)
    assert ours.exact and ours.n_resamples == 2 ** np.count_nonzero(d)
    assert ours.pvalue == pytest.approx(_scipy_sign_flip(d[d != 0], n_resamples=1 << 16), abs=TOL)
    if d.size <= 16 and (d == 0).any():  # with the zeros kept in, SciPy enumerates 2^n patterns: the same p
        assert ours.pvalue == pytest.approx(_scipy_sign_flip(d, n_resamples=np.inf), abs=TOL)


@pytest.mark.parametrize(("n", "ties", "seed"), [(40, False, 123), (40, True, 5), (300, False, 9), (300, True, 11)])
def test_permutation_beyond_the_exact_size_is_seeded_monte_carlo_and_matches_scipy(n, ties, seed):
    """300 rows take three batches of sign patterns (the last one cut short), as in SciPy."""
    d = _diffs(n, seed, ties=ties)
    nz = d[d != 0]
    ours = R.paired_permutation(d, rng=seed)
    assert not ours.exact and ours.n_resamples == R.PERMUTATION_RESAMPLES
    ref = _scipy_sign_flip(nz, n_resamples=R.PERMUTATION_RESAMPLES, batch=R.permutation_batch(nz.size),
                           rng=np.random.default_rng(seed))
    assert ours.pvalue == pytest.approx(ref, abs=TOL)
    assert R.paired_permutation(d, rng=seed).pvalue == ours.pvalue  # seeded: reproducible
    assert abs(ours.pvalue - st.ttest_1samp(d, 0).pvalue) < 0.03


def _sign_flip_means_by_permuted(x, n_resamples, rng):
    """The sign-flip means as SciPy's permutation_test draws them: ``rng.permuted`` on every
    row's pair, a batch at a time (what _random_sign_flips did before it read the bits itself)."""
    batch = min(R.permutation_batch(x.size), n_resamples)
    pairs = np.tile(np.arange(2), (batch, x.size, 1))
    out = []
    for k in range(0, n_resamples, batch):
        flipped = rng.permuted(pairs, axis=-1)[:min(batch, n_resamples - k), :, 0] == 1
        out.append(np.mean(np.where(flipped, -x, x), axis=-1))
    return np.concatenate(out)


def _plain(state):  # a bit generator's state with its arrays (MT19937's key) as lists
    return {k: _plain(v) if isinstance(v, dict) else np.asarray(v).tolist() for k, v in state.items()}


FLIP_CASES = [(np.random.PCG64, n, r, left) for n, r in [(17, 9_999), (300, 9_999), (2, 5), (3, 1), (7, 8)]
              for left in (False, True)] + [(np.random.MT19937, 40, 9_999, True), (np.random.Philox, 7, 8, False)]


@pytest.mark.parametrize(("bit_generator", "n", "n_resamples", "leftover"), FLIP_CASES)
def test_random_sign_flips_are_numpys_pair_shuffles_bit_for_bit(bit_generator, n, n_resamples, leftover):
    """The Monte-Carlo null reads PCG64's bits directly instead of shuffling each pair with
    ``rng.permuted``: the same means to the last bit, and the generator left in the same state
    (with or without half a 64-bit draw pending; one batch, several, the last cut short; an odd
    and an even number of draws); other bit generators still shuffle."""
    x = np.random.default_rng(n).normal(0.05, 0.2, n)
    ours, ref = (np.random.Generator(bit_generator(n_resamples + n)) for _ in range(2))
    if leftover:  # a 32-bit draw leaves the other half of a 64-bit output in the state
        assert ours.integers(0, 1 << 31, dtype=np.uint32) == ref.integers(0, 1 << 31, dtype=np.uint32)
    fast = R._random_sign_flips(x, n_resamples, ours)
    slow = _sign_flip_means_by_permuted(x, n_resamples, ref)
    assert fast.shape == (n_resamples,) and np.array_equal(fast, slow)
    assert _plain(ours.bit_generator.state) == _plain(ref.bit_generator.state)
    assert ours.integers(0, 1 << 31, dtype=np.uint32, size=3).tolist() == ref.integers(
        0, 1 << 31, dtype=np.uint32, size=3).tolist()


@pytest.mark.parametrize(("sd", "n"), [(0.2, 30), (0.45, 200), (1.0, 12)])
def test_minimum_detectable_effect_matches_statsmodels(sd, n):
    mde = R.minimum_detectable_effect(sd, n)
    # statsmodels' power of the one-sided test at alpha/2 (the 95% CI's bound) is 0.8 there ...
    assert TTestPower().power(effect_size=mde / sd, nobs=n, alpha=0.025, alternative="larger") == pytest.approx(
        0.8, abs=TOL)
    # ... and its own solver (tolerance ~1e-5 in effect size) lands on the same effect
    ref = TTestPower().solve_power(nobs=n, alpha=0.025, power=0.8, alternative="larger") * sd
    assert mde == pytest.approx(ref, abs=1e-4 * sd)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dersimonian_laird_matches_statsmodels_combine_effects(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 9))
    effects, variances = rng.normal(0.1, 0.2, k), rng.uniform(0.001, 0.02, k)  # heterogeneous: Q > k-1
    ours = R.dersimonian_laird(effects, variances)
    assert ours.q > k - 1 and ours.tau2 > 0
    ref = combine_effects(effects, variances, method_re="dl")
    low, high = ref.conf_int(use_t=False)[1]
    assert ours.effect == pytest.approx(ref.mean_effect_re, abs=TOL)
    assert ours.se == pytest.approx(ref.sd_eff_w_re, abs=TOL)
    assert (ours.low, ours.high) == (pytest.approx(low, abs=TOL), pytest.approx(high, abs=TOL))
    assert ours.tau2 == pytest.approx(ref.tau2, abs=TOL) and ours.i2 == pytest.approx(ref.i2, abs=TOL)
    assert ours.q == pytest.approx(ref.q, abs=TOL)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")  # statsmodels' sqrt(tau2 < 0)
def test_dersimonian_laird_truncates_tau2_at_zero_when_q_is_below_its_df():
    """DerSimonian & Laird (1986) take max(0, ·); statsmodels' combine_effects leaves the negative
    moment estimate in. With Q < k-1 the pooled effect is the fixed-effect (inverse-variance) mean."""
    effects, variances = np.array([0.10, 0.11, 0.09, 0.10]), np.array([0.01, 0.02, 0.015, 0.01])
    ours = R.dersimonian_laird(effects, variances)
    ref = combine_effects(effects, variances, method_re="dl")
    assert ours.q < 3 and ref.tau2 < 0 and ours.tau2 == 0.0 and ours.i2 == 0.0
    assert ours.effect == pytest.approx(ref.mean_effect_fe, abs=TOL)
    assert ours.se == pytest.approx(ref.sd_eff_w_fe, abs=TOL)


def test_bad_pooling_input_is_a_one_line_error():
    with pytest.raises(S.StatsInputError, match="`variances` must be > 0"):
        R.dersimonian_laird([0.1, 0.2], [0.01, 0.0])


def test_compare_reports_every_figure_per_score_and_per_slice():
    from bt_flywheel.verify.compare import compare_loaded

    base, cand = sliced_experiments(0.1, 4)
    doc = compare_loaded(base, cand, target="acc", guards=[], slice_key="metadata.length", n_resamples=0).to_dict()
    ComparisonDoc.from_dict(doc)  # the contract (schemas/comparison.schema.json) carries them
    target = doc["scores"][0]
    ids = sorted(base.scores["acc"])
    b = np.array([np.mean(base.scores["acc"][r]) for r in ids])
    c = np.array([np.mean(cand.scores["acc"][r]) for r in ids])
    rep = target["reported"]
    assert rep["wilcoxon"]["p"] == pytest.approx(st.wilcoxon(c - b, zero_method="pratt").pvalue, abs=TOL)
    assert rep["cohens_dz"]["estimate"] == pytest.approx((c - b).mean() / (c - b).std(ddof=1), abs=TOL)
    assert rep["cliffs_delta"]["estimate"] == pytest.approx(np.sign(np.subtract.outer(c, b)).mean(), abs=TOL)
    assert rep["mde"]["n"] == 90 and rep["permutation"]["exact"] is False
    mcn = target["mcnemar"]
    assert mcn["odds_ratio"] == pytest.approx(mcn["gained"] / mcn["lost"])
    for item in doc["slices"]["results"]:
        mask = np.array([("short", "long", "mixed")[k % 3] == item["value"] for k in range(90)])
        d = (c - b)[mask]
        assert item["reported"]["wilcoxon"]["p"] == pytest.approx(st.wilcoxon(d, zero_method="pratt").pvalue, abs=TOL)
        assert item["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), abs=TOL)
