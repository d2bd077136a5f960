"""Eval runner concurrency: 200 rows whose task waits 50 ms (an LLM call's latency), run through
`bt_flywheel.evals.runner.run_eval` (the braintrust SDK's runner, spans captured into a temp local
store) at max_concurrency 16 (ours) vs 1 (the naive sequential baseline), in the same run.

Usage: python benchmarks/eval_bench.py [--quick]   (--quick uses 60 rows)
Prints: figure | ours | baseline | ratio | target
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path

EVAL_FILE = '''\
import time

from braintrust import Eval


def task(input):
    time.sleep(0.05)  # stands in for a 50 ms model call
    return input["n"] * 2


def doubled(input, output):
    return 1 if output == input["n"] * 2 else 0


Eval("eval-bench", data=lambda: [{{"input": {{"n": i}}}} for i in range({rows})], task=task, scores=[doubled])
'''


def _run(folder: Path, rows: int, concurrency: int) -> float:
    from bt_flywheel.evals.runner import run_eval

    path = folder / "eval_bench_task.py"
    path.write_text(textwrap.dedent(EVAL_FILE.format(rows=rows)))
    start = time.perf_counter()
    result = run_eval(path, max_concurrency=concurrency, store=folder / "store.duckdb", silent=True,
                      name=f"c{concurrency}")
    elapsed = time.perf_counter() - start
    if result.errors or result.roots != rows or result.scores.get("doubled") != 1.0:
        raise RuntimeError(f"benchmark eval went wrong: {result.as_dict()}")
    return elapsed


def main(quick: bool = False) -> list[dict]:
    rows = 60 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _run(folder, 4, 4)  # warm-up: imports, thread pool, store creation
        ours = _run(folder, rows, 16)
        baseline = _run(folder, rows, 1)
    return [{
        "figure": f"eval wall time, {rows} rows x 50 ms task, max_concurrency 16 vs 1 (s)",
        "ours": round(ours, 3), "baseline": round(baseline, 3),
        "ratio": round(baseline / ours, 1), "target": ">= 12x",
    }]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 rows instead of 200")
    args = parser.parse_args()
    from run_all import print_table

    print_table(main(quick=args.quick))
    sys.exit(0)
