"""The lazy-judge leaderboard: one cell per (model, prompt) or any metadata keys, mean ± CI per cell,
and ranks that tie where Holm-corrected paired comparisons cannot separate cells.

Method (DESIGN.md §8 applied to k cells):
- A row's value in a cell is the mean over its trials (rows keyed by metadata.dataset_row_id).
- Cell mean and CI: the t-interval over the cell's per-row means.
- Every pair of cells is compared with a paired test on the rows both cells scored, and the
  k(k-1)/2 p-values are Holm-corrected.
- Rank of a cell = 1 + the number of cells significantly better than it. Cells no comparison can
  separate share a rank ("=2"), so a rank is a claim the data supports.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from bt_flywheel.backends.base import Backend, as_backend
from bt_flywheel.core.errors import InputError
from bt_flywheel.report.svg import COLORS, Forest, ForestItem, esc, fmt, forest_svg

EXPERIMENT_KEY = "experiment"


@dataclass
class Cell:
    key: dict[str, Any]
    label: str
    n: int
    trials: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    rank: int = 0
    tied_with: list[str] = field(default_factory=list)
    better_than: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "cell": self.key, "rank": self.rank,
                "rank_label": (f"={self.rank}" if self.tied_with else str(self.rank)),
                "n": self.n, "trials": self.trials, "mean": self.mean, "ci": [self.ci_low, self.ci_high],
                "tied_with": self.tied_with, "better_than": self.better_than, "experiments": self.experiments}


@dataclass
class PairComparison:
    a: str
    b: str
    n: int
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    p_holm: float | None = None
    significant: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "n": self.n, "effect": self.effect, "ci": [self.ci_low, self.ci_high],
                "p": self.p, "p_holm": self.p_holm, "significant": self.significant}


@dataclass
class Leaderboard:
    score: str
    by: list[str]
    alpha: float
    cells: list[Cell]
    comparisons: list[PairComparison]
    experiments: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "by": self.by, "alpha": self.alpha, "correction": "holm",
                "pairing": "metadata.dataset_row_id, trial means", "experiments": self.experiments,
                "cells": [c.to_dict() for c in self.cells], "comparisons": [p.to_dict() for p in self.comparisons]}

    def table_rows(self) -> list[dict[str, Any]]:
        return [{"rank": c.to_dict()["rank_label"], "cell": c.label, "n": c.n, "mean": fmt(c.mean),
                 "ci": f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]", "tied_with": ", ".join(c.tied_with)}
                for c in self.cells]


# ---------------------------------------------------------------------------------------------
# statistics: thin calls into stats.py


def _cell_mean_ci(values: Sequence[float], alpha: float) -> tuple[float | None, float | None, float | None]:
    """Mean of the per-row means and its t-interval (stats.ttest_differences on the values)."""
    from bt_flywheel.verify import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.ttest_differences(values)
    ci = res.confidence_interval(1 - alpha)
    return _finite_or_none(res.estimate), _finite_or_none(ci.low), _finite_or_none(ci.high)


def _paired(a: Sequence[float], b: Sequence[float], alpha: float) -> tuple[float | None, float | None,
                                                                             float | None, float | None]:
    """(effect a−b, ci_low, ci_high, p) of stats.paired_ttest on per-row means."""
    from bt_flywheel.verify import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.paired_ttest(a, b)
    ci = res.confidence_interval(1 - alpha)
    return (_finite_or_none(res.estimate), _finite_or_none(ci.low), _finite_or_none(ci.high),
            _finite_or_none(res.pvalue))


def _holm(pvalues: Sequence[float]) -> list[float]:
    from bt_flywheel.verify import stats

    return [float(p) for p in stats.holm(list(pvalues))]


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------


def build_leaderboard(cells: Mapping[str, Mapping[str, Sequence[float]]], *, score: str,
                      by: Sequence[str] = (EXPERIMENT_KEY,), alpha: float = 0.05,
                      keys: Mapping[str, Mapping[str, Any]] | None = None,
                      experiments: Mapping[str, Sequence[str]] | None = None) -> Leaderboard:
    """Rank cells from per-row trial scores: cells[label][dataset_row_id] = [trial scores...]."""
    if not 0 < alpha < 1:
        raise InputError(f"alpha: must be between 0 and 1, got {alpha}")
    if not cells:
        raise InputError(f"score {score!r}: no rows carry this score in the given experiments")
    row_means: dict[str, dict[str, float]] = {}
    out_cells: dict[str, Cell] = {}
    for label, rows in cells.items():
        means = {rid: sum(v) / len(v) for rid, v in rows.items() if v}
        row_means[label] = means
        mean, lo, hi = _cell_mean_ci(list(means.values()), alpha) if means else (None, None, None)
        out_cells[label] = Cell(key=dict((keys or {}).get(label, {})), label=label, n=len(means),
                                trials=sum(len(v) for v in rows.values()), mean=mean, ci_low=lo, ci_high=hi,
                                experiments=sorted((experiments or {}).get(label, [])))
    pairs: list[PairComparison] = []
    for a, b in combinations(sorted(cells), 2):
        common = sorted(set(row_means[a]) & set(row_means[b]))
        if len(common) >= 2:
            eff, lo, hi, p = _paired([row_means[a][r] for r in common], [row_means[b][r] for r in common], alpha)
        else:
            eff = lo = hi = p = None
        pairs.append(PairComparison(a, b, len(common), eff, lo, hi, p))
    tested = [pc for pc in pairs if pc.p is not None and math.isfinite(pc.p)]
    for pc, adj in zip(tested, _holm([pc.p for pc in tested]) if tested else [], strict=True):
        pc.p_holm = adj
        pc.significant = adj < alpha and pc.effect is not None and pc.effect != 0
    better: dict[str, set[str]] = defaultdict(set)   # better[x] = cells significantly better than x
    for pc in pairs:
        if pc.significant:
            winner, loser = (pc.a, pc.b) if pc.effect > 0 else (pc.b, pc.a)
            better[loser].add(winner)
            out_cells[winner].better_than.append(loser)
    for cell in out_cells.values():
        cell.rank = 1 + len(better[cell.label])
        cell.better_than.sort()
    for cell in out_cells.values():
        cell.tied_with = sorted(o.label for o in out_cells.values() if o is not cell and o.rank == cell.rank)
    ordered = sorted(out_cells.values(), key=lambda c: (c.rank, -(c.mean if c.mean is not None else -math.inf),
                                                         c.label))
    all_experiments = sorted({e for c in ordered for e in c.experiments})
    return Leaderboard(score=score, by=list(by), alpha=alpha, cells=ordered, comparisons=pairs,
                       experiments=all_experiments)


def _resolve(path: str, row: Mapping[str, Any], experiment: Mapping[str, Any]) -> Any:
    """A --by key: from the row first (metadata.model), then the experiment's metadata or params."""
    if path in (EXPERIMENT_KEY, "experiment.name", "name"):
        return experiment.get("name")
    parts = path.split(".")
    for source in (row, {"metadata": experiment.get("metadata") or {}},
                   {"metadata": (experiment.get("metadata") or {}).get("params") or {}}):
        value: Any = source
        for part in parts:
            value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                break
        if value is not None:
            return value
    return None


def _cell_label(values: Sequence[Any]) -> str:
    return " · ".join("(none)" if v is None else str(v) for v in values)


def load_cells(source: str | os.PathLike[str] | Backend, experiments: Iterable[str], *, score: str | None,
               by: Sequence[str] = (EXPERIMENT_KEY,), project: str | None = None
               ) -> tuple[str, dict[str, dict[str, list[float]]], dict[str, dict[str, Any]], dict[str, set[str]]]:
    """Read root rows of the experiments from a backend (a store path: the local store) and group
    them into cells.

    Returns (score, cells[label][row_id] -> trial scores, keys[label] -> {by key: value},
    experiments[label] -> experiment names). When `score` is None the experiments must carry
    exactly one score.
    """
    from bt_flywheel.verify.compare import row_key

    backend = as_backend(source)

    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    keys: dict[str, dict[str, Any]] = {}
    exps: dict[str, set[str]] = defaultdict(set)
    seen_scores: set[str] = set()
    loaded: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    with backend.reading():
        for name in experiments:
            found = backend.experiment(name, project=project)
            roots = list(backend.experiment_roots(found))
            loaded.append((found.as_dict(), roots))
            for r in roots:
                seen_scores.update(k for k, v in (r.get("scores") or {}).items() if v is not None)
    if score is None:
        if len(seen_scores) != 1:
            raise InputError(f"--score: the experiments carry {len(seen_scores)} scores "
                             f"({', '.join(sorted(seen_scores)) or 'none'}); name one")
        score = next(iter(seen_scores))
    elif score not in seen_scores:
        raise InputError(f"--score {score!r}: no root row carries it "
                         f"(scores present: {', '.join(sorted(seen_scores)) or 'none'})")
    for info, roots in loaded:
        for r in roots:
            value = (r.get("scores") or {}).get(score)
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            values = [_resolve(k, r, info) for k in by]
            label = _cell_label(values)
            keys[label] = dict(zip(by, values, strict=True))
            cells[label][row_key(r) or str(r.get("id"))].append(float(value))
            exps[label].add(str(info.get("name")))
    return score, {k: dict(v) for k, v in cells.items()}, keys, exps


def leaderboard_from_store(source: str | os.PathLike[str] | Backend, experiments: Sequence[str], *,
                           score: str | None = None, by: Sequence[str] = (EXPERIMENT_KEY,),
                           alpha: float = 0.05, project: str | None = None) -> Leaderboard:
    """`flywheel leaderboard`: load the experiments, build cells, rank them."""
    if not experiments:
        raise InputError("experiments: give at least one experiment name or id")
    score, cells, keys, exps = load_cells(source, experiments, score=score, by=by, project=project)
    return build_leaderboard(cells, score=score, by=by, alpha=alpha, keys=keys, experiments=exps)


# ---------------------------------------------------------------------------------------------
# the report section


def leaderboard_html(board: Mapping[str, Any]) -> str:
    """A report section from `Leaderboard.to_dict()`: the ranked table and a mean ± CI plot."""
    cells = [c for c in board.get("cells", []) if isinstance(c, Mapping)]
    alpha = board.get("alpha", 0.05)
    items = []
    for c in cells:
        lo, hi = (c.get("ci") or [None, None])[:2]
        color = COLORS["improved"] if c.get("rank") == 1 else COLORS["baseline"]
        items.append(ForestItem(label=str(c.get("label")), sublabel=f"rank {c.get('rank_label')} · n={c.get('n')}",
                                estimate=c.get("mean"), low=lo, high=hi, color=color,
                                note=f"{fmt(c.get('mean'))} [{fmt(lo)}, {fmt(hi)}]"))
    values = [v for c in cells for v in (c.get("ci") or []) if isinstance(v, int | float)]
    x_range = (0.0, 1.0) if values and min(values) >= 0 and max(values) <= 1 else None
    plot = forest_svg(Forest(items=items, refs=[], x_range=x_range,
                             title=f"{board.get('score')}: mean ± {100 * (1 - alpha):.0f}% CI per cell",
                             x_label=f"{board.get('score')} (per-row trial means)"))
    rows = "".join(
        f"<tr><td class=num><b>{esc(c.get('rank_label'))}</b></td><td>{esc(c.get('label'))}</td>"
        f"<td class=num>{esc(c.get('n'))}</td><td class=num>{fmt(c.get('mean'))}</td>"
        f"<td class=num>[{fmt((c.get('ci') or [None])[0])}, {fmt((c.get('ci') or [None, None])[1])}]</td>"
        f"<td>{esc(', '.join(c.get('tied_with') or []))}</td></tr>" for c in cells)
    by = ", ".join(board.get("by") or [])
    return (f'<h2 id="leaderboard">Leaderboard: {esc(board.get("score"))} by {esc(by)}</h2>'
            '<p class="note">Cells share a rank when no Holm-corrected paired comparison (rows paired by '
            'dataset row id, trials averaged) separates them at α = '
            f'{fmt(alpha, 2)}. Rank = 1 + number of cells significantly better.</p>{plot}'
            '<table><tr><th class=num>rank</th><th>cell</th><th class=num>n</th><th class=num>mean</th>'
            f'<th class=num>CI</th><th>tied with</th></tr>{rows}</table>')
