"""Labelers: llm (against a loopback OpenAI-compatible server inside these tests, never the
internet), the resumable label cache, score and file labelers, rubric loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from fakes.loopback import LoopbackHTTPServer, stop_server

from bt_flywheel.backends.http import parse_retry_after
from bt_flywheel.core.errors import BackendError, InputError
from bt_flywheel.label.base import FileLabeler, Rubric, ScoreLabeler, load_rubric, resolve_label
from bt_flywheel.label.llm import ChatClient, LabelCache, LLMLabeler


class FakeOpenAI:
    """A loopback OpenAI-compatible /chat/completions server (127.0.0.1, ephemeral port).

    It counts calls per row id (read from the prompt), answers with `responder(user_text)`,
    can fail the first `fail_first` calls with `fail_status` (+ Retry-After), and can sleep
    `latency` seconds per call.
    """

    def __init__(self, responder: Callable[[str], str] | None = None, *, latency: float = 0.0,
                 fail_first: int = 0, fail_status: int = 429, retry_after: str | None = "0",
                 model_reply: str | None = None) -> None:
        self.responder = responder or (lambda text: '{"label": "fail"}' if "please refund" in text else '{"label": "pass"}')
        self.latency = latency
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.model_reply = model_reply
        self.calls = 0
        self.per_row: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.auth: set[str] = set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                with fake._lock:
                    fake.calls += 1
                    n = fake.calls
                    fake.models[body["model"]] += 1
                    fake.auth.add(self.headers.get("Authorization", ""))
                    for token in user.split('"'):
                        if token.startswith("row-"):
                            fake.per_row[token] += 1
                            break
                if fake.latency:
                    time.sleep(fake.latency)
                if n <= fake.fail_first:
                    self.send_response(fake.fail_status)
                    if fake.retry_after is not None:
                        self.send_header("Retry-After", fake.retry_after)
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "slow down"}}')
                    return
                content = fake.responder(user)
                reply = {"id": "c1", "object": "chat.completion", "model": fake.model_reply or body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        stop_server(self.server)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


RUBRIC = Rubric(version="refund-v1", text="fail when the request asks for a refund, else pass", labels=["pass", "fail"])


def make_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        message = "please refund me" if i % 3 == 0 else "how do I reset my password"
        rows.append({"id": f"row-{i:04d}", "input": {"message": message, "row": f"row-{i:04d}"},
                     "metadata": {"curation": {"bucket": "failing"}, "production": {"output": "sure",
                                                                                    "scores": {"resolution": i % 2}}}})
    return rows


def client(server: FakeOpenAI, **kw: Any) -> ChatClient:
    return ChatClient(base_url=server.url, api_key="sk-test-key-000000000000", sleep=lambda s: None, **kw)


def test_llm_labeler_labels_every_row_with_provenance(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    rows = make_rows(9)
    labeler = LLMLabeler(RUBRIC, model="judge-1", client=client(fake_openai), cache_path=tmp_path / "cache.jsonl",
                         concurrency=4)
    run = labeler.label(rows)
    assert run.failed == {}
    assert {i: lab.value for i, lab in run.labels.items()} == {
        r["id"]: ("fail" if "refund" in r["input"]["message"] else "pass") for r in rows}
    label = run.labels["row-0000"]
    assert (label.labeler, label.labeler_model, label.rubric_version) == ("llm", "judge-1", "refund-v1")
    assert fake_openai.calls == 9 and run.calls == 9
    assert all(v == 1 for v in fake_openai.per_row.values())


def test_rerun_uses_the_cache_and_calls_nobody(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    LLMLabeler(RUBRIC, model="judge-1", client=client(fake_openai), cache_path=cache).label(make_rows(6))
    run = LLMLabeler(RUBRIC, model="judge-1", client=client(fake_openai), cache_path=cache).label(make_rows(6))
    assert fake_openai.calls == 6 and run.cached == 6 and run.calls == 0
    # another model or rubric version is another cache key
    other = LLMLabeler(RUBRIC, model="judge-2", client=client(fake_openai), cache_path=cache).label(make_rows(6))
    assert other.calls == 6


class Killed(BaseException):
    """Stands in for the process dying mid-run."""


def test_killed_run_resumes_and_calls_the_model_only_for_unlabeled_rows(fake_openai: FakeOpenAI,
                                                                        tmp_path: Path) -> None:
    """The run dies (an exception the labeler does not handle) after 7 model calls; the rerun
    asks the loopback model only about the rows without a cached label."""
    cache = tmp_path / "cache.jsonl"
    rows = make_rows(20)
    real = client(fake_openai)

    class DyingClient(ChatClient):
        def complete(self, model: str, messages: list[dict[str, str]], **params: Any):  # type: ignore[override]
            if fake_openai.calls >= 7:
                raise Killed()
            return real.complete(model, messages, **params)

    with pytest.raises(Killed):
        LLMLabeler(RUBRIC, model="judge-1", client=DyingClient(), cache_path=cache, concurrency=1).label(rows)
    cached_ids = {json.loads(line)["row_id"] for line in cache.read_text().splitlines()}
    assert len(cached_ids) == 7
    before = Counter(fake_openai.per_row)
    run = LLMLabeler(RUBRIC, model="judge-1", client=real, cache_path=cache, concurrency=4).label(rows)
    asked_again = {row for row, n in fake_openai.per_row.items() if n > before[row]}
    assert asked_again == {r["id"] for r in rows} - cached_ids
    assert run.calls == 13 and run.cached == 7 and len(run.labels) == 20


def test_sigkilled_labeling_process_resumes_without_paying_twice(tmp_path: Path) -> None:
    """A real labeling subprocess is SIGKILLed mid-run while it talks to the loopback model
    (50 ms per call, so 40 rows at concurrency 2 take a second: the kill after 10 calls lands
    mid-run); the in-process rerun, answered at once, calls the model only for rows missing from
    the cache, and every row ends up labeled exactly once in the cache."""
    cache = tmp_path / "cache.jsonl"
    rows = make_rows(40)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    with FakeOpenAI(latency=0.05) as server:
        script = textwrap.dedent(f"""
            import json
            from bt_flywheel.label.base import Rubric
            from bt_flywheel.label.llm import ChatClient, LLMLabeler
            rows = json.load(open({str(tmp_path / 'rows.json')!r}))
            rubric = Rubric(version="refund-v1", text={RUBRIC.text!r}, labels=["pass", "fail"])
            LLMLabeler(rubric, model="judge-1", client=ChatClient(base_url={server.url!r}, api_key="x"),
                       cache_path={str(cache)!r}, concurrency=2).label(rows)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
        deadline = time.monotonic() + 60
        while server.calls < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        first_calls = server.calls
        cache_lines = [line for line in cache.read_text().splitlines() if line.strip()] if cache.exists() else []
        cached = {json.loads(line)["row_id"] for line in cache_lines}
        assert 0 < len(cached) < 40
        server.latency = 0.0
        run = LLMLabeler(RUBRIC, model="judge-1", client=client(server), cache_path=cache, concurrency=4).label(rows)
        assert server.calls - first_calls == 40 - len(cached) == run.calls
        assert len(run.labels) == 40 and run.failed == {}
    entries = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
    assert sorted(e["row_id"] for e in entries) == sorted(r["id"] for r in rows)


def test_retries_honour_retry_after_then_succeed(tmp_path: Path) -> None:
    waits: list[float] = []
    with FakeOpenAI(fail_first=2, retry_after="3") as server:
        chat = ChatClient(base_url=server.url, sleep=waits.append, backoff_base=0.01)
        run = LLMLabeler(RUBRIC, model="judge-1", client=chat, concurrency=1).label(make_rows(1))
    assert len(run.labels) == 1 and server.calls == 3
    assert waits == [3.0, 3.0]


def test_exhausted_retries_fail_the_row_not_the_run() -> None:
    with FakeOpenAI(fail_first=100, fail_status=503) as server:
        chat = ChatClient(base_url=server.url, sleep=lambda s: None, max_retries=2)
        run = LLMLabeler(RUBRIC, model="judge-1", client=chat, concurrency=2).label(make_rows(3))
    assert run.labels == {} and set(run.failed) == {"row-0000", "row-0001", "row-0002"}
    assert "HTTP 503" in run.failed["row-0000"]
    assert server.calls == 9  # 1 + 2 retries per row


def test_fallback_model_is_recorded_as_the_labeler_model() -> None:
    def responder(text: str) -> str:
        return '{"label": "pass"}'

    with FakeOpenAI(responder) as server:
        real = client(server)

        class PrimaryDown(ChatClient):
            def complete(self, model: str, messages: Any, **params: Any):  # type: ignore[override]
                if model == "big-model":
                    return ChatClient(base_url="http://127.0.0.1:9/v1", sleep=lambda s: None,
                                      max_retries=0, timeout=2).complete(model, messages, **params)
                return real.complete(model, messages, **params)

        run = LLMLabeler(RUBRIC, model="big-model", fallback_model="small-model", client=PrimaryDown()).label(make_rows(2))
    assert {lab.labeler_model for lab in run.labels.values()} == {"small-model"}


def test_unauthorized_stops_the_whole_run() -> None:
    with FakeOpenAI(fail_first=100, fail_status=401) as server:
        with pytest.raises(BackendError, match="HTTP 401"):
            LLMLabeler(RUBRIC, model="m", client=client(server)).label(make_rows(3))


def test_unusable_replies_are_retried_once_then_reported() -> None:
    with FakeOpenAI(lambda text: '{"label": "maybe"}') as server:
        run = LLMLabeler(RUBRIC, model="m", client=client(server), concurrency=1).label(make_rows(2))
    assert run.labels == {} and "not one of pass, fail" in run.failed["row-0000"]
    assert server.calls == 4


def test_cache_refuses_a_rubric_edited_without_a_version_bump(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    LLMLabeler(RUBRIC, model="m", client=client(fake_openai), cache_path=cache).label(make_rows(2))
    edited = Rubric(version="refund-v1", text="something else entirely", labels=["pass", "fail"])
    with pytest.raises(InputError, match="changed since these labels were cached"):
        LabelCache(cache, rubric=edited)


def test_free_text_rubric_classes_by_the_one_none_definition(tmp_path: Path) -> None:
    replies = iter(['{"expected": "billing dispute"}', '{"expected": "N/A"}'])
    with FakeOpenAI(lambda text: next(replies)) as server:
        rubric = Rubric(version="issues-v1", text="What issue does the user raise? 'none' if none.")
        run = LLMLabeler(rubric, model="m", client=client(server), concurrency=1).label(make_rows(2))
    assert (run.labels["row-0000"].value, run.labels["row-0000"].expected) == ("positive", "billing dispute")
    assert (run.labels["row-0001"].value, run.labels["row-0001"].expected) == ("negative", "none")


def test_secrets_never_reach_the_cache(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    cache = tmp_path / "cache.jsonl"
    LLMLabeler(RUBRIC, model="m", client=client(fake_openai), cache_path=cache).label(make_rows(1))
    assert "sk-test-key" not in cache.read_text()
    assert fake_openai.auth == {"Bearer sk-test-key-000000000000"}


def test_parse_retry_after_accepts_seconds_and_dates() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_score_labeler_thresholds_the_production_score() -> None:
    run = ScoreLabeler("resolution", threshold=0.5).label(make_rows(3) + [{"id": "row-x", "metadata": {}}])
    assert {i: lab.value for i, lab in run.labels.items()} == {"row-0000": "fail", "row-0001": "pass",
                                                                "row-0002": "fail"}
    assert run.failed == {"row-x": "no numeric score 'resolution' on the source trace"}
    assert run.labels["row-0001"].labeler == "score" and run.labels["row-0001"].labeler_model is None


def test_file_labeler_reads_csv_and_jsonl_and_names_bad_lines(tmp_path: Path) -> None:
    rows = make_rows(3)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("id,label,rationale\nrow-0000,fail,asks for refund\nrow-0001,pass,\n")
    run = FileLabeler(str(csv_file), RUBRIC).label(rows)
    assert {i: lab.value for i, lab in run.labels.items()} == {"row-0000": "fail", "row-0001": "pass"}
    assert set(run.failed) == {"row-0002"}
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"id": "row-0000", "label": "pass"}\n{"id": "row-0001", "label": "perhaps"}\n')
    with pytest.raises(InputError, match=r"labels.jsonl:2: id row-0001: label 'perhaps' is not one of pass, fail"):
        FileLabeler(str(jsonl), RUBRIC).label(rows)


def test_file_labeler_names_the_file_of_invalid_json(tmp_path: Path) -> None:
    rows = make_rows(1)
    for name, text in (("labels.json", '{"labels": [{"id": "row-0000", "label": "pass"}'),
                       ("labels.jsonl", '[{"id": "row-0000", "label": "pass"},]')):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=rf"{name}:1:\d+: invalid JSON"):
            FileLabeler(str(path), RUBRIC).label(rows)


def test_file_labeler_matches_reviewer_labels_by_trace_id(tmp_path: Path) -> None:
    rows = [{"id": "a" * 32, "metadata": {"source": {"trace_id": "trace-1"}}}]
    path = tmp_path / "reviews.jsonl"
    path.write_text(json.dumps({"root_span_id": "trace-1", "kind": "injection",
                                "expected": {"action": "refuse"}}) + "\n")
    run = FileLabeler(str(path), label_field="kind").label(rows)
    assert run.labels["a" * 32].value == "injection"
    assert run.labels["a" * 32].expected == {"action": "refuse"}


def test_load_rubric_from_markdown_front_matter_and_yaml(tmp_path: Path) -> None:
    md = tmp_path / "rubric.md"
    md.write_text("---\nversion: tip-v1\nlabels: [pass, fail]\n---\nPass when the answer is actionable.\n")
    rubric = load_rubric(md)
    assert (rubric.version, rubric.labels, rubric.text) == ("tip-v1", ["pass", "fail"],
                                                           "Pass when the answer is actionable.")
    plain = tmp_path / "r.txt"
    plain.write_text("Say what issue the user raises, or none.")
    assert load_rubric(plain).version.startswith("sha256:") and load_rubric(plain).labels == []
    bad = tmp_path / "r.yaml"
    bad.write_text("version: 1\nlabels: [a, a]\ninstructions: x\n")
    with pytest.raises(InputError, match="duplicate"):
        load_rubric(bad)


def test_non_utf8_rubric_and_facet_files_are_input_errors_naming_the_file(tmp_path: Path) -> None:
    from bt_flywheel.dataset.facets import load_facet_definitions

    for name, load in (("rubric.md", load_rubric), ("facets.yaml", load_facet_definitions)):
        path = tmp_path / name
        path.write_bytes("version: 1\ninstructions: caf\u00e9\n".encode("latin-1"))
        with pytest.raises(InputError, match=rf"{name}: not UTF-8 text \(invalid continuation byte at byte"):
            load(path)


def test_resolve_label_is_case_insensitive_but_strict() -> None:
    assert resolve_label(["pass", "fail"], "PASS") == ("pass", "pass")
    with pytest.raises(ValueError, match="not one of"):
        resolve_label(["pass", "fail"], "ok")


def test_llm_labeler_prompt_never_carries_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trace text is sent to a third-party model: planted keys are redacted from the prompt."""
    from bt_flywheel.label.base import Rubric
    from bt_flywheel.label.llm import build_messages

    monkeypatch.setenv("CRM_API_KEY", "crm-planted-secret-98765")
    row = {"id": "r1", "input": {"message": "my CRM key is crm-planted-secret-98765, token sk-abcdefghijklmnopqrstu"},
           "metadata": {"production": {"output": "ok"}}}
    rubric = Rubric(version="v1", text="refuse when asked for secrets", labels=["refuse", "answer"])
    text = json.dumps(build_messages(row, rubric))
    assert "crm-planted-secret-98765" not in text and "sk-abcdefghijklmnopqrstu" not in text
    assert "my CRM key is" in text
