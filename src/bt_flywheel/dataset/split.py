"""The deterministic, stratified train/validation split (DESIGN.md §4).

Rows are grouped into strata by (facet, bucket, label). Within a stratum rows are ordered by
sha256(seed + "|" + row id) and the first round(n * validation_fraction) go to validation
(round half up, computed exactly in decimal so 0.2 * 5 is 1, not 0.99999).

A row keeps its split forever once assigned. When rows are added to a stratum that already
has assigned rows, the old rows keep their split and only the new rows are placed: the
stratum's target becomes round(n_total * fraction); new rows fill the validation shortfall
(in hash order) and the rest go to train. If old rows alone already exceed the target (a row
changed label and moved stratum, say), no old row moves; the stratum is as close as it can
be without moving them. Assigning everything at once and assigning it in batches give each
stratum exactly round(n * fraction) validation rows whenever no old row is over target.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bt_flywheel.core.ids import seeded_order_key

DEFAULT_SEED = "flywheel-v1"
DEFAULT_VALIDATION_FRACTION = 0.2
SPLITS = ("train", "validation")

Stratum = tuple[str, str, str]


def check_fraction(validation_fraction: float) -> float:
    """Validate the fraction (a number in [0, 1]); return it as a float."""
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, int | float):
        raise ValueError(f"validation_fraction: expected a number in [0, 1], got {validation_fraction!r}")
    if not 0 <= validation_fraction <= 1:
        raise ValueError(f"validation_fraction: expected a number in [0, 1], got {validation_fraction}")
    return float(validation_fraction)


def validation_count(n: int, validation_fraction: float) -> int:
    """round(n * fraction), half up, exact for fractions written in decimal (0.2, 0.15, ...)."""
    exact = Decimal(n) * Decimal(repr(float(validation_fraction)))
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def stratum_of(row: Mapping[str, Any]) -> Stratum:
    """(facet, bucket, label) of a dataset row; missing parts are empty strings."""
    metadata = row.get("metadata") or {}
    curation = metadata.get("curation") or {}
    label = metadata.get("label") or {}
    return (str(curation.get("facet") or ""), str(curation.get("bucket") or ""), str(label.get("value") or ""))


def assign_splits(
    items: Iterable[tuple[str, Stratum]],
    *,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: str = DEFAULT_SEED,
    existing: Mapping[str, tuple[Stratum, str]] | None = None,
) -> dict[str, str]:
    """Split for every (row id, stratum) in `items`.

    `existing` maps already-assigned row ids to (stratum, split); those rows keep their split
    (whether or not they are in `items`) and count toward their stratum's ratio.
    """
    fraction = check_fraction(validation_fraction)
    existing = existing or {}
    old_counts: dict[Stratum, list[int]] = defaultdict(lambda: [0, 0])  # [n, n_validation]
    for stratum, split in existing.values():
        if split not in SPLITS:
            raise ValueError(f"existing split {split!r}: expected train or validation")
        counts = old_counts[tuple(stratum)]
        counts[0] += 1
        counts[1] += split == "validation"
    result: dict[str, str] = {}
    new_by_stratum: dict[Stratum, list[str]] = defaultdict(list)
    for row_id, stratum in items:
        if row_id in existing:
            result[row_id] = existing[row_id][1]
        elif row_id not in result:
            result[row_id] = ""  # placeholder keeps duplicates out
            new_by_stratum[tuple(stratum)].append(row_id)
    for stratum, new_ids in new_by_stratum.items():
        n_old, v_old = old_counts.get(stratum, (0, 0))
        target = validation_count(n_old + len(new_ids), fraction)
        take = min(max(target - v_old, 0), len(new_ids))
        ordered = sorted(new_ids, key=lambda i: seeded_order_key(seed, i))
        for position, row_id in enumerate(ordered):
            result[row_id] = "validation" if position < take else "train"
    return result


@dataclass
class StratumCount:
    facet: str
    bucket: str
    label: str
    n: int
    validation: int
    target_validation: int

    @property
    def off_by(self) -> int:
        return self.validation - self.target_validation

    def as_dict(self) -> dict[str, Any]:
        return {"facet": self.facet, "bucket": self.bucket, "label": self.label, "n": self.n,
                "train": self.n - self.validation, "validation": self.validation,
                "target_validation": self.target_validation, "off_by": self.off_by}


def split_rows(
    rows: list[dict[str, Any]],
    *,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: str = DEFAULT_SEED,
    existing_rows: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Set metadata.split on every labeled row (in place; returns `rows`).

    A row that already carries a split keeps it, as does any row found in `existing_rows`
    (e.g. the target dataset's stored rows); both count toward their stratum. Rows whose
    label is still pending get no split (metadata.split = None).
    """
    existing: dict[str, tuple[Stratum, str]] = {}
    for row in existing_rows:
        split = (row.get("metadata") or {}).get("split")
        if split in SPLITS:
            existing[row["id"]] = (stratum_of(row), split)
    items: list[tuple[str, Stratum]] = []
    for row in rows:
        metadata = row.setdefault("metadata", {})
        if is_pending(row):
            metadata["split"] = None
            continue
        if row["id"] not in existing and metadata.get("split") in SPLITS:
            existing[row["id"]] = (stratum_of(row), metadata["split"])
        items.append((row["id"], stratum_of(row)))
    assigned = assign_splits(items, validation_fraction=validation_fraction, seed=seed, existing=existing)
    for row in rows:
        if row["id"] in assigned and not is_pending(row):
            row["metadata"]["split"] = assigned[row["id"]]
    return rows


def is_pending(row: Mapping[str, Any]) -> bool:
    """A row whose label has not been given yet (the agent labeler's export is outstanding)."""
    label = (row.get("metadata") or {}).get("label") or {}
    return label.get("status") == "pending"


def stratum_counts(rows: Iterable[Mapping[str, Any]], *,
                   validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> list[StratumCount]:
    """Per-stratum totals of split rows, with the ideal validation count for comparison."""
    counts: dict[Stratum, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        split = (row.get("metadata") or {}).get("split")
        if split not in SPLITS:
            continue
        entry = counts[stratum_of(row)]
        entry[0] += 1
        entry[1] += split == "validation"
    return [StratumCount(f, b, lab, n, v, validation_count(n, validation_fraction))
            for (f, b, lab), (n, v) in sorted(counts.items())]
