"""Real `flywheel compare --json` documents with chosen verdicts, for the readers' tests.

Each verdict comes from rows built to give it (not from editing the output), run through
`compare.compare_loaded`, so the documents are exactly what compare writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bt_flywheel.verify import compare
from bt_flywheel.verify.metrics import MetricGuard

# verdict -> (rows, mean shift of the candidate, +- spread of the per-row differences)
RECIPES: dict[tuple[str, str], tuple[int, float, float]] = {
    ("target", "improved"): (40, 0.2, 0.1),
    ("target", "regressed"): (40, -0.2, 0.1),
    ("target", "inconclusive"): (40, 0.02, 0.2),       # required_n ~ 790 > 4 x 40: metric_flat
    ("target", "underpowered"): (40, 0.05, 0.2),       # required_n ~ 130 <= 4 x 40: underpowered
    ("target", "equivalent"): (200, 0.0, 0.0),
    ("guard", "non_inferior"): (200, 0.0, 0.0),
    ("guard", "regressed"): (40, -0.2, 0.1),
    ("guard", "not_enough_rows"): (20, 0.0, 0.1),
}


# metric guard verdict (allowed increase +10%) -> (rows, candidate/baseline ratio, +- relative spread per row)
METRIC_RECIPES: dict[str, tuple[int, float, float]] = {
    "non_inferior": (40, 1.0, 0.01),
    "regressed": (40, 1.5, 0.01),
    "not_enough_rows": (20, 1.0, 0.4),
}


def _metric_rows(n: int, ratio: float, spread: float) -> tuple[dict, dict]:
    ids = [f"r{i:03d}" for i in range(n)]
    b = {i: [1000.0 + 10 * k] for k, i in enumerate(ids)}
    c = {i: [b[i][0] * ratio * (1 + (spread if k % 2 else -spread))] for k, i in enumerate(ids)}
    return b, c


def _rows(n: int, shift: float, spread: float, *, base: float = 0.5) -> tuple[dict, dict]:
    ids = [f"r{i:03d}" for i in range(n)]
    b = {i: [base] for i in ids}
    c = {i: [base + shift + (spread if k % 2 else -spread)] for k, i in enumerate(ids)}
    return b, c


def comparison(verdict: str = "improved", *, guard: str | None = "non_inferior", candidate: str = "exp-c1",
               underpowered: bool = False, stuck: bool = False, guards: dict[str, str] | None = None,
               baseline: str = "exp-base", metric_guards: dict[str, str] | None = None) -> dict[str, Any]:
    """A comparison of target `Refusal` (and guard `Factuality`, or `guards` {name: verdict}; and
    `metric_guards` {tokens|cost|latency|duration: verdict}, span-metric guards)."""
    wanted = {"Refusal": ("target", "underpowered" if underpowered else verdict)}
    for name, v in (guards if guards is not None else ({"Factuality": guard} if guard else {})).items():
        wanted[name] = ("guard", v)
    base_scores: dict[str, dict] = {}
    cand_scores: dict[str, dict] = {}
    for name, key in wanted.items():
        base_scores[name], cand_scores[name] = _rows(*RECIPES[key])
    if stuck:  # a guard scoring 1 on every row of both experiments
        base_scores["Stuck"] = {f"r{i:03d}": [1.0] for i in range(200)}
        cand_scores["Stuck"] = dict(base_scores["Stuck"])

    base_metrics: dict[str, dict] = {}
    cand_metrics: dict[str, dict] = {}
    for name, v in (metric_guards or {}).items():
        base_metrics[name], cand_metrics[name] = _metric_rows(*METRIC_RECIPES[v])

    def experiment(eid: str, scores: dict, metrics: dict) -> compare.ExperimentScores:
        return compare.ExperimentScores(id=eid, name=eid, created=None, metadata={"split": "validation"},
                                        root_rows=200, scores=scores, available=set(scores), metrics=metrics)

    result = compare.compare_loaded(experiment(baseline, base_scores, base_metrics),
                                    experiment(candidate, cand_scores, cand_metrics),
                                    target="Refusal", guards=[n for n in base_scores if n != "Refusal"],
                                    n_resamples=0, metric_guards=[MetricGuard(m) for m in metric_guards or {}])
    doc = result.to_dict()
    got = {s["name"]: s["verdict"] for s in doc["scores"]}
    for name, (_, v) in wanted.items():
        assert got[name] == ("inconclusive" if v == "underpowered" else v), (name, got[name], v)
    for name, v in (metric_guards or {}).items():
        assert got[name] == v, (name, got[name], v)
    return doc


def sliced_experiments(shift: float, seed: int) -> list[compare.ExperimentScores]:
    """A baseline and a candidate over 90 rows x 3 trials of a binary score `acc`, the candidate's
    pass rate lifted by `shift`, each row in one of three slices (short, long, mixed)."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i:03d}" for i in range(90)]
    ease = rng.uniform(0.2, 0.8, 90)
    out = []
    for name, lift in (("base", 0.0), ("cand", shift)):
        trials = rng.random((90, 3)) < np.clip(ease + lift, 0, 1)[:, None]
        out.append(compare.ExperimentScores(
            id=name, name=name, created=None, metadata={}, root_rows=270,
            scores={"acc": {r: [float(v) for v in trials[k]] for k, r in enumerate(ids)}}, available={"acc"},
            slices={r: ("short", "long", "mixed")[k % 3] for k, r in enumerate(ids)}))
    return out
