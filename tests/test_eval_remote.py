"""`flywheel eval --remote`: the Eval is sent to Braintrust by the SDK itself (the calls of
BRAINTRUST.md §2) and mirrored into the local store. "Braintrust" here is a loopback HTTP server
inside the test that records every request; nothing goes to the network."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fakes.loopback import LoopbackHTTPServer, stop_server

from bt_flywheel.backends.store import Store

EVAL_FILE = '''\
from braintrust import Eval
from autoevals import ExactMatch

Eval(
    "Say Hi Bot",
    data=lambda: [{"input": "Foo", "expected": "Hi Foo"}, {"input": "Bar", "expected": "Hello Bar"}],
    task=lambda input: "Hi " + input,
    scores=[ExactMatch],
    trial_count=2,
    metadata={"model": "m-1"},
)
'''


class _FakeBraintrust(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, dict | None]] = []
    base = ""

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        return json.loads(raw) if raw else None

    def _reply(self, payload: object, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        type(self).requests.append(("GET", self.path, None))
        if self.path.startswith("/version"):
            self._reply({"version": "fake", "logs3_payload_max_bytes": None})
        elif "/summarize" in self.path:
            self._reply({"project_name": "Say Hi Bot", "experiment_name": "remote-exp",
                         "project_url": "x", "experiment_url": "x", "scores": {}, "metrics": {}})
        else:
            self._reply({"objects": []})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        type(self).requests.append(("POST", self.path, body))
        base = type(self).base
        if self.path == "/api/apikey/login":
            self._reply({"org_info": [{"id": "org-1", "name": "acme", "api_url": base, "proxy_url": base,
                                       "git_metadata": None}]})
        elif self.path == "/v1/project":
            self._reply({"id": "proj-remote-1", "name": body["name"], "org_id": "org-1"})
        elif self.path == "/v1/experiment":
            self._reply({"id": "exp-remote-1", "name": body.get("name") or "remote-exp",
                         "project_id": body["project_id"], "created": "2026-01-01T00:00:00Z"})
        elif self.path == "/logs3":
            self._reply({})
        else:
            self._reply({})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_braintrust() -> Iterator[tuple[str, list]]:
    server = LoopbackHTTPServer(("127.0.0.1", 0), _FakeBraintrust)
    base = f"http://127.0.0.1:{server.server_port}"
    _FakeBraintrust.base = base
    _FakeBraintrust.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, _FakeBraintrust.requests
    finally:
        stop_server(server)


def test_remote_eval_sends_through_the_sdk_and_mirrors_locally(tmp_path: Path, run_cli, fake_braintrust,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    base, requests = fake_braintrust
    monkeypatch.setenv("BRAINTRUST_API_KEY", "sk-fake-remote-key")
    monkeypatch.setenv("BRAINTRUST_APP_URL", base)
    (tmp_path / "eval_hi.py").write_text(EVAL_FILE)
    code, out, err = run_cli("eval", "eval_hi.py", "--remote", "--name", "remote-exp", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["backend"] == "remote" and result["experiment_id"] == "exp-remote-1"
    assert result["scores"] == {"ExactMatch": 0.5} and result["roots"] == 4
    paths = [(m, p.split("?")[0]) for m, p, _ in requests]
    assert ("POST", "/api/apikey/login") in paths and ("POST", "/v1/project") in paths
    [experiment_call] = [b for m, p, b in requests if p == "/v1/experiment"]
    assert experiment_call["name"] == "remote-exp" and experiment_call["project_id"] == "proj-remote-1"
    assert experiment_call["metadata"]["model"] == "m-1"
    assert experiment_call["metadata"]["flywheel"]["trials"] == 2
    sent = [row for m, p, b in requests if p == "/logs3" for row in b["rows"]]
    sent_roots = {r["id"] for r in sent if (r.get("span_attributes") or {}).get("type") == "eval"}
    assert len(sent_roots) == 4 and all(r["experiment_id"] == "exp-remote-1" for r in sent)
    assert "sk-fake-remote-key" not in out + err
    with Store(tmp_path / ".flywheel/store.duckdb", read_only=True) as st:
        roots = [r for r in st.iter_rows("experiment", "exp-remote-1") if r["is_root"]]
    assert {r["id"] for r in roots} == sent_roots
    assert sorted(r["metadata"]["trial"] for r in roots) == [0, 0, 1, 1]


def test_second_remote_run_in_one_process_sends_rows_to_its_own_server(tmp_path: Path, run_cli,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's background logger is process-global: after a run against one API URL, a run
    against another must log its rows there (it used to keep posting to the first, and hang)."""
    monkeypatch.setenv("BRAINTRUST_API_KEY", "sk-fake-remote-key")
    (tmp_path / "eval_hi.py").write_text(EVAL_FILE)
    for attempt in range(2):
        server = LoopbackHTTPServer(("127.0.0.1", 0), _FakeBraintrust)
        server.daemon_threads = True
        _FakeBraintrust.base = f"http://127.0.0.1:{server.server_port}"
        _FakeBraintrust.requests = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("BRAINTRUST_APP_URL", _FakeBraintrust.base)
        outcome: list[tuple[int, str, str]] = []
        args = ("eval", "eval_hi.py", "--remote", "--name", f"run-{attempt}", "--json", "--silent",
                "--store", f"mirror-{attempt}.duckdb")  # the fake reuses one experiment id
        runner = threading.Thread(target=lambda out=outcome, argv=args: out.append(run_cli(*argv)), daemon=True)
        runner.start()
        runner.join(60)
        try:
            assert not runner.is_alive(), f"remote run {attempt} hung"
            code, _, err = outcome[0]
            assert code == 0, err
            sent = [row for m, p, b in _FakeBraintrust.requests if p == "/logs3" for row in b["rows"]]
            assert sum((r.get("span_attributes") or {}).get("type") == "eval" for r in sent) == 4
        finally:
            stop_server(server)
