"""Experiments as the Braintrust SDK logs them (BRAINTRUST.md §2), ingested from JSONL, compare
like `flywheel eval` runs (issue 15, "Their artefacts").

The rows are built exactly in the SDK's shape: per (case, trial) a root `eval` span WITHOUT
scores, split into a row and an `_is_merge` row (output and end time arrive later), with
`origin` pointing at the dataset record; a `task` child; one `score` child per scorer whose
`input` is {input, expected, metadata, output, id, tags} and `output` {"score": x}; no trial
index anywhere. The lines are shuffled and the two experiments list records in different orders,
so only pairing by `origin.id` gives the right answer. `flywheel compare` must then report what
SciPy computes on the same rows (per-record means over trials, paired t).
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from bt_flywheel.backends.store import Store

RECORDS = [f"rec-{i:03d}" for i in range(60)]
TRIALS = 2


def _sdk_rows(name: str, scores: dict[str, dict[str, list[float]]], *, origin: bool, seed: int) -> list[dict]:
    rng = random.Random(seed)
    experiment_id = str(uuid.UUID(int=rng.getrandbits(128)))
    rows, merges, clock = [], [], 1767225600.0
    for record in rng.sample(RECORDS, len(RECORDS)):
        for trial in range(TRIALS):
            clock += 1.0
            root = str(uuid.UUID(int=rng.getrandbits(128)))
            created = f"2026-01-01T00:{int(clock) // 60 % 60:02d}:{int(clock) % 60:02d}Z"
            question = {"question": f"q for {record}"}
            common = {"experiment_id": experiment_id, "root_span_id": root, "created": created}
            first = {"id": root, "span_id": root, "span_parents": None, **common,
                     "context": {"caller_functionname": "eval", "caller_filename": "eval_bot.py"},
                     "metrics": {"start": clock}, "span_attributes": {"name": "eval", "type": "eval",
                                                                       "exec_counter": len(rows)},
                     "input": question, "expected": "yes", "metadata": {"model": name}, "tags": None}
            if origin:
                first["origin"] = {"object_type": "dataset", "object_id": "ds-0001", "id": record,
                                   "_xact_id": "1000", "created": "2025-12-01T00:00:00Z"}
            output = f"answer {record} {trial}"
            rows.append(first)
            task = str(uuid.UUID(int=rng.getrandbits(128)))
            rows.append({"id": task, "span_id": task, "span_parents": [root], **common, "input": question,
                         "output": output, "metrics": {"start": clock + 0.1, "end": clock + 0.5},
                         "span_attributes": {"name": "task", "type": "task", "exec_counter": len(rows)}})
            for scorer, per_record in scores.items():
                span = str(uuid.UUID(int=rng.getrandbits(128)))
                value = per_record[record][trial]
                rows.append({"id": span, "span_id": span, "span_parents": [root], **common,
                             "input": {"input": question, "expected": "yes", "metadata": {"model": name},
                                       "output": output, "id": None if origin else record, "tags": None},
                             "output": {"score": value}, "scores": {scorer: value}, "metadata": {},
                             "metrics": {"start": clock + 0.6, "end": clock + 0.7},
                             "span_attributes": {"name": scorer, "type": "score", "purpose": "scorer",
                                                 "exec_counter": len(rows)}})
            merges.append({"id": root, "_is_merge": True, **common, "output": output,
                           "metrics": {"end": clock + 0.9}})
    return rows + merges    # the root's output and end time arrive in a later batch, as `_is_merge` rows


def _scores(seed: int, lift: float) -> dict[str, dict[str, list[float]]]:
    rng = np.random.default_rng(seed)
    p = np.linspace(0.2, 0.8, len(RECORDS))
    return {"Correct": {r: (rng.random(TRIALS) < min(1.0, p[i] + lift)).astype(float).tolist()
                        for i, r in enumerate(RECORDS)},
            "Quality": {r: np.clip(p[i] + lift / 2 + rng.normal(0, 0.05, TRIALS), 0, 1).round(4).tolist()
                        for i, r in enumerate(RECORDS)}}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row_means(scores: dict[str, list[float]]) -> np.ndarray:
    return np.array([np.mean(scores[r]) for r in sorted(scores)])


@pytest.mark.parametrize("origin", [True, False], ids=["origin.id", "evalcase-id"])
def test_sdk_shaped_experiments_ingested_from_jsonl_compare_like_scipy(tmp_path: Path, run_cli, origin: bool) -> None:
    base, cand = _scores(1, 0.0), _scores(2, 0.2)
    _write(tmp_path / "baseline.jsonl", _sdk_rows("base", base, origin=origin, seed=3))
    _write(tmp_path / "candidate.jsonl", _sdk_rows("cand", cand, origin=origin, seed=4))
    for name in ("baseline", "candidate"):
        code, out, err = run_cli("ingest", f"{name}.jsonl", "--project", "bot", "--experiment", name, "--json")
        assert code == 0, err
        assert json.loads(out)["inserted"] == len(RECORDS) * TRIALS * 4
    code, out, err = run_cli("compare", "baseline", "candidate", "--target", "Correct", "--guard", "Quality",
                             "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["experiments"]["candidate"]["rows"] == len(RECORDS)
    for score in doc["scores"]:
        d = _row_means(cand[score["name"]]) - _row_means(base[score["name"]])
        ref = st.ttest_1samp(d, 0.0)
        ci = ref.confidence_interval(0.95)
        assert score["n"] == len(RECORDS)
        assert score["effect"] == pytest.approx(d.mean(), abs=1e-9)
        assert score["ci"] == pytest.approx([ci.low, ci.high], abs=1e-6)
        assert score["p"] == pytest.approx(ref.pvalue, abs=1e-6)

    with Store(".flywheel/store.duckdb", read_only=True) as store:
        exp = store.find_object("experiment", "baseline")
        roots = [r for r in store.iter_rows("experiment", exp) if r["span_attributes"]["type"] == "eval"]
    assert len(roots) == len(RECORDS) * TRIALS
    for root in roots:
        record = root["metadata"]["dataset_row_id"]
        trial = root["metadata"]["trial"]
        assert root["scores"] == {"Correct": base["Correct"][record][trial], "Quality": base["Quality"][record][trial]}
        assert root["output"].startswith(f"answer {record} ")     # the _is_merge row was merged in
        assert root["metrics"]["end"] > root["metrics"]["start"]
    assert sorted((r["metadata"]["dataset_row_id"], r["metadata"]["trial"]) for r in roots) == sorted(
        (rec, t) for rec in RECORDS for t in range(TRIALS))

    # idempotent: the same files again change nothing
    code, out, err = run_cli("ingest", "baseline.jsonl", "--project", "bot", "--experiment", "baseline", "--json")
    report = json.loads(out)
    assert (report["inserted"], report["updated"], report["unchanged"]) == (0, 0, len(RECORDS) * TRIALS * 4)
