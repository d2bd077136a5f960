"""Every `bt sql` recipe in seeds 000 and 003 (placeholders filled) and every DESIGN.md §5 construct
runs unchanged on the local backend and returns what a Python reference computation over the
same JSONL returns."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.store import Store
from bt_flywheel.backends.synth import generate_spans
from bt_flywheel.cli import main
from bt_flywheel.core.errors import InputError

PROJECT = "support-bot"


def _experiment_rows(seed: int, cases: int = 30) -> list[dict[str, Any]]:
    """Experiment spans in the shape DESIGN.md §4 describes (root eval, task, score spans)."""
    rng = random.Random(seed)
    rows = []
    start = datetime(2026, 1, 5, tzinfo=UTC)
    for facet in ("issues", "sentiment"):
        for i in range(cases):
            root = f"{facet}-{seed}-{i}"
            expected = rng.choice(["yes", "no"])
            output = expected if rng.random() < 0.75 else ("no" if expected == "yes" else "yes")
            match = 1 if output == expected else 0
            recall = match if expected == "yes" else None
            specificity = match if expected == "no" else None
            factuality = round(rng.random(), 3)
            quality = round(rng.random(), 2)
            metadata = {"facet_name": facet, "dataset_row_id": f"row-{facet}-{i}",
                        "split": "validation" if i % 5 == 0 else "train"}
            case_input = {"conversation": f"case {i} about {facet}", "facet_name": facet}
            created = (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
            scores = {"binary_decision_match": match, "positive_recall": recall,
                      "negative_specificity": specificity, "Factuality": factuality, "Response Quality": quality}
            rows.append({"id": root, "span_id": root, "root_span_id": root, "span_parents": None, "is_root": True,
                         "created": created, "input": case_input, "expected": expected, "output": output,
                         "metadata": {**metadata, "trial": 0}, "scores": scores, "tags": [facet],
                         "span_attributes": {"name": "eval", "type": "eval"}})
            rows.append({"id": root + "-task", "span_id": root + "-task", "root_span_id": root,
                         "span_parents": [root], "created": created, "input": case_input, "output": output,
                         "span_attributes": {"name": "task", "type": "task"}})
            scorer_input = {"input": case_input, "expected": expected, "metadata": metadata, "output": output,
                            "id": metadata["dataset_row_id"], "tags": [facet]}
            binary = {k: scores[k] for k in ("binary_decision_match", "positive_recall", "negative_specificity")}
            for name, out, sc in (
                ("binary_classification_scores", {k: {"score": v} for k, v in binary.items()}, binary),
                ("Factuality", {"score": factuality}, {"Factuality": factuality}),
                ("Response Quality", {"score": quality}, {"Response Quality": quality}),
            ):
                sid = f"{root}-{name}"
                rows.append({"id": sid, "span_id": sid, "root_span_id": root, "span_parents": [root],
                             "created": created, "input": scorer_input, "output": out, "scores": sc,
                             "span_attributes": {"name": name, "type": "score", "purpose": "scorer"}})
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("sqlworld")
    store_path = base / "store.duckdb"
    logs = list(generate_spans(2400, seed=11))
    baseline = _experiment_rows(1)
    candidate = _experiment_rows(2)
    dataset = [{"id": f"d{i}", "input": {"q": f"question {i}"}, "expected": {"label": i % 2},
                "metadata": {"split": "train" if i % 4 else "validation"}, "created": "2026-01-01T00:00:00Z"}
               for i in range(20)]
    for name, rows in (("logs", logs), ("baseline", baseline), ("candidate", candidate), ("golden", dataset)):
        (base / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--store", str(store_path), "--project", PROJECT, "--quiet"]
    assert main(["ingest", str(base / "logs.jsonl"), *argv]) == 0
    assert main(["ingest", str(base / "baseline.jsonl"), "--experiment", "baseline", *argv]) == 0
    assert main(["ingest", str(base / "candidate.jsonl"), "--experiment", "candidate", *argv]) == 0
    assert main(["ingest", str(base / "golden.jsonl"), "--dataset", "golden", *argv]) == 0
    with Store(store_path, read_only=True) as store:
        ids = {"project": store.find_project(PROJECT), "baseline": store.find_object("experiment", "baseline"),
               "candidate": store.find_object("experiment", "candidate"),
               "golden": store.find_object("dataset", "golden")}
    # the recipes' queries share one sandboxed open of the store, as a command running many queries does
    with Store(store_path, read_only=True, sandboxed=True) as reader:
        yield {"store": store_path, "reader": reader, "logs": logs, "baseline": baseline, "candidate": candidate,
               "dataset": dataset, "ids": ids}


def q(world: dict[str, Any], sql: str, **kw: Any) -> list[dict[str, Any]]:
    return run_query(world["reader"], sql, **kw).rows


def get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def created(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["created"].replace("Z", "+00:00"))


def within(rows: list[dict[str, Any]], days: float) -> list[dict[str, Any]]:
    cutoff = datetime.now(UTC) - timedelta(days=days)
    return [r for r in rows if created(r) >= cutoff]


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)


# --- seed 000: facet-optimizer recipes -------------------------------------------------------

def test_seed000_per_facet_binary_metrics(world) -> None:
    rows = q(world, f"""SELECT input.metadata.facet_name as facet,
          avg(scores.binary_decision_match) as binary_match,
          avg(scores.positive_recall) as positive_recall,
          avg(scores.negative_specificity) as negative_specificity,
          count(*) as n
   FROM experiment('{world['ids']['baseline']}')
   WHERE span_attributes.name = 'binary_classification_scores'
   GROUP BY input.metadata.facet_name
   ORDER BY input.metadata.facet_name""")
    spans = [r for r in world["baseline"] if get(r, "span_attributes.name") == "binary_classification_scores"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in spans:
        groups[get(r, "input.metadata.facet_name")].append(r)
    expected = []
    for facet in sorted(groups):
        def avg(key: str, items=groups[facet]) -> float | None:
            values = [r["scores"][key] for r in items if r["scores"][key] is not None]
            return mean(values) if values else None
        expected.append({"facet": facet, "binary_match": avg("binary_decision_match"),
                         "positive_recall": avg("positive_recall"),
                         "negative_specificity": avg("negative_specificity"), "n": len(groups[facet])})
    assert [r["facet"] for r in rows] == [e["facet"] for e in expected] == ["issues", "sentiment"]
    for got, want in zip(rows, expected, strict=True):
        assert got["n"] == want["n"]
        for key in ("binary_match", "positive_recall", "negative_specificity"):
            assert close(got[key], want[key]), key


def test_seed000_factuality_by_facet(world) -> None:
    rows = q(world, f"""SELECT input.metadata.facet_name as facet,
          avg(output.score) as factuality,
          count(*) as n
   FROM experiment('{world['ids']['baseline']}')
   WHERE span_attributes.name = 'Factuality'
   GROUP BY input.metadata.facet_name
   ORDER BY input.metadata.facet_name""")
    spans = [r for r in world["baseline"] if get(r, "span_attributes.name") == "Factuality"]
    want = {}
    for facet in ("issues", "sentiment"):
        values = [r["output"]["score"] for r in spans if get(r, "input.metadata.facet_name") == facet]
        want[facet] = (mean(values), len(values))
    assert [(r["facet"], r["n"]) for r in rows] == [(f, want[f][1]) for f in sorted(want)]
    assert all(close(r["factuality"], want[r["facet"]][0]) for r in rows)


def test_seed000_failed_rows_for_one_scorer(world) -> None:
    rows = q(world, f"""SELECT input.metadata.dataset_row_id as row_id,
          input.metadata.split as split,
          input.expected as expected,
          input.output as output
   FROM experiment('{world['ids']['baseline']}')
   WHERE span_attributes.name = 'binary_classification_scores'
     AND input.metadata.facet_name = 'issues'
     AND scores.binary_decision_match = 0
   LIMIT 20""")
    want = [{"row_id": get(r, "input.metadata.dataset_row_id"), "split": get(r, "input.metadata.split"),
             "expected": get(r, "input.expected"), "output": get(r, "input.output")}
            for r in world["baseline"]
            if get(r, "span_attributes.name") == "binary_classification_scores"
            and get(r, "input.metadata.facet_name") == "issues" and r["scores"]["binary_decision_match"] == 0]
    assert 0 < len(want) < 20
    key = lambda r: r["row_id"]  # noqa: E731
    assert sorted(rows, key=key) == sorted(want, key=key)


# --- seed 003: bt-flywheel skill recipes -----------------------------------------------------

@pytest.mark.parametrize("days", [1, 7, 30])
def test_seed003_schema_introspection(world, days: int) -> None:
    pid = world["ids"]["project"]
    rows = q(world, f"SELECT * FROM project_logs('{pid}') WHERE is_root = true AND created >= NOW() - "
                    f"INTERVAL {days} day LIMIT 1")
    candidates = {r["id"]: r for r in within(world["logs"], days) if r["is_root"]}
    assert len(rows) == 1 and rows[0]["id"] in candidates
    original = candidates[rows[0]["id"]]
    for key in ("input", "output", "metadata", "scores", "metrics", "span_attributes", "tags", "span_parents",
                "error", "root_span_id", "is_root"):
        assert rows[0][key] == original[key], key
    assert created(rows[0]) == created(original)


@pytest.mark.parametrize("op,threshold", [("<=", 0.5), (">=", 0.8)])
def test_seed003_balanced_candidates(world, op: str, threshold: float) -> None:
    pid = world["ids"]["project"]
    rows = q(world, f"""SELECT id, input, output, scores."Factuality" FROM project_logs('{pid}')
WHERE scores."Factuality" {op} {threshold} AND created >= NOW() - INTERVAL 7 day
ORDER BY RANDOM() LIMIT 50""")
    test = (lambda v: v <= threshold) if op == "<=" else (lambda v: v >= threshold)
    pool = {r["id"]: r for r in within(world["logs"], 7)
            if (r.get("scores") or {}).get("Factuality") is not None and test(r["scores"]["Factuality"])}
    assert len(rows) == min(50, len(pool)) and len(pool) > 0
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        original = pool[row["id"]]
        assert row["input"] == original["input"] and row["output"] == original["output"]
        assert row["Factuality"] == original["scores"]["Factuality"]


@pytest.mark.parametrize("which", ["candidate", "baseline"])
def test_seed003_experiment_avg_min(world, which: str) -> None:
    rows = q(world, f"""SELECT AVG(scores."Factuality") AS avg, MIN(scores."Factuality") AS min """
                    f"""FROM experiment('{world['ids'][which]}')""")
    values = [r["scores"]["Factuality"] for r in world[which] if (r.get("scores") or {}).get("Factuality") is not None]
    assert close(rows[0]["avg"], mean(values)) and close(rows[0]["min"], min(values))


def test_seed003_experiment_rows_below_threshold(world) -> None:
    rows = q(world, f"""SELECT id, scores."Factuality" FROM experiment('{world['ids']['candidate']}') """
                    """WHERE scores."Factuality" < 0.5""")
    want = {(r["id"], r["scores"]["Factuality"]) for r in world["candidate"]
            if (r.get("scores") or {}).get("Factuality") is not None and r["scores"]["Factuality"] < 0.5}
    assert {(r["id"], r["Factuality"]) for r in rows} == want and want


# --- DESIGN.md §5 constructs -----------------------------------------------------------------

def test_sources_by_id_or_name_and_several_experiments(world) -> None:
    window = "WHERE created >= NOW() - INTERVAL 30 day"
    by_name = q(world, f"SELECT count(*) AS n FROM project_logs('{PROJECT}') {window}")
    by_id = q(world, f"SELECT count(*) AS n FROM project_logs('{world['ids']['project']}') {window}")
    assert by_name == by_id == [{"n": len(within(world["logs"], 30))}]
    assert q(world, "SELECT count(*) AS n FROM experiment('baseline')") == [{"n": len(world["baseline"])}]
    both = q(world, f"SELECT count(*) AS n FROM experiment('{world['ids']['baseline']}', 'candidate')")
    assert both == [{"n": len(world["baseline"]) + len(world["candidate"])}]
    rows = q(world, "SELECT id, expected, metadata.split AS split FROM dataset('golden') WHERE metadata.split = "
                    "'validation' ORDER BY id")
    want = sorted((r for r in world["dataset"] if r["metadata"]["split"] == "validation"), key=lambda r: r["id"])
    assert rows == [{"id": r["id"], "expected": r["expected"], "split": "validation"} for r in want]
    assert q(world, f"SELECT count(*) AS n FROM dataset('{world['ids']['golden']}')") == [{"n": 20}]
    assert q(world, "SELECT count(*) AS n FROM logs WHERE created >= NOW() - INTERVAL 30 day",
             project=PROJECT) == by_name


def test_interval_spellings_agree(world) -> None:
    a = q(world, f"SELECT count(*) AS n FROM project_logs('{PROJECT}') WHERE created >= NOW() - INTERVAL 7 day")
    b = q(world, f"SELECT count(*) AS n FROM project_logs('{PROJECT}') WHERE created > now() - interval '7 days'")
    assert a == b == [{"n": len(within(world["logs"], 7))}]


def test_group_by_having_order_by_path_and_limit(world) -> None:
    rows = q(world, f"""SELECT metadata.model AS model, metadata.language AS language,
        avg(scores.Factuality) AS factuality, count(*) AS n
    FROM project_logs('{PROJECT}') WHERE created >= NOW() - INTERVAL 30 day AND is_root = true
    GROUP BY metadata.model, metadata.language HAVING count(*) >= 20 ORDER BY factuality ASC LIMIT 3""")
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in within(world["logs"], 30):
        if r["is_root"]:
            groups[(r["metadata"]["model"], r["metadata"]["language"])].append(r["scores"]["Factuality"])
    want = sorted(((k, mean(v), len(v)) for k, v in groups.items() if len(v) >= 20), key=lambda t: t[1])[:3]
    assert [(r["model"], r["language"], r["n"]) for r in rows] == [(k[0], k[1], n) for k, _, n in want]
    assert all(close(r["factuality"], m) for r, (_, m, _) in zip(rows, want, strict=True))
    # the planted pattern: German conversations score lowest on Factuality
    assert rows[0]["language"] == "de"


def test_order_by_numeric_path_desc(world) -> None:
    rows = q(world, f"""SELECT id, scores."Factuality" AS f FROM project_logs('{PROJECT}')
        WHERE created >= NOW() - INTERVAL 30 day AND is_root ORDER BY scores."Factuality" DESC, id LIMIT 5""")
    want = sorted(((r["scores"]["Factuality"], r["id"]) for r in within(world["logs"], 30) if r["is_root"]),
                  key=lambda t: (-t[0], t[1]))[:5]
    assert [(r["f"], r["id"]) for r in rows] == want


def _tokens(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            out |= _tokens(v)
    elif isinstance(value, list):
        for v in value:
            out |= _tokens(v)
    elif value is not None:
        text = value if isinstance(value, str) else json.dumps(value)
        out |= set(re.findall(r"[a-z0-9]+", text.lower()))
    return out


def test_search_and_match_are_token_matches(world) -> None:
    rows = q(world, f"SELECT id FROM project_logs('{PROJECT}') WHERE created >= NOW() - INTERVAL 30 day "
                    "AND search('Refund')")
    want = {r["id"] for r in within(world["logs"], 30)
            if "refund" in _tokens(r["input"]) | _tokens(r["output"]) | _tokens(r["metadata"])}
    assert {r["id"] for r in rows} == want and want
    rows = q(world, f"SELECT id FROM project_logs('{PROJECT}') WHERE created >= NOW() - INTERVAL 30 day "
                    "AND output MATCH 'can''t help'")
    want = {r["id"] for r in within(world["logs"], 30) if {"can", "t", "help"} <= _tokens(r["output"])}
    assert {r["id"] for r in rows} == want and want


def test_like_ilike_in_not_in_and_nested_paths(world) -> None:
    base = f"SELECT id FROM project_logs('{PROJECT}') WHERE created >= NOW() - INTERVAL 30 day AND is_root AND "
    recent = [r for r in within(world["logs"], 30) if r["is_root"]]
    cases = {
        "output.content ILIKE '%SORRY%'": lambda r: "sorry" in r["output"]["content"].lower(),
        "output.content LIKE 'I''m sorry%'": lambda r: r["output"]["content"].startswith("I'm sorry"),
        "metadata.topic IN ('billing', 'shipping')": lambda r: r["metadata"]["topic"] in ("billing", "shipping"),
        "metadata.topic NOT IN ('billing', 'shipping')": lambda r: r["metadata"]["topic"] not in ("billing", "shipping"),
        "metadata.facets.issues = 'refusal'": lambda r: r["metadata"]["facets"]["issues"] == "refusal",
        "metadata.international = true": lambda r: r["metadata"]["international"] is True,
        "metrics.tokens > 800": lambda r: r["metrics"]["tokens"] > 800,
        "error IS NOT NULL": lambda r: r["error"] is not None,
        "scores.helpfulness = 0 AND metadata.model = 'gpt-4o-mini'":
            lambda r: r["scores"]["helpfulness"] == 0 and r["metadata"]["model"] == "gpt-4o-mini",
    }
    for condition, predicate in cases.items():
        got = {r["id"] for r in q(world, base + condition)}
        want = {r["id"] for r in recent if predicate(r)}
        assert got == want and want, condition


def test_traces_shape_returns_whole_traces(world) -> None:
    rows = q(world, f"SELECT id FROM project_logs('{PROJECT}', shape => 'traces') WHERE created >= NOW() - "
                    "INTERVAL 30 day AND span_attributes.name = 'lookup_order' AND error IS NOT NULL")
    roots = {r["root_span_id"] for r in within(world["logs"], 30)
             if r["span_attributes"]["name"] == "lookup_order" and r["error"] is not None}
    want = {r["id"] for r in world["logs"] if r["root_span_id"] in roots}
    assert {r["id"] for r in rows} == want and len(want) > len(roots)


def test_derived_table_subquery(world) -> None:
    rows = q(world, f"""SELECT topic, count(*) AS n FROM (
        SELECT metadata.topic AS topic FROM project_logs('{PROJECT}')
        WHERE created >= NOW() - INTERVAL 30 day AND is_root) AS t GROUP BY topic ORDER BY topic""")
    counts: dict[str, int] = defaultdict(int)
    for r in within(world["logs"], 30):
        if r["is_root"]:
            counts[r["metadata"]["topic"]] += 1
    assert rows == [{"topic": k, "n": counts[k]} for k in sorted(counts)]


def test_lint_blocks_unbounded_project_logs(world) -> None:
    for sql in (f"SELECT count(*) FROM project_logs('{PROJECT}')",
                f"SELECT id FROM project_logs('{PROJECT}') WHERE is_root",
                f"SELECT id FROM project_logs('{PROJECT}') WHERE created > NOW() - INTERVAL 1 day OR is_root"):
        with pytest.raises(InputError) as info:
            run_query(world["reader"], sql)
        assert "Query blocked due to lint failures" in str(info.value)
        assert ("No filters available for segment elimination. Add a range filter on created, _xact_id, or "
                "_pagination_key, or scope to a specific root_span_id or id.") in str(info.value)
    forced = q(world, f"SELECT count(*) AS n FROM project_logs('{PROJECT}')", force_ignore_linter=True)
    assert forced == [{"n": len(world["logs"])}]
    root = world["logs"][0]["root_span_id"]
    by_trace = q(world, f"SELECT id FROM project_logs('{PROJECT}') WHERE root_span_id = '{root}'")
    assert {r["id"] for r in by_trace} == {r["id"] for r in world["logs"] if r["root_span_id"] == root}
    # experiments and datasets are not linted (Braintrust's rule is about project logs)
    assert q(world, "SELECT count(*) AS n FROM experiment('baseline')")[0]["n"] > 0


def test_unknown_objects_are_named(world) -> None:
    with pytest.raises(InputError, match=r"experiment\('nope'\): no experiment with this id or name"):
        run_query(world["reader"], "SELECT id FROM experiment('nope')")
    with pytest.raises(InputError, match=r"unknown field `no_such_column`"):
        run_query(world["store"], "SELECT no_such_column FROM experiment('baseline')")


def test_cli_output_formats(world, run_cli) -> None:
    store = str(world["store"])
    sql = ("SELECT metadata.facet_name AS facet, count(*) AS n, max(created) AS last FROM experiment('baseline') "
           "WHERE is_root GROUP BY 1 ORDER BY 1")
    code, out, err = run_cli("sql", sql, "--store", store, "--json")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    doc = json.loads(out)
    assert list(doc) == ["data", "schema", "cursor"] and doc["cursor"] is None
    assert doc["data"] == [{"facet": "issues", "last": "2026-01-05T00:29:00Z", "n": 30},
                           {"facet": "sentiment", "last": "2026-01-05T00:29:00Z", "n": 30}]
    assert doc["schema"]["type"] == "array"
    assert list(doc["schema"]["items"]["properties"]) == ["facet", "n", "last"]
    assert doc["schema"]["items"]["properties"]["n"] == {"type": "integer"}
    code, out, _ = run_cli("sql", sql, "--store", store)
    assert out.splitlines()[0].startswith("+--") and "| facet     | n  | last" in out
    code, out, _ = run_cli("sql", sql, "--store", store, "--csv")
    assert out.splitlines()[0] == "facet,n,last"
    code, out, _ = run_cli("sql", sql, "--store", store, "--jsonl")
    assert json.loads(out.splitlines()[1])["facet"] == "sentiment"
    code, out, _ = run_cli("sql", "SELECT id FROM experiment('baseline') WHERE id = 'none'", "--store", store)
    assert code == 0 and out.strip() == "(no rows)"
    code, out, err = run_cli("sql", f"SELECT id FROM project_logs('{PROJECT}')", "--store", store)
    assert code == 2 and out == ""
    assert err.startswith("error: Query blocked due to lint failures") and len(err.strip().splitlines()) == 1


def test_missing_store_is_a_clear_error(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli("sql", "SELECT id FROM experiment('x')", "--store", str(tmp_path / "none.duckdb"))
    assert code == 2 and "no local store here yet" in err
