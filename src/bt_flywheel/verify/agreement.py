"""Two judge tiers (seed 001): where the automatic scorer and the judge disagree.

    report = agreement_from_store(store, "candidate-v2", pairs=[("Factuality", "accuracy")], delta=0.25)

For each (automatic score, judged dimension) pair, over the experiment's (row, trial) roots that
carry both (scores are on [0, 1]; the judge's are normalized from its scale):

- Cohen's κ on the two ratings as categories: both scores are put on the judged dimension's
  scale (k = high − low + 1 levels; a score x becomes level round(x·(k − 1))), then
  κ = (p_o − p_e) / (1 − p_e) from their k×k table (the same statistic as statsmodels'
  `cohens_kappa` on that table; a test checks they agree);
- the mean absolute difference |auto − judge| on [0, 1];
- the rows where |auto − judge| > delta: the ones a person should spot-check, largest first.
A promotion that needs both tiers can require κ above a bar and an empty spot-check list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bt_flywheel.core.errors import InputError

ROOT_WHERE = "(is_root OR json_extract_string(span_attributes, '$.type') = 'eval')"
DEFAULT_DELTA = 0.25


def cohens_kappa(a: Sequence[int], b: Sequence[int], levels: int) -> float:
    """Unweighted Cohen's κ of two raters' category indices in [0, levels); NaN when undefined."""
    table = np.zeros((levels, levels))
    np.add.at(table, (np.asarray(a, dtype=int), np.asarray(b, dtype=int)), 1)
    n = table.sum()
    if n == 0:
        return math.nan
    observed = np.trace(table) / n
    expected = float(table.sum(axis=1) @ table.sum(axis=0)) / n**2
    return math.nan if expected == 1 else float((observed - expected) / (1 - expected))


def to_level(value: float, levels: int) -> int:
    return int(round(min(max(value, 0.0), 1.0) * (levels - 1)))


@dataclass
class PairAgreement:
    auto: str
    judge: str
    levels: int
    n: int
    kappa: float
    mean_abs_delta: float
    spot_check: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def f(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"auto": self.auto, "judge": self.judge, "levels": self.levels, "n": self.n, "kappa": f(self.kappa),
                "mean_abs_delta": f(self.mean_abs_delta), "spot_check": self.spot_check}


def pair_agreement(roots: list[dict[str, Any]], auto: str, judge: str, *, delta: float = DEFAULT_DELTA,
                   levels: int | None = None) -> PairAgreement:
    """κ, mean |Δ| and the rows over `delta` for one (automatic score, judged dimension) pair."""
    both = [r for r in roots if isinstance((r.get("scores") or {}).get(auto), int | float)
            and isinstance((r.get("scores") or {}).get(judge), int | float)]
    if levels is None:
        scales = [((r.get("metadata") or {}).get("judge") or {}).get("scales", {}).get(judge) for r in both]
        scale = next((s for s in scales if s), None)
        levels = int(scale[1] - scale[0] + 1) if scale else 2
    if levels < 2:
        raise InputError(f"--levels: expected at least 2, got {levels}")
    autos = [float(r["scores"][auto]) for r in both]
    judged = [float(r["scores"][judge]) for r in both]
    deltas = [abs(x - y) for x, y in zip(autos, judged, strict=True)]
    kappa = cohens_kappa([to_level(x, levels) for x in autos], [to_level(y, levels) for y in judged], levels)
    spot = []
    for root, a, j, d in zip(both, autos, judged, deltas, strict=True):
        if d > delta:
            meta = root.get("metadata") or {}
            spot.append({"id": root["id"], "dataset_row_id": meta.get("dataset_row_id"), "trial": meta.get("trial"),
                         "auto": a, "judge": j, "delta": round(d, 6),
                         "rationale": ((meta.get("judge") or {}).get("rationales") or {}).get(judge)})
    spot.sort(key=lambda s: (-s["delta"], str(s["dataset_row_id"]), s["trial"] or 0))
    mean = float(np.mean(deltas)) if deltas else math.nan
    return PairAgreement(auto, judge, levels, len(both), kappa, mean, spot)


def agreement_from_store(store: Any, experiment: str, pairs: Sequence[tuple[str, str]], *,
                         delta: float = DEFAULT_DELTA, levels: int | None = None,
                         project: str | None = None) -> dict[str, Any]:
    """The agreement report of one experiment (what `flywheel judge agreement --json` prints)."""
    if not 0 <= delta <= 1:
        raise InputError(f"--delta: expected a number in [0, 1], got {delta}")
    if not pairs:
        raise InputError("--pair: give at least one AUTO_SCORE=JUDGED_DIMENSION")
    object_id = store.require_object("experiment", experiment, project=project)
    roots = list(store.iter_rows("experiment", object_id, where=ROOT_WHERE))
    results = []
    for auto, judge in pairs:
        result = pair_agreement(roots, auto, judge, delta=delta, levels=levels)
        if result.n == 0:
            raise InputError(f"--pair {auto}={judge}: no (row, trial) of {experiment!r} carries both scores",
                             hint="apply the judge's scores first: flywheel judge apply FILE")
        results.append(result)
    versions = sorted({str(((r.get("metadata") or {}).get("judge") or {}).get("rubric_version"))
                       for r in roots if (r.get("metadata") or {}).get("judge")})
    return {"experiment": experiment, "delta": delta, "rubric_versions": versions,
            "pairs": [r.to_dict() for r in results]}
