"""SQL benchmark: the local store vs a naive Python scan of the same JSONL, in one run.

Figures (1,000,000 spans; --quick: 100,000):
- avg Factuality by facet (metadata.topic) over the last 7 days (target: >= 20x the scan, < 1 s);
- a balanced-candidate pull (<= 0.5 and >= 0.8, ORDER BY RANDOM() LIMIT 50 each);
- ingest throughput (spans/s) and peak RSS of the DuckDB-native path (`ingest`) next to the
  row-by-row path it replaced (`ingest_rowwise`, every row through json.loads and validate_row),
  each in its own subprocess so the numbers are honest (target: >= 100k spans/s, < 1 GB), with
  the cores each kept busy (process CPU time / wall time: 2.0 is both cores of a 2-core machine);
- the store's size on disk next to the JSONL's.

Run: python benchmarks/sql_bench.py [--quick]
     python benchmarks/sql_bench.py --spans 10000000 --no-baseline   (the scale run of docs/scale.md)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = "bench"
AGG_SQL = ("SELECT metadata.topic AS facet, avg(scores.\"Factuality\") AS avg_factuality, count(*) AS n "
           f"FROM project_logs('{PROJECT}') WHERE created >= NOW() - INTERVAL 7 day AND is_root = true "
           "GROUP BY metadata.topic ORDER BY metadata.topic")
PULL_SQL = ("SELECT id, input, output, scores.\"Factuality\" FROM project_logs('{project}') "
            "WHERE scores.\"Factuality\" {op} {value} AND created >= NOW() - INTERVAL 7 day "
            "ORDER BY RANDOM() LIMIT 50")

_INGEST_CHILD = """
import json, resource, sys, time
from bt_flywheel.backends.ingest import ingest, ingest_rowwise
from bt_flywheel.backends.store import Store
load = ingest if sys.argv[4] == "native" else ingest_rowwise
start, cpu = time.perf_counter(), time.process_time()
with Store(sys.argv[2]) as store:
    result = load(store, sys.argv[1], project=sys.argv[3])
elapsed = time.perf_counter() - start
cores = (time.process_time() - cpu) / elapsed
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": result.rows, "seconds": elapsed, "peak_mb": peak_kb / 1024, "cores": cores}))
"""


def _ingest_in_child(jsonl: Path, store: Path, mode: str) -> dict[str, Any]:
    child = subprocess.run([sys.executable, "-c", _INGEST_CHILD, str(jsonl), str(store), PROJECT, mode],
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"{mode} ingest subprocess failed: {child.stderr.strip().splitlines()[-1:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"{mode} ingest: {result['seconds']:.1f}s, peak RSS {result['peak_mb']:.0f} MB, "
          f"{result['cores']:.2f} cores busy, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return result


def _best_of(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def _naive_aggregate(path: Path) -> dict[str, tuple[float, int]]:
    cutoff = datetime.now(UTC) - timedelta(days=7)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if not row.get("is_root"):
                continue
            if datetime.fromisoformat(row["created"].replace("Z", "+00:00")) < cutoff:
                continue
            facet = (row.get("metadata") or {}).get("topic")
            score = (row.get("scores") or {}).get("Factuality")
            acc = sums[facet]
            acc[1] += 1
            if score is not None:
                acc[0] += score
    return {k: (v[0] / v[1], v[1]) for k, v in sorted(sums.items())}


def _naive_pull(path: Path) -> tuple[list[dict], list[dict]]:
    cutoff = datetime.now(UTC) - timedelta(days=7)
    low, high = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            score = (row.get("scores") or {}).get("Factuality")
            if score is None or datetime.fromisoformat(row["created"].replace("Z", "+00:00")) < cutoff:
                continue
            if score <= 0.5:
                low.append(row)
            elif score >= 0.8:
                high.append(row)
    rng = random.Random()
    return rng.sample(low, min(50, len(low))), rng.sample(high, min(50, len(high)))


def _row(figure: str, ours: float | None, baseline: float | None, target: str, *, higher_is_better: bool = False
         ) -> dict[str, Any]:
    ratio = None
    if ours and baseline:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return {"figure": figure, "ours": ours, "baseline": baseline, "ratio": ratio, "target": target}


def main(quick: bool = False) -> list[dict[str, Any]]:
    return run(spans=100_000 if quick else 1_000_000)


def run(spans: int, baseline: bool = True, workdir: str | None = None, jsonl_in: str | None = None
        ) -> list[dict[str, Any]]:
    """The figures above for `spans` spans; without `baseline` the row-by-row ingest and the naive
    scans are skipped (the 10M scale run); `jsonl_in` reuses a file `flywheel synth` wrote."""
    from bt_flywheel.backends.sql import run_query
    from bt_flywheel.backends.synth import write_jsonl

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sql-bench-", dir=workdir) as tmp:
        base = Path(tmp)
        jsonl = Path(jsonl_in) if jsonl_in else base / "spans.jsonl"
        store = base / "store.duckdb"
        start = time.perf_counter()
        if not jsonl_in:
            write_jsonl(jsonl, spans, seed=42)
        gen_seconds = time.perf_counter() - start
        print(f"generated {spans:,} spans in {gen_seconds:.1f}s ({jsonl.stat().st_size / 1e6:.0f} MB JSONL)",
              file=sys.stderr)

        naive = _ingest_in_child(jsonl, base / "rowwise.duckdb", "rowwise") if baseline else None
        if naive:
            (base / "rowwise.duckdb").unlink()
            assert naive["rows"] == spans, naive
        ingest = _ingest_in_child(jsonl, store, "native")
        assert ingest["rows"] == spans, ingest

        ours_agg, result = _best_of(lambda: run_query(store, AGG_SQL))
        got = {r["facet"]: (r["avg_factuality"], r["n"]) for r in result.rows}
        base_agg = None
        if baseline:
            base_agg, expected = _best_of(lambda: _naive_aggregate(jsonl), repeat=1)
            assert got.keys() == expected.keys() and all(
                got[k][1] == expected[k][1] and abs(got[k][0] - expected[k][0]) < 1e-9 for k in got), (got, expected)

        def pull() -> tuple[list, list]:
            return (run_query(store, PULL_SQL.format(project=PROJECT, op="<=", value=0.5)).rows,
                    run_query(store, PULL_SQL.format(project=PROJECT, op=">=", value=0.8)).rows)

        ours_pull, (low, high) = _best_of(pull)
        base_pull, (nlow, nhigh) = _best_of(lambda: _naive_pull(jsonl), repeat=1) if baseline else (None, (low, high))
        assert len(low) == len(nlow) and len(high) == len(nhigh)
        assert all(r["Factuality"] <= 0.5 for r in low) and all(r["Factuality"] >= 0.8 for r in high)

        store_mb = store.stat().st_size / 1e6
        jsonl_mb = jsonl.stat().st_size / 1e6
        rows.append(_row(f"avg score by facet, last 7 days, {spans:,} spans (s)", ours_agg, base_agg,
                         ">=20x, <1 s"))
        rows.append(_row(f"balanced candidate pull 2x50, {spans:,} spans (s)", ours_pull, base_pull, ">=20x"))
        rows.append(_row(f"ingest throughput, {spans:,} spans: DuckDB-native vs row-by-row (spans/s)",
                         spans / ingest["seconds"], naive and spans / naive["seconds"], ">= 100k/s",
                         higher_is_better=True))
        rows.append(_row("ingest peak RSS, native vs row-by-row (MB, subprocess)", ingest["peak_mb"],
                         naive and naive["peak_mb"], "< 1000"))
        rows.append(_row("ingest cores kept busy, native vs row-by-row (CPU s / wall s)", ingest["cores"],
                         naive and naive["cores"], "2 on 2 cores", higher_is_better=True))
        rows.append(_row("store size on disk vs JSONL (MB)", store_mb, jsonl_mb, "smaller than JSONL"))
    return rows



if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 spans instead of 1,000,000")
    parser.add_argument("--spans", type=int, help="this many spans (e.g. 10000000 for the scale run)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the row-by-row ingest")
    parser.add_argument("--workdir", help="where the JSONL and the store go (default: the temp dir)")
    parser.add_argument("--jsonl", help="reuse this `flywheel synth` JSONL (seed 42) instead of writing one")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    from run_all import print_table

    print_table(run(args.spans or (100_000 if args.quick else 1_000_000), baseline=not args.no_baseline,
                    workdir=args.workdir, jsonl_in=args.jsonl))
