"""Curation benchmark: select + label + split 100,000 candidates, and LLM labeling throughput.

    python benchmarks/curate_bench.py [--quick]

Figures (ours vs a naive baseline measured in the same run):
- curate + split of N candidates (score-balanced selection from an in-memory candidate list,
  row building, score labeler, stratified split): rows/s. Baseline: the same rows split by the
  common unstratified rule (hash(id) mod 5 == 0), which is cheaper but lets strata drift;
  its worst stratum deviation is printed next to ours (always <= 1 row).
- LLM labeling of 500 rows (100 with --quick) against a loopback OpenAI-compatible server that
  answers after 50 ms: wall time at concurrency 16 vs 1. Target: >= 12x (75% parallel efficiency).
The loopback server runs inside this process on 127.0.0.1; nothing touches the internet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bt_flywheel.curate.select import build_rows, select_score_balanced  # noqa: E402
from bt_flywheel.dataset.split import split_rows, stratum_counts, validation_count  # noqa: E402
from bt_flywheel.label.base import Rubric, ScoreLabeler, attach_label  # noqa: E402
from bt_flywheel.label.llm import ChatClient, LLMLabeler  # noqa: E402


def _candidates(n: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    light, full = [], {}
    for i in range(n):
        trace = f"trace-{i:07d}"
        score = 0.0 if i % 2 else 1.0
        light.append({"root_span_id": trace, "span_id": trace, "created": "2026-01-01T00:00:00Z", "score": score})
        full[trace] = {"root_span_id": trace, "span_id": trace, "created": "2026-01-01T00:00:00Z",
                       "input": {"message": f"message {i}"}, "output": {"reply": "r"},
                       "scores": {"resolution": score, "other": (i % 7) / 6}, "metadata": {"tier": i % 3}}
    return light, full


def _runner(light: list[dict[str, Any]], full: dict[str, dict[str, Any]]):
    """Stands in for sql.run_query: the bucket queries get the light rows, the fetch gets roots."""
    def run(query: str) -> list[dict[str, Any]]:
        if "<= 0.0" in query:
            return [r for r in light if r["score"] <= 0.0]
        if ">= 1.0" in query:
            return [r for r in light if r["score"] >= 1.0]
        ids = [part.split("'")[1] for part in query.split("IN (", 1)[1].split(")")[0].split(", ")]
        return [full[i] for i in ids if i in full]
    return run


def bench_curate(n: int) -> list[dict[str, Any]]:
    light, full = _candidates(n)
    run = _runner(light, full)
    start = time.perf_counter()
    selection = select_score_balanced(run, project="p", project_id="pid", score="resolution", lo=0.0, hi=1.0,
                                      per_bucket=n // 2, window_days=7)
    rows = build_rows(selection)
    labels = ScoreLabeler("other", 0.5).label(rows)
    for row in rows:
        attach_label(row, labels.labels[row["id"]])
    split_start = time.perf_counter()
    split_rows(rows)
    ours_split = time.perf_counter() - split_start
    ours = time.perf_counter() - start
    ours_dev = max(abs(s.off_by) for s in stratum_counts(rows))

    start = time.perf_counter()  # baseline: unstratified hash-mod split of the same rows
    naive: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        val = int(hashlib.sha256(row["id"].encode()).hexdigest(), 16) % 5 == 0
        key = (row["metadata"]["curation"]["bucket"], row["metadata"]["label"]["value"])
        naive[key][0] += 1
        naive[key][1] += val
    base_split = time.perf_counter() - start
    base_dev = max(abs(v - validation_count(k, 0.2)) for k, v in naive.values())
    return [
        {"figure": f"curate+split {len(rows):,} candidates (rows/s)", "ours": len(rows) / ours,
         "baseline": None, "ratio": None, "target": "report"},
        {"figure": "split step alone: stratified (ours) vs unstratified hash-mod (s)", "ours": ours_split,
         "baseline": base_split, "ratio": base_split / ours_split, "target": "report"},
        {"figure": "worst stratum deviation from round(n*0.2) (rows)", "ours": ours_dev, "baseline": base_dev,
         "ratio": None, "target": "ours <= 1"},
    ]


class _SlowOpenAI:
    def __init__(self, latency: float) -> None:
        self.calls = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    outer.calls += 1
                time.sleep(latency)
                body = json.dumps({"model": "bench", "choices": [{"message": {"content": '{"label": "pass"}'}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bench_llm(n: int, latency: float = 0.05) -> list[dict[str, Any]]:
    rubric = Rubric(version="bench-v1", text="pass or fail", labels=["pass", "fail"])
    rows = [{"id": f"row-{i:05d}", "input": {"message": f"m{i}"}, "metadata": {}} for i in range(n)]
    server = _SlowOpenAI(latency)
    times = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for concurrency in (1, 16):
                labeler = LLMLabeler(rubric, model="bench", client=ChatClient(base_url=server.url),
                                     cache_path=Path(tmp) / f"cache-{concurrency}.jsonl", concurrency=concurrency)
                start = time.perf_counter()
                run = labeler.label(rows)
                times[concurrency] = time.perf_counter() - start
                assert len(run.labels) == n, run.failed
    finally:
        server.close()
    speedup = times[1] / times[16]
    return [
        {"figure": f"llm labeling {n} rows @50ms, concurrency 16 (s)", "ours": times[16], "baseline": times[1],
         "ratio": speedup, "target": ">= 12x"},
        {"figure": f"llm labeling {n} rows @50ms, concurrency 16 (rows/s)", "ours": n / times[16],
         "baseline": n / times[1], "ratio": speedup, "target": "report"},
    ]


def main(quick: bool = False) -> list[dict[str, Any]]:
    rows = bench_curate(20_000 if quick else 100_000)
    rows += bench_llm(100 if quick else 500)
    return rows



if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k candidates, 100 llm rows")
    args = parser.parse_args()
    from run_all import print_table

    print_table(main(quick=args.quick))
