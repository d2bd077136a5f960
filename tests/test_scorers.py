"""Scorers: binary classification per facet, per-class recall/specificity, label match, JSON
checks, and the rubric (LLM-as-judge) scorer. The judge talks to a loopback OpenAI-compatible
server started inside the test (OPENAI_BASE_URL points at it); nothing goes to the network."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from braintrust import Score
from fakes.loopback import LoopbackHTTPServer, stop_server

from bt_flywheel.core.errors import InputError
from bt_flywheel.evals.scorers import (
    binary_classification_scores,
    class_scores,
    classification_metrics,
    is_negative,
    json_format,
    json_valid,
    label_match,
    resolve_scorer,
    rubric_scorer,
)


def _by_name(scores: list[Score]) -> dict[str, float | None]:
    return {s.name: s.score for s in scores}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


# A small facet table: (expected ground truth, model output). Positives name an issue; negatives
# are the many spellings of "nothing here".
FACET_TABLE = [
    ("billing dispute", "billing dispute"),  # TP
    ("late delivery", "Late delivery."),  # TP
    ("refund request", "none"),  # FN
    ("none", "none"),  # TN
    ("N/A", ""),  # TN
    ("no match", "damaged item"),  # FP
    ("", None),  # TN
]


def test_binary_classification_scores_give_recall_and_specificity_as_means() -> None:
    rows = [_by_name(binary_classification_scores(output=o, expected=e)) for e, o in FACET_TABLE]
    assert [r["binary_decision_match"] for r in rows] == [1, 1, 0, 1, 1, 0, 1]
    assert [r["positive_recall"] for r in rows] == [1, 1, 0, None, None, None, None]
    assert [r["negative_specificity"] for r in rows] == [None, None, None, 1, 1, 0, 1]
    # Experiment means of the per-row scores are the confusion-matrix rates: TP=2 FN=1 TN=3 FP=1.
    assert _mean([r["positive_recall"] for r in rows]) == pytest.approx(2 / 3)
    assert _mean([r["negative_specificity"] for r in rows]) == pytest.approx(3 / 4)
    assert _mean([r["binary_decision_match"] for r in rows]) == pytest.approx(5 / 7)
    assert binary_classification_scores.__name__ == "binary_classification_scores"
    assert binary_classification_scores(output="x", expected=None) is None


def test_negative_values_follow_the_one_definition_and_dict_labels() -> None:
    assert all(is_negative(v) for v in (None, "", "None", " n/a ", "No match.", "null", [], {}))
    assert not any(is_negative(v) for v in ("billing", "no refund", 0.5))
    assert is_negative({"label": "none", "reason": "nothing found"})
    assert not is_negative({"label": "billing", "reason": "none"})


CLASS_TABLE = [  # (expected, output) for a 3-class sentiment label
    ("positive", "positive"), ("positive", "neutral"), ("positive", "Positive"),
    ("negative", "negative"), ("negative", "positive"),
    ("neutral", "neutral"), ("neutral", "neutral"), ("neutral", "negative"),
]


def test_class_scores_means_match_confusion_matrix_per_class() -> None:
    scorer = class_scores(["positive", "negative", "neutral"], name="sentiment")
    rows = [_by_name(scorer(output=o, expected=e)) for e, o in CLASS_TABLE]
    metrics = classification_metrics(CLASS_TABLE, ["positive", "negative", "neutral"])
    # By hand: positive TP=2 FN=1 FP=1 TN=4; negative TP=1 FN=1 FP=1 TN=5; neutral TP=2 FN=1 FP=1 TN=4.
    assert metrics["positive"] == {"recall": 2 / 3, "specificity": 4 / 5, "precision": 2 / 3, "support": 3}
    assert metrics["negative"] == {"recall": 1 / 2, "specificity": 5 / 6, "precision": 1 / 2, "support": 2}
    assert metrics["neutral"]["recall"] == pytest.approx(2 / 3)
    assert metrics["neutral"]["specificity"] == pytest.approx(4 / 5)
    for cls in ("positive", "negative", "neutral"):
        assert _mean([r[f"recall_{cls}"] for r in rows]) == pytest.approx(metrics[cls]["recall"])
        assert _mean([r[f"specificity_{cls}"] for r in rows]) == pytest.approx(metrics[cls]["specificity"])
    assert _mean([r["label_match"] for r in rows]) == pytest.approx(5 / 8)
    assert scorer.__name__ == "sentiment"
    with pytest.raises(InputError, match="classes must list"):
        class_scores([])


def test_label_match_normalizes_and_skips_missing_expected() -> None:
    assert label_match(output="  Refund Request. ", expected="refund request").score == 1
    assert label_match(output={"label": "billing", "why": "x"}, expected="Billing").score == 1
    assert label_match(output="billing", expected="refund").score == 0
    assert label_match(output="billing", expected=None) is None


def test_json_scorers_reuse_autoevals_validjson() -> None:
    assert json_valid(output='{"a": 1}').score == 1
    assert json_valid(output="{a: 1").score == 0
    schema = {"type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}}
    fmt = json_format(schema)
    assert fmt(output='{"label": "billing"}').score == 1
    assert fmt(output='{"label": 3}').score == 0
    assert fmt(output='{"other": "x"}').score == 0
    assert fmt.__name__ == "json_format"


def test_resolve_scorer_names_autoevals_and_factories(tmp_path: Path) -> None:
    assert resolve_scorer("label_match") is label_match
    exact = resolve_scorer("ExactMatch")
    assert exact(output="a", expected="a").score == 1
    per_class = resolve_scorer({"name": "class_scores", "args": {"classes": ["a", "b"]}})
    assert _by_name(per_class(output="a", expected="b"))["specificity_a"] == 0
    (tmp_path / "my_scorers.py").write_text("def always(output):\n    return 1\n")
    assert resolve_scorer("my_scorers.py:always", base_dir=tmp_path)(output="x") == 1
    with pytest.raises(InputError, match="unknown scorer 'Nope'"):
        resolve_scorer("Nope")
    with pytest.raises(InputError, match="class_scores needs args"):
        resolve_scorer("class_scores")


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Loopback stand-in for an OpenAI-compatible /chat/completions endpoint: the judge says PASS
    when the graded output mentions a refund, else FAIL, via the select_choice tool call."""

    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        prompt = body["messages"][-1]["content"]
        graded = prompt.split("[Output]", 1)[1]
        choice = "PASS" if "refund" in graded.lower() else "FAIL"
        reply = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "select_choice", "arguments": json.dumps({"choice": choice})}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    server = LoopbackHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeOpenAI.requests = []
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-loopback")
    try:
        yield _FakeOpenAI.requests
    finally:
        stop_server(server)


def test_rubric_scorer_judges_through_an_openai_compatible_endpoint(fake_openai: list[dict]) -> None:
    judge = rubric_scorer("The reply must offer the customer a refund.", name="offers_refund", model="judge-1")
    good = judge(input="my order broke", output="Sorry! I have issued a refund.", expected=None)
    bad = judge(input="my order broke", output="Please read our FAQ.", expected=None)
    assert (good.name, good.score) == ("offers_refund", 1)
    assert bad.score == 0
    assert len(fake_openai) == 2 and fake_openai[0]["path"] == "/v1/chat/completions"
    sent = fake_openai[0]["body"]
    assert sent["model"] == "judge-1"
    assert "The reply must offer the customer a refund." in sent["messages"][-1]["content"]
    assert sent["tool_choice"]["function"]["name"] == "select_choice"
    with pytest.raises(InputError, match="rubric is empty"):
        rubric_scorer("  ")


def test_rubric_scorer_inside_a_local_eval_logs_a_score_span(fake_openai: list[dict], tmp_path: Path,
                                                             run_cli) -> None:
    (tmp_path / "eval_judge.py").write_text(
        "from braintrust import Eval\n"
        "from bt_flywheel.evals.scorers import rubric_scorer\n"
        "Eval('judge-bot', data=lambda: [{'input': 'broken mug'}, {'input': 'late parcel'}],\n"
        "     task=lambda input: 'refund issued' if 'mug' in input else 'see FAQ',\n"
        "     scores=[rubric_scorer('Offer a refund.', name='offers_refund', model='judge-1')])\n")
    code, out, err = run_cli("eval", "eval_judge.py", "--json", "--silent")
    assert code == 0, err
    result = json.loads(out)
    assert result["scores"] == {"offers_refund": 0.5} and len(fake_openai) == 2
    from bt_flywheel.backends.store import Store

    with Store(tmp_path / ".flywheel/store.duckdb", read_only=True) as st:
        spans = list(st.iter_rows("experiment", result["experiment_id"]))
    judged = {s["input"]["input"]: s["output"]["score"] for s in spans
              if s["span_attributes"]["name"] == "offers_refund"}
    assert judged == {"broken mug": 1, "late parcel": 0}
