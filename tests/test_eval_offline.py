"""`flywheel eval` on the local backend never touches the network (issues 12 and 15), with a key in
the environment and Braintrust's URLs pointing at a loopback listener inside the test (a
`FakeBraintrust` that records every request; nothing leaves the machine):

- a scorer taking the SDK's `trace` argument gets `trace.get_spans()` from the run's own spans;
- an unmodified eval file with `data=init_dataset("<project>", "<dataset>")` reads a dataset
  made by `flywheel curate` from the local store;
- the eval file's prints go to stderr, so `eval --json` stdout is exactly one JSON document.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from fakes.loopback import FakeBraintrust

from bt_flywheel.backends.store import Store

TRACE_EVAL = '''\
from braintrust import Eval, Score

print("loading the eval file")


def task(input):
    print("the task talks on stdout")
    return "Hi " + input


async def saw_spans(input, output, expected, trace):
    spans = await trace.get_spans()
    types = sorted((s.span_attributes or {}).get("type", "") for s in spans)
    task_spans = await trace.get_spans(span_type=["task"])
    return Score(name="saw_spans", score=1 if "task" in types else 0,
                 metadata={"types": types, "task_outputs": [s.output for s in task_spans]})


Eval("Trace Bot", data=lambda: [{"input": "Foo", "expected": "Hi Foo"}, {"input": "Bar", "expected": "Hi Bar"}],
     task=task, scores=[saw_spans])
'''

INIT_DATASET_EVAL = '''\
from braintrust import Eval, init_dataset


def task(input):
    return "ok"


def exact(output, expected):
    return 1 if output == expected else 0


Eval("support", data=init_dataset("support", "curated"), task=task, scores=[exact])
'''

INIT_DATASET_LAMBDA_EVAL = '''\
import braintrust


Eval = braintrust.Eval
Eval("support", data=lambda: braintrust.init_dataset(project="support", name="curated"),
     task=lambda input: "ok", scores=[])
'''


@pytest.fixture
def braintrust_env(monkeypatch: pytest.MonkeyPatch):
    """A key in the environment and every Braintrust URL on a loopback listener."""
    with FakeBraintrust() as server:
        monkeypatch.setenv("BRAINTRUST_API_KEY", "sk-loopback-not-a-real-key")
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        monkeypatch.setenv("BRAINTRUST_API_URL", server.url)
        yield server


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_scorer_trace_get_spans_is_served_locally_and_nothing_is_sent(tmp_path: Path, run_cli,
                                                                      braintrust_env: FakeBraintrust) -> None:
    _write(tmp_path / "eval_trace.py", TRACE_EVAL)
    code, out, err = run_cli("eval", "eval_trace.py", "--local", "--json")
    assert code == 0, err
    result = json.loads(out)                      # stdout is the JSON and nothing else
    assert "loading the eval file" in err and "the task talks on stdout" in err
    assert result["scores"] == {"saw_spans": 1.0}
    assert braintrust_env.requests == []
    with Store(tmp_path / ".flywheel/store.duckdb", read_only=True) as st:
        spans = list(st.iter_rows("experiment", result["experiment_id"]))
    scorer_spans = [s for s in spans if s["span_attributes"]["type"] == "score"]
    assert len(scorer_spans) == 2
    for span in scorer_spans:
        # the root eval span and the task span of its own trace; scorer spans are left out by default
        assert span["metadata"]["types"] == ["eval", "task"]
        assert span["metadata"]["task_outputs"] == ["Hi " + span["input"]["input"]]


def _curated_dataset(run_cli) -> list[dict]:
    """`flywheel curate` a dataset named 'curated' from synthetic support traces."""
    assert run_cli("synth", "--spans", "400", "--seed", "3", "--out", "traces.jsonl")[0] == 0
    assert run_cli("ingest", "traces.jsonl", "--project", "support", "--quiet")[0] == 0
    code, out, err = run_cli("curate", "--project", "support", "--score", "Factuality", "--lo", "0.5", "--hi", "0.9",
                             "--window-days", "30", "--labeler", "score", "--per-bucket", "5", "--out", "cur",
                             "--dataset", "curated", "--yes", "--json", "--local")
    assert code == 0, err
    with Store(".flywheel/store.duckdb", read_only=True) as st:
        dataset_id = st.find_object("dataset", "curated", project_id=st.find_project("support"))
        return list(st.iter_rows("dataset", dataset_id))


@pytest.mark.parametrize("text", [INIT_DATASET_EVAL, INIT_DATASET_LAMBDA_EVAL], ids=["eval-arg", "lambda"])
def test_unmodified_init_dataset_eval_file_reads_the_curated_local_dataset(tmp_path: Path, run_cli, text: str,
                                                                           braintrust_env: FakeBraintrust) -> None:
    rows = _curated_dataset(run_cli)
    assert rows
    _write(tmp_path / "eval_ds.py", text)
    code, out, err = run_cli("eval", "eval_ds.py", "--local", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["rows"] == len(rows)
    assert result["metadata"]["dataset_name"] == "curated"
    assert braintrust_env.requests == []
    with Store(".flywheel/store.duckdb", read_only=True) as st:
        roots = [r for r in st.iter_rows("experiment", result["experiment_id"]) if r["is_root"]]
    # each root is paired with its dataset record: origin.id and metadata.dataset_row_id are the row id
    assert sorted(r["origin"]["id"] for r in roots) == sorted(r["id"] for r in rows)
    assert all(r["metadata"]["dataset_row_id"] == r["origin"]["id"] for r in roots)


def test_init_dataset_of_a_missing_dataset_is_a_clear_input_error(tmp_path: Path, run_cli,
                                                                  braintrust_env: FakeBraintrust) -> None:
    with Store(tmp_path / ".flywheel/store.duckdb") as st:
        st.ensure_project("support")
    _write(tmp_path / "eval_ds.py", INIT_DATASET_EVAL)
    code, out, err = run_cli("eval", "eval_ds.py", "--local", "--json")
    assert code == 2 and out == ""
    assert "dataset 'curated': not found" in err
    assert braintrust_env.requests == []
