"""Stable ids and the stratified hash split (DESIGN.md §4)."""

from __future__ import annotations

import hashlib
import random

import pytest

from bt_flywheel.core.ids import stable_row_id
from bt_flywheel.dataset.facets import is_none_value, weak_bucket
from bt_flywheel.dataset.split import assign_splits, split_rows, stratum_counts, validation_count


def test_stable_row_id_is_the_documented_hash() -> None:
    expected = hashlib.sha256(b"flywheel-row-v1|proj-1|trace-9|issues").hexdigest()[:32]
    assert stable_row_id("proj-1", "trace-9", "issues") == expected
    assert stable_row_id("proj-1", "trace-9") == hashlib.sha256(b"flywheel-row-v1|proj-1|trace-9|").hexdigest()[:32]
    assert stable_row_id("proj-1", "trace-9", None) == stable_row_id("proj-1", "trace-9", "")
    assert stable_row_id("proj-1", "trace-9", "issues") != stable_row_id("proj-1", "trace-9", "sentiment")


def test_split_follows_the_documented_rule_exactly() -> None:
    ids = [f"{i:032x}" for i in range(23)]
    stratum = ("issues", "positive", "positive")
    got = assign_splits([(i, stratum) for i in ids], validation_fraction=0.2, seed="flywheel-v1")
    ordered = sorted(ids, key=lambda i: hashlib.sha256(f"flywheel-v1|{i}".encode()).hexdigest())
    n_val = 5  # round(23 * 0.2) = round(4.6)
    assert {i for i in ids if got[i] == "validation"} == set(ordered[:n_val])
    assert sum(v == "train" for v in got.values()) == 18


@pytest.mark.parametrize(("n", "fraction", "want"), [(5, 0.2, 1), (10, 0.25, 3), (2, 0.25, 1), (1, 0.5, 1),
                                                     (3, 0.5, 2), (7, 0.0, 0), (7, 1.0, 7), (12, 0.15, 2)])
def test_validation_count_rounds_half_up_exactly(n: int, fraction: float, want: int) -> None:
    assert validation_count(n, fraction) == want


def _items(rng: random.Random, n: int, strata: list[tuple[str, str, str]]) -> list[tuple[str, tuple[str, str, str]]]:
    return [(f"{rng.getrandbits(128):032x}", rng.choice(strata)) for _ in range(n)]


STRATA = [("issues", "positive", "positive"), ("issues", "negative", "negative"),
          ("issues", "negative", "positive"), ("", "failing", "fail"), ("", "passing", "pass")]


@pytest.mark.parametrize("seed", range(6))
def test_adding_rows_never_moves_old_rows_and_keeps_each_stratum_within_one_row(seed: int) -> None:
    rng = random.Random(seed)
    existing: dict[str, tuple[tuple[str, str, str], str]] = {}
    for _batch in range(6):
        batch = _items(rng, rng.randint(1, 40), STRATA)
        assigned = assign_splits(batch, validation_fraction=0.2, seed="flywheel-v1", existing=existing)
        for row_id, (_stratum, split) in existing.items():
            assert assigned.get(row_id, split) == split  # old rows never move
        for row_id, stratum in batch:
            existing.setdefault(row_id, (stratum, assigned[row_id]))
        counts: dict[tuple[str, str, str], list[int]] = {}
        for stratum, split in existing.values():
            entry = counts.setdefault(stratum, [0, 0])
            entry[0] += 1
            entry[1] += split == "validation"
        for stratum, (n, n_val) in counts.items():
            assert abs(n_val - 0.2 * n) <= 1, (stratum, n, n_val)
            assert n_val == validation_count(n, 0.2)  # exact when nothing is over target


def test_batches_and_all_at_once_agree_when_added_in_one_go() -> None:
    rng = random.Random(11)
    items = _items(rng, 200, STRATA)
    once = assign_splits(items)
    again = assign_splits(list(reversed(items)))
    assert once == again  # order of arrival does not matter


def test_old_rows_over_target_stay_put() -> None:
    stratum = ("", "failing", "fail")
    existing = {f"{i:032x}": (stratum, "validation") for i in range(3)}  # relabeled into this stratum
    new = [(f"{i:032x}", stratum) for i in range(3, 8)]
    assigned = assign_splits(new, existing=existing)
    assert all(assigned[i] == "train" for i, _ in new)
    assert all(assigned.get(i, s) == s for i, (_, s) in existing.items())


def test_split_rows_keeps_stored_splits_and_skips_pending_rows() -> None:
    def row(i: int, label: str | None, split: str | None = None) -> dict:
        status = "pending" if label is None else "labeled"
        return {"id": f"{i:032x}", "metadata": {"split": split, "curation": {"bucket": "b", "facet": None},
                                                 "label": {"status": status, "value": label}}}

    stored = [row(i, "pass", "validation") for i in range(4)]
    rows = [row(i, "pass") for i in range(10)] + [row(99, None)]
    split_rows(rows, existing_rows=stored)
    by_id = {r["id"]: r["metadata"]["split"] for r in rows}
    assert all(by_id[f"{i:032x}"] == "validation" for i in range(4))
    assert by_id[f"{99:032x}"] is None
    counts = stratum_counts(rows)
    assert [(c.n, c.validation) for c in counts] == [(10, 4)]  # stored rows over target do not move


@pytest.mark.parametrize("value", [None, "", "  ", "none", "None", " NONE ", "n/a", "N/A", "No Match",
                                   "no  match", '"none"', "none.", [], {}, ["none", ""], False])
def test_one_definition_of_none(value: object) -> None:
    assert is_none_value(value)
    assert weak_bucket(value) == "negative"


@pytest.mark.parametrize("value", ["billing", "nonexistent account", "not applicable here", 0, ["x"], {"a": "b"}, True])
def test_real_values_are_not_none(value: object) -> None:
    assert not is_none_value(value)
    assert weak_bucket(value) == "positive"
