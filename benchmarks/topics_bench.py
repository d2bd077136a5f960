"""Topics benchmark: preprocess + cluster + classify 100,000 traces, and facet summaries through a
model mocked at a fixed latency.

    python benchmarks/topics_bench.py [--quick]

Figures (ours vs a naive baseline measured in the same run):
- preprocessing: 100,000 traces (300,000 spans, the planted-intent generator of the tests) into
  bounded, redacted narratives (s), in a child process whose peak RSS is reported too;
- clustering: TF-IDF + LSA, k-means for k = 2..12 with the silhouette criterion on a seeded sample
  of 5,000 summaries, then every trace classified (s). Baseline: the same k-means fitted on all
  100,000 summaries (timed on 2 of the 11 k values, scaled to 11);
- facet summaries of 300 traces against a loopback OpenAI-compatible server that answers after
  50 ms: wall time at concurrency 16 vs 1, and the projection for 100,000 traces at 16.
The loopback server runs inside this process on 127.0.0.1; nothing touches the internet.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2]); sys.path.insert(0, sys.argv[2] + "/src")
import numpy as np
from threadpoolctl import threadpool_limits
import sklearn.cluster, sklearn.decomposition, sklearn.feature_extraction.text, sklearn.metrics  # imports are not timed
from tests.fakes.intents import planted_traces
from bt_flywheel.topics import cluster
from bt_flywheel.topics.narrative import build_narratives

n = int(sys.argv[1])
rows, truth = planted_traces(n, seed=5, noise=0.1, secrets=10)
rss_rows = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
narratives = build_narratives(rows)
t1 = time.perf_counter()
del rows
ids = [x.trace_id for x in narratives]
texts = [x.request for x in narratives]
topic_map = cluster.fit_topic_map(ids, texts, facet="Task", options=cluster.FitOptions(seed=0))
t_fit = time.perf_counter()
results = []
for start in range(0, len(texts), 20000):
    results += topic_map.classify(topic_map.vectorize(texts[start:start + 20000]))
t2 = time.perf_counter()
# baseline: k-means on every summary instead of the 5k sample (2 of the 11 k values, scaled)
vectors = topic_map.vectorize(texts)
b0 = time.perf_counter()
from sklearn.cluster import KMeans
with threadpool_limits(limits=1):
    for k in (2, 12):
        KMeans(n_clusters=k, n_init=3, random_state=0).fit(vectors)
baseline = (time.perf_counter() - b0) / 2 * 11
print(json.dumps({"preprocess": t1 - t0, "fit": t_fit - t1, "classify": t2 - t_fit, "baseline_fit": baseline,
                  "topics": len(topic_map.topics), "classified": len(results),
                  "rss_rows_mb": rss_rows, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _row(figure: str, ours: Any, baseline: Any = None, target: str = "report", *, lower_is_better: bool = True
         ) -> dict[str, Any]:
    ratio = None
    if isinstance(ours, float) and isinstance(baseline, float) and ours > 0 and baseline > 0:
        ratio = baseline / ours if lower_is_better else ours / baseline
    return {"figure": figure, "ours": ours, "baseline": baseline, "ratio": ratio, "target": target}


def bench_pipeline(n: int) -> list[dict[str, Any]]:
    child = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(REPO)], capture_output=True, text=True,
                           timeout=3600)
    if child.returncode != 0:
        raise SystemExit(f"topics child failed: {child.stderr.strip().splitlines()[-3:]}")
    got = json.loads(child.stdout.strip().splitlines()[-1])
    return [
        _row(f"preprocess {n:,} traces ({3 * n:,} spans) into redacted narratives (s)", got["preprocess"]),
        _row(f"fit topics: TF-IDF+LSA, k=2..12 by silhouette on a 5k seeded sample of {n:,} (s); baseline: "
             "the same k-means on all summaries (timed on 2 of 11 k, scaled)", got["fit"], got["baseline_fit"],
             ">= 2x"),
        _row(f"classify {n:,} traces to the nearest topic with a distance (s)", got["classify"]),
        _row(f"topics found / traces classified ({n:,} traces)", f"{got['topics']} / {got['classified']:,}"),
        _row(f"peak RSS, {n:,} traces generated + preprocessed + clustered (MB, subprocess; rows alone "
             f"{got['rss_rows_mb']:,.0f})", got["peak_mb"], None, "< 4000"),
    ]


def bench_model(n: int, latency: float = 0.05) -> list[dict[str, Any]]:
    from bt_flywheel.topics.narrative import build_narratives
    from bt_flywheel.topics.summarize import facet_named, llm_summaries
    from tests.fakes.intents import planted_traces, summarise
    from tests.fakes.loopback import FakeModelServer

    def judge(messages: list[dict]) -> dict:
        return {"expected": summarise(messages[-1]["content"]), "rationale": "bench"}

    narratives = build_narratives(planted_traces(n, seed=9)[0])
    facet = facet_named("Task")
    timings = {}
    with FakeModelServer(judge=judge, delay=latency) as server, tempfile.TemporaryDirectory() as tmp:
        for concurrency in (16, 1):
            start = time.perf_counter()
            done = llm_summaries(narratives, facet, model="bench", base_url=server.base_url, api_key=None,
                                 cache_path=Path(tmp) / f"cache-{concurrency}.jsonl", concurrency=concurrency)
            timings[concurrency] = time.perf_counter() - start
            assert len(done.texts) == n, done.failed
    projected = timings[16] / n * 100_000
    return [
        _row(f"facet summaries, {n} traces @{latency * 1000:.0f} ms/call, concurrency 16 vs 1 (s)",
             timings[16], timings[1], ">= 8x"),
        _row(f"facet summaries projected for 100,000 traces @{latency * 1000:.0f} ms/call, concurrency 16 (s)",
             projected),
    ]


def main(quick: bool = False) -> list[dict[str, Any]]:
    rows = bench_pipeline(5_000 if quick else 100_000)
    rows += bench_model(100 if quick else 300)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5k traces, 100 model calls")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_all import print_table

    print_table(main(quick=args.quick))
