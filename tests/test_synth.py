"""The synthetic trace generator: deterministic, Braintrust-shaped, with the planted patterns."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bt_flywheel.backends.store import validate_row
from bt_flywheel.backends.synth import generate_spans, write_jsonl

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_deterministic_by_seed_and_exact_count(tmp_path: Path, monkeypatch) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", 500, seed=7, now=NOW)
    b = write_jsonl(tmp_path / "b.jsonl.gz", 500, seed=7, now=NOW)
    assert a == b == 500
    assert (tmp_path / "a.jsonl").read_bytes() == gzip.decompress((tmp_path / "b.jsonl.gz").read_bytes())
    write_jsonl(tmp_path / "c.jsonl", 500, seed=8, now=NOW)
    assert (tmp_path / "c.jsonl").read_bytes() != (tmp_path / "a.jsonl").read_bytes()
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 500
    # the gzip file itself, header included (no write time in it), is the same on every run
    (tmp_path / "again").mkdir()
    monkeypatch.setattr(gzip.time, "time", lambda: 2e9)   # a later run
    write_jsonl(tmp_path / "again" / "b.jsonl.gz", 500, seed=7, now=NOW)
    assert (tmp_path / "again" / "b.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_rows_are_valid_trees_within_30_days() -> None:
    rows = list(generate_spans(3000, seed=1, now=NOW))
    ids = {r["id"] for r in rows}
    assert len(ids) == len(rows)
    roots = {r["id"] for r in rows if r["is_root"]}
    types = Counter(r["span_attributes"]["type"] for r in rows)
    assert set(types) == {"task", "llm", "tool", "score"}
    for row in rows:
        validate_row(row)
        created = datetime.fromisoformat(row["created"].replace("Z", "+00:00"))
        assert NOW - timedelta(days=30, minutes=1) <= created <= NOW + timedelta(minutes=1)
        if not row["is_root"]:
            assert row["span_parents"] == [row["root_span_id"]]
            assert row["root_span_id"] in roots or row["root_span_id"] not in ids  # last trace may be cut
    root_rows = [r for r in rows if r["is_root"]]
    assert all(set(r["scores"]) == {"Factuality", "helpfulness"} for r in root_rows)
    assert all({"topic", "model", "language", "facets"} <= set(r["metadata"]) for r in root_rows)


def test_planted_failure_patterns_are_visible() -> None:
    roots = [r for r in generate_spans(20000, seed=3, now=NOW) if r["is_root"]]

    def rate(rows, pred) -> float:
        return sum(1 for r in rows if pred(r)) / max(1, len(rows))

    mini_billing = [r for r in roots if r["metadata"]["model"] == "gpt-4o-mini" and r["metadata"]["topic"] == "billing"]
    other = [r for r in roots if r not in mini_billing]
    refused = lambda r: r["metadata"]["facets"]["issues"] == "refusal"  # noqa: E731
    assert rate(mini_billing, refused) > 0.2 and rate(other, refused) == 0
    intl = [r for r in roots if r["metadata"]["international"] and r["metadata"]["topic"] in ("shipping", "returns")]
    assert rate(intl, lambda r: r["error"] is not None) > 0.4
    de = [r["scores"]["Factuality"] for r in roots if r["metadata"]["language"] == "de"]
    en = [r["scores"]["Factuality"] for r in roots if r["metadata"]["language"] == "en"]
    assert sum(de) / len(de) < sum(en) / len(en) - 0.1
    json.dumps(roots[0])  # plain JSON values only


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path: Path, monkeypatch) -> None:
    import pytest

    import bt_flywheel.backends.synth as synth

    for name in ("out.jsonl", "out.jsonl.gz"):
        target = tmp_path / name
        write_jsonl(target, 50, seed=1, now=NOW)
        before = target.read_bytes()

        def broken(spans: int, **kwargs):
            yield from list(generate_spans(spans, **kwargs))[:20]
            raise KeyboardInterrupt

        monkeypatch.setattr(synth, "generate_spans", broken)
        with pytest.raises(KeyboardInterrupt):
            write_jsonl(target, 10_000, seed=2, now=NOW)
        monkeypatch.undo()
        assert target.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p for p in ("out.jsonl", "out.jsonl.gz") if (tmp_path / p).exists())
