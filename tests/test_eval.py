"""`flywheel eval`: unmodified Braintrust Eval files and eval configs run locally with the
braintrust SDK and land in the local store in the experiment shape of DESIGN.md §4.
Nothing here touches the network (no key is set; the SDK runs with nothing sent)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import duckdb
import pytest

from bt_flywheel.backends.store import Store

# Written exactly as Braintrust's "Write evals" docs show an Eval, with an autoevals scorer,
# a custom function scorer and trials.
DOCS_EVAL = '''\
from braintrust import Eval
from autoevals import ExactMatch


def exact_match(input, expected, output):
    return 1 if output == expected else 0


Eval(
    "Say Hi Bot",  # Replace with your project name
    data=lambda: [
        {
            "input": "Foo",
            "expected": "Hi Foo",
        },
        {
            "input": "Bar",
            "expected": "Hello Bar",
        },
    ],  # Replace with your eval dataset
    task=lambda input: "Hi " + input,  # Replace with your LLM call
    scores=[ExactMatch, exact_match],
    trial_count=2,
    metadata={"model": "gpt-4o-mini"},
)
'''


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _spans(store: Path, experiment_id: str) -> list[dict]:
    with Store(store, read_only=True) as st:
        return list(st.iter_rows("experiment", experiment_id))


def _run_json(run_cli, *argv: str) -> tuple[int, dict, str]:
    code, out, err = run_cli("eval", *argv, "--json")
    return code, json.loads(out), err


def test_docs_eval_file_runs_locally_in_braintrust_span_shape(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_hi.py", DOCS_EVAL)
    code, result, err = _run_json(run_cli, "eval_hi.py")
    assert code == 0, err
    assert result["project"] == "Say Hi Bot" and result["backend"] == "local"
    assert (result["rows"], result["trials"], result["roots"]) == (2, 2, 4)
    assert result["scores"] == {"ExactMatch": 0.5, "exact_match": 0.5}
    assert "eval " in err  # progress on stderr

    spans = _spans(tmp_path / ".flywheel/store.duckdb", result["experiment_id"])
    roots = [s for s in spans if s["is_root"]]
    assert len(roots) == 4 and len(spans) == 16  # root + task + 2 scorers per (case, trial)
    by_span = {s["span_id"]: s for s in spans}
    for root in roots:
        assert root["span_attributes"]["name"] == "eval" and root["span_attributes"]["type"] == "eval"
        children = [s for s in spans if s["root_span_id"] == root["root_span_id"] and not s["is_root"]]
        assert sorted(c["span_attributes"]["name"] for c in children) == ["ExactMatch", "exact_match", "task"]
        for child in children:
            assert by_span[child["span_parents"][0]] is root
        want = 1 if root["input"] == "Foo" else 0
        assert root["scores"] == {"ExactMatch": want, "exact_match": want}
        assert root["output"] == "Hi " + root["input"]
    trials = sorted((r["input"], r["metadata"]["trial"]) for r in roots)
    assert trials == [("Bar", 0), ("Bar", 1), ("Foo", 0), ("Foo", 1)]
    ids = {r["input"]: {x["metadata"]["dataset_row_id"] for x in roots if x["input"] == r["input"]} for r in roots}
    assert all(len(v) == 1 for v in ids.values()) and ids["Foo"] != ids["Bar"]
    scorer = next(s for s in spans if s["span_attributes"]["name"] == "ExactMatch" and s["input"]["input"] == "Bar")
    assert scorer["span_attributes"] == {"name": "ExactMatch", "type": "score", "purpose": "scorer",
                                         "exec_counter": scorer["span_attributes"]["exec_counter"]}
    assert set(scorer["input"]) == {"input", "expected", "metadata", "output", "id", "tags"}
    assert scorer["output"] == {"score": 0} and scorer["scores"] == {"ExactMatch": 0}

    with Store(tmp_path / ".flywheel/store.duckdb", read_only=True) as st:
        info = st.object_info("experiment", result["experiment_id"])
    meta = info["metadata"]
    assert meta["trials"] == 2 and meta["params"] == {"model": "gpt-4o-mini"}
    assert meta["eval_file_sha256"] == __import__("hashlib").sha256((tmp_path / "eval_hi.py").read_bytes()).hexdigest()
    assert {"git_sha", "git_dirty", "dataset_id", "dataset_version", "split"} <= set(meta)


def test_docs_eval_file_scores_queryable_with_duckdb(tmp_path: Path, run_cli) -> None:
    """Both query styles the recipes use: rolled-up root scores and scorer spans."""
    _write(tmp_path / "eval_hi.py", DOCS_EVAL)
    code, result, _ = _run_json(run_cli, "eval_hi.py", "--silent")
    assert code == 0
    con = duckdb.connect(str(tmp_path / ".flywheel/store.duckdb"), read_only=True)
    exp = result["experiment_id"]
    rolled = con.execute(
        "SELECT avg(CAST(scores->>'$.ExactMatch' AS DOUBLE)), count(*) FROM spans "
        "WHERE object_type='experiment' AND object_id=? AND is_root", [exp]).fetchone()
    assert rolled == (0.5, 4)
    spans = con.execute(
        "SELECT input->>'$.input', CAST(output->>'$.score' AS DOUBLE) FROM spans WHERE object_id=? "
        "AND span_attributes->>'$.name' = 'ExactMatch' ORDER BY 1", [exp]).fetchall()
    assert spans == [("Bar", 0.0), ("Bar", 0.0), ("Foo", 1.0), ("Foo", 1.0)]


def test_docs_eval_file_queryable_with_braintrust_sql(tmp_path: Path, run_cli) -> None:
    from bt_flywheel.backends.sql import run_query

    _write(tmp_path / "eval_hi.py", DOCS_EVAL)
    code, result, _ = _run_json(run_cli, "eval_hi.py", "--silent", "--name", "hi-1")
    assert code == 0
    store = tmp_path / ".flywheel/store.duckdb"
    rolled = run_query(store, "SELECT input, avg(scores.\"ExactMatch\") AS em, count(*) AS n "
                              "FROM experiment('hi-1') WHERE is_root GROUP BY input ORDER BY input").rows
    assert rolled == [{"input": "Bar", "em": 0, "n": 2}, {"input": "Foo", "em": 1, "n": 2}]
    per_scorer = run_query(store, "SELECT input.input AS q, output.score AS s FROM experiment('hi-1') "
                                  "WHERE span_attributes.name = 'ExactMatch' ORDER BY q").rows
    assert [(r["q"], r["s"]) for r in per_scorer] == [("Bar", 0), ("Bar", 0), ("Foo", 1), ("Foo", 1)]
    by_trial = run_query(store, f"SELECT metadata.trial AS t, count(*) AS n FROM experiment('{result['experiment_id']}') "
                                "WHERE span_attributes.type = 'eval' GROUP BY metadata.trial ORDER BY t").rows
    assert [(r["t"], r["n"]) for r in by_trial] == [(0, 2), (1, 2)]


SPLIT_EVAL = '''\
from braintrust import Eval, EvalCase


def data():
    return [
        EvalCase(input=f"q{i}", expected=f"a{i}", id=f"row-{i}",
                 metadata={"split": "train" if i % 3 else "validation", "facet": "x"})
        for i in range(9)
    ]


def task(input, hooks):
    hooks.metadata["seen_trial"] = hooks.trial_index
    return "a" + input[1:]


def right(output, expected):
    return output == expected


Eval("splits", data=data, task=task, scores=[right], trial_count=1)
'''


def test_split_first_and_trials_filter_eval_file_data(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_split.py", SPLIT_EVAL)
    code, result, err = _run_json(run_cli, "eval_split.py", "--split", "train", "--first", "4", "--trials", "3")
    assert code == 0, err
    assert (result["rows"], result["trials"], result["roots"]) == (4, 3, 12)
    roots = [s for s in _spans(tmp_path / ".flywheel/store.duckdb", result["experiment_id"]) if s["is_root"]]
    rows = sorted({r["metadata"]["dataset_row_id"] for r in roots})
    assert rows == ["row-1", "row-2", "row-4", "row-5"]  # EvalCase ids; train rows only, first 4
    for row_id in rows:
        mine = [r for r in roots if r["metadata"]["dataset_row_id"] == row_id]
        assert sorted(r["metadata"]["trial"] for r in mine) == [0, 1, 2]
        assert all(r["metadata"]["seen_trial"] == r["metadata"]["trial"] for r in mine)
        assert all(r["metadata"]["split"] == "train" and r["metadata"]["facet"] == "x" for r in mine)
    assert result["metadata"]["split"] == "train" and result["metadata"]["first"] == 4

    code, _, err = run_cli("eval", "eval_split.py", "--first", "0")
    assert code == 2 and "--first: must be >= 1" in err


def test_split_on_data_without_splits_is_an_input_error(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_hi.py", DOCS_EVAL)
    code, out, err = run_cli("eval", "eval_hi.py", "--split", "train")
    assert code == 2 and out == ""
    assert "eval_hi.py: --split train given but no row has metadata.split" in err


FAILING_EVAL = '''\
from braintrust import Eval


def task(input):
    if input == "Bar":
        raise ValueError("model refused to answer")
    return "Hi " + input


def exact_match(input, expected, output):
    return 1 if output == expected else 0


Eval("Say Hi Bot", data=lambda: [{"input": "Foo", "expected": "Hi Foo"},
                                 {"input": "Bar", "expected": "Hi Bar"}],
     task=task, scores=[exact_match])
'''


def test_task_error_exits_1_names_the_row_and_keeps_other_scores(tmp_path: Path, run_cli) -> None:
    from bt_flywheel.evals.data import input_hash

    _write(tmp_path / "eval_fail.py", FAILING_EVAL)
    code, out, err = run_cli("eval", "eval_fail.py", "--json")
    assert code == 1
    result = json.loads(out)
    assert result["roots"] == 2 and result["scores"] == {"exact_match": 1.0}
    bar_id = input_hash("Bar")
    assert (f"error: task failed on row {bar_id} (trial 0, input 'Bar'): "
            "ValueError: model refused to answer") in err
    [error] = result["errors"]
    assert error["dataset_row_id"] == bar_id and error["kind"] == "task"
    roots = {r["input"]: r for r in _spans(tmp_path / ".flywheel/store.duckdb", result["experiment_id"])
             if r["is_root"]}
    assert roots["Foo"]["scores"] == {"exact_match": 1}
    assert "model refused to answer" in roots["Bar"]["error"] and roots["Bar"]["scores"] == {}
    assert roots["Bar"]["metadata"]["trial"] == 0 and roots["Bar"]["metadata"]["dataset_row_id"] == bar_id


def test_broken_eval_file_is_a_one_line_input_error(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_bad.py", "from braintrust import Eval\nraise RuntimeError('no model configured')\n")
    code, _, err = run_cli("eval", "eval_bad.py")
    assert code == 2
    assert err.strip() == "error: eval_bad.py: failed to load (RuntimeError: no model configured)"
    _write(tmp_path / "eval_none.py", "x = 1\n")
    code, _, err = run_cli("eval", "eval_none.py")
    assert code == 2 and "eval_none.py: no Eval(...) found" in err


def test_remote_without_key_is_refused_before_running(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_hi.py", DOCS_EVAL)
    code, out, err = run_cli("eval", "eval_hi.py", "--remote")
    assert code == 2 and out == ""
    assert "--remote needs BRAINTRUST_API_KEY" in err
    assert not (tmp_path / ".flywheel/store.duckdb").exists()


def test_experiment_names_get_a_suffix_like_braintrust(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_hi.py", DOCS_EVAL)
    names = []
    for _ in range(2):
        code, result, _ = _run_json(run_cli, "eval_hi.py", "--name", "baseline", "--silent")
        assert code == 0
        names.append(result["experiment_name"])
    assert names == ["baseline", "baseline-1"]


def _make_dataset(store: Path, name: str = "refusals") -> list[dict]:
    rows = []
    for i in range(10):
        refuse = i % 2 == 0
        rows.append({
            "id": f"ds-row-{i:02d}", "input": {"message": f"message {i}", "refuse": refuse},
            "expected": "refusal" if refuse else "none",
            "metadata": {"split": "validation" if i in (1, 4, 7) else "train", "facet": "refusal"},
            "tags": ["curated"], "created": f"2026-01-01T00:00:{i:02d}Z",
        })
    with Store(store) as st:
        project_id = st.ensure_project("support-bot")
        dataset_id = st.create_object("dataset", name, project_id)
        st.upsert_rows("dataset", dataset_id, rows)
    return rows


AGENT = '''\
def answer(input):
    # a deliberately imperfect agent: misses refusals on message 4
    if input["refuse"] and input["message"] != "message 4":
        return "refusal"
    return "none"
'''


def test_config_runs_local_dataset_through_agent_function(tmp_path: Path, run_cli) -> None:
    store = tmp_path / ".flywheel/store.duckdb"
    _make_dataset(store)
    _write(tmp_path / "agent.py", AGENT)
    _write(tmp_path / "eval.yaml", """\
        project: support-bot
        experiment_name: refusal-baseline
        dataset: {name: refusals}
        task: agent.py:answer
        scorers: [label_match, binary_classification_scores, ExactMatch]
        trials: 2
        split: validation
        params: {model: fake-1, prompt_version: 3}
        """)
    code, result, err = _run_json(run_cli, "eval.yaml")
    assert code == 0, err
    assert (result["experiment_name"], result["rows"], result["roots"]) == ("refusal-baseline", 3, 6)
    # validation rows 1, 4, 7: 4 is a missed refusal, 1 and 7 are true negatives
    assert result["scores"]["label_match"] == pytest.approx(2 / 3)
    assert result["scores"]["positive_recall"] == 0.0 and result["score_counts"]["positive_recall"] == 2
    assert result["scores"]["negative_specificity"] == 1.0
    meta = result["metadata"]
    with Store(store, read_only=True) as st:
        dataset_id = st.find_object("dataset", "refusals")
    assert meta["dataset_id"] == dataset_id and meta["dataset_version"] is not None
    assert meta["params"] == {"model": "fake-1", "prompt_version": 3} and meta["split"] == "validation"
    spans = _spans(store, result["experiment_id"])
    roots = [s for s in spans if s["is_root"]]
    assert sorted({r["metadata"]["dataset_row_id"] for r in roots}) == ["ds-row-01", "ds-row-04", "ds-row-07"]
    assert all(r["origin"]["object_id"] == dataset_id and r["origin"]["id"] == r["metadata"]["dataset_row_id"]
               for r in roots)
    binary = [s for s in spans if s["span_attributes"]["name"] == "binary_classification_scores"]
    assert len(binary) == 6
    assert {s["input"]["metadata"]["dataset_row_id"] for s in binary} == {"ds-row-01", "ds-row-04", "ds-row-07"}
    missed = [s for s in binary if s["input"]["metadata"]["dataset_row_id"] == "ds-row-04"]
    assert all(s["scores"]["binary_decision_match"] == 0 for s in missed)
    # the facet-optimizer's failed-rows recipe, unchanged
    from bt_flywheel.backends.sql import run_query

    failed = run_query(store, "SELECT input.metadata.dataset_row_id AS row_id, input.metadata.split AS split, "
                              "input.expected AS expected, input.output AS output "
                              "FROM experiment('refusal-baseline') "
                              "WHERE span_attributes.name = 'binary_classification_scores' "
                              "AND input.metadata.facet = 'refusal' AND scores.binary_decision_match = 0 "
                              "LIMIT 20").rows
    assert failed == [{"row_id": "ds-row-04", "split": "validation", "expected": "refusal", "output": "none"}] * 2

    # --split/--first on the command line override the config; --first is smoke mode on train
    code, result, err = _run_json(run_cli, "eval.yaml", "--split", "train", "--first", "2", "--trials", "1")
    assert code == 0, err
    assert (result["rows"], result["roots"], result["experiment_name"]) == (2, 2, "refusal-baseline-1")


def test_invalid_config_names_the_field(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval.yaml", "project: p\ndataset: {name: d}\ntask: agent.py:answer\nscorers: []\n")
    code, _, err = run_cli("eval", "eval.yaml")
    assert code == 2 and "eval.yaml: $.scorers: [] should be non-empty" in err
    _write(tmp_path / "eval.yaml", "project: p\ndataset: {name: d}\ntask: agent.py:answer\nscorers: [Nope]\n")
    _write(tmp_path / "agent.py", AGENT)
    code, _, err = run_cli("eval", "eval.yaml")
    assert code == 2 and "eval.yaml: scorers[0]: unknown scorer 'Nope'" in err


LOCAL_DATASET_EVAL = '''\
from braintrust import Eval
from autoevals import ExactMatch

from bt_flywheel.evals.runner import local_dataset
from agent import answer

Eval("support-bot", data=lambda: local_dataset("refusals", split="train"), task=answer, scores=[ExactMatch])
'''


def test_eval_file_reads_local_dataset_and_first_applies(tmp_path: Path, run_cli) -> None:
    store = tmp_path / ".flywheel/store.duckdb"
    _make_dataset(store)
    _write(tmp_path / "agent.py", AGENT)
    _write(tmp_path / "eval_refusals.py", LOCAL_DATASET_EVAL)
    code, result, err = _run_json(run_cli, "eval_refusals.py", "--first", "3")
    assert code == 0, err
    assert result["rows"] == 3 and result["metadata"]["dataset_name"] == "refusals"
    roots = [s for s in _spans(store, result["experiment_id"]) if s["is_root"]]
    assert sorted(r["metadata"]["dataset_row_id"] for r in roots) == ["ds-row-00", "ds-row-02", "ds-row-03"]
    assert all(r["metadata"]["split"] == "train" for r in roots)
    # the file's own split="train" then --split validation leaves nothing: refused, nothing stored
    code, out, err = run_cli("eval", "eval_refusals.py", "--split", "validation")
    assert (code, out) == (2, "")
    assert "eval_refusals.py: no rows to run after --split validation" in err


ASYNC_EVAL = '''\
import asyncio

from braintrust import Eval


async def task(input, hooks):
    await asyncio.sleep(0.01)
    return {"label": input.upper(), "trial": hooks.trial_index}


def trial_echo(output, metadata):
    return 1 if output["trial"] == metadata.get("trial", output["trial"]) else 0


Eval("async-bot", data=lambda: [{"input": "a"}, {"input": "b"}, {"input": "c"}], task=task,
     scores=[trial_echo], trial_count=3, max_concurrency=4)
'''


def test_async_task_with_hooks_keeps_trial_indexes(tmp_path: Path, run_cli) -> None:
    _write(tmp_path / "eval_async.py", ASYNC_EVAL)
    code, result, err = _run_json(run_cli, "eval_async.py")
    assert code == 0, err
    assert result["roots"] == 9 and result["metadata"]["max_concurrency"] == 4
    roots = [s for s in _spans(tmp_path / ".flywheel/store.duckdb", result["experiment_id"]) if s["is_root"]]
    assert all(r["output"]["trial"] == r["metadata"]["trial"] for r in roots)
    assert sorted((r["input"], r["metadata"]["trial"]) for r in roots) == [
        (x, t) for x in "abc" for t in range(3)]


SCORER_ERROR_EVAL = '''\
from braintrust import Eval


def picky(output, expected):
    if expected == "boom":
        raise KeyError("no rubric for this row")
    return output == expected


Eval("picky", data=lambda: [{"input": "x", "expected": "x"}, {"input": "y", "expected": "boom"}],
     task=lambda input: input, scores=[picky])
'''


def test_scorer_error_exits_1_and_names_scorer_and_row(tmp_path: Path, run_cli) -> None:
    from bt_flywheel.evals.data import input_hash

    _write(tmp_path / "eval_picky.py", SCORER_ERROR_EVAL)
    code, out, err = run_cli("eval", "eval_picky.py")
    assert code == 1
    assert f"error: scorer picky failed on row {input_hash('y')} (trial 0, input 'y'): KeyError: 'no rubric for this row'" in err
    assert "picky" in out and "errors: 1" in out  # the summary still prints


def test_eval_file_defining_a_dataclass_loads(tmp_path: Path, run_cli) -> None:
    """A user's Eval file is a normal module: @dataclass needs it registered in sys.modules."""
    (tmp_path / "eval_dc.py").write_text(
        "from dataclasses import dataclass\n"
        "from braintrust import Eval\n\n"
        "@dataclass\n"
        "class Case:\n"
        "    text: str\n\n"
        "Eval('dc-project', data=lambda: [{'input': Case('a').text, 'expected': 'a'}],\n"
        "     task=lambda input: input, scores=[lambda input, output, expected: float(output == expected)])\n"
    )
    code, out, err = run_cli("eval", str(tmp_path / "eval_dc.py"), "--json", "--silent")
    assert code == 0, err
