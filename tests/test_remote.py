"""Remote backend: `flywheel sql --remote` and dataset upserts against a loopback HTTP server inside
the test that speaks Braintrust's login, btql, project/dataset and logs3 endpoints (no internet)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from fakes.loopback import LoopbackHTTPServer, stop_server

from bt_flywheel.backends.http import HttpClient
from bt_flywheel.backends.remote import RemoteClient
from bt_flywheel.core.errors import BackendError, InputError

KEY = "sk-test-remote-0123456789abcdef"
LINT_BODY = {"Code": "BadRequest", "Message": "Query blocked by strict lint mode due to 1 lint:\n"
             "missingSegmentEliminationSpecs (optimizer/warning): No filters available for segment elimination. "
             "Add a range filter on created, _xact_id, or _pagination_key, or scope to a specific root_span_id or id."}


class FakeBraintrust:
    """A loopback stand-in for Braintrust; `plan[path]` is a list of (status, body, headers) to serve in
    order (the last one repeats); every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plan: dict[str, list[tuple[int, Any, dict[str, str]]]] = {}
        self.delay: dict[str, float] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                fake.requests.append({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": json.loads(raw) if raw else None})
                if path in fake.delay:
                    time.sleep(fake.delay[path])
                steps = fake.plan.get(path) or [(404, {"Message": f"no route {path}"}, {})]
                status, body, headers = steps.pop(0) if len(steps) > 1 else steps[0]
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.plan["/api/apikey/login"] = [(200, {"org_info": [{"id": "org1", "name": "acme", "api_url": self.url}]}, {})]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].split("?", 1)[0] == path]


@pytest.fixture
def fake() -> Iterator[FakeBraintrust]:
    server = FakeBraintrust()
    yield server
    stop_server(server.server)


def _client(fake: FakeBraintrust, **http: Any) -> RemoteClient:
    sleeps: list[float] = []
    return RemoteClient(KEY, app_url=fake.url, http=HttpClient(sleep=sleeps.append, timeout=2, **http))


ROWS = {"data": [{"facet": "issues", "n": 3}], "schema": {"type": "array", "items": {"type": "object",
        "properties": {"facet": {"type": "string"}, "n": {"type": "integer"}}}}, "cursor": None}


def test_cli_sql_remote_speaks_bt_protocol(fake: FakeBraintrust, run_cli, monkeypatch) -> None:
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    monkeypatch.setenv("BRAINTRUST_APP_URL", fake.url)
    monkeypatch.setenv("BRAINTRUST_ORG_NAME", "acme")
    fake.plan["/btql"] = [(200, ROWS, {})]
    query = "SELECT metadata.facet AS facet, count(*) AS n FROM project_logs('p') WHERE created > now() - interval 1 day"
    code, out, err = run_cli("sql", query, "--remote", "--json")
    assert code == 0, err
    assert json.loads(out) == {"data": [{"facet": "issues", "n": 3}], "schema": ROWS["schema"], "cursor": None}
    login = fake.calls("/api/apikey/login")[0]
    assert login["method"] == "POST" and login["headers"]["authorization"] == f"Bearer {KEY}"
    btql = fake.calls("/btql")[0]
    assert btql["body"] == {"query": query, "fmt": "json", "lint_mode": "strict", "strict_lint_mode": True,
                            "query_source": "bt_flywheel_sql"}
    assert btql["headers"]["x-bt-org-name"] == "acme"
    assert KEY not in out + err

    code, out, _ = run_cli("sql", query, "--remote", "--force-ignore-linter")
    assert code == 0 and "| issues | 3 |" in out
    assert fake.calls("/btql")[-1]["body"]["lint_mode"] == "default"
    assert fake.calls("/btql")[-1]["body"]["strict_lint_mode"] is False


def test_remote_lint_400_maps_to_the_local_message(fake: FakeBraintrust, run_cli, monkeypatch) -> None:
    monkeypatch.setenv("BRAINTRUST_API_KEY", KEY)
    monkeypatch.setenv("BRAINTRUST_APP_URL", fake.url)
    fake.plan["/btql"] = [(400, LINT_BODY, {})]
    code, out, err = run_cli("sql", "SELECT id FROM project_logs('p')", "--remote")
    assert code == 2 and out == ""
    assert err.startswith("error: Query blocked due to lint failures - No filters available for segment elimination.")
    assert len(fake.calls("/btql")) == 1  # a 400 is not retried


def test_retries_with_backoff_and_retry_after(fake: FakeBraintrust) -> None:
    fake.plan["/btql"] = [(503, {"Message": "busy"}, {"Retry-After": "3"}), (502, "bad gateway", {}), (200, ROWS, {})]
    client = _client(fake, backoff=0.25)
    result = client.btql("SELECT 1 FROM experiment('e')")
    assert result.rows == ROWS["data"] and result.columns == ["facet", "n"]
    assert len(fake.calls("/btql")) == 3
    assert client.http.delays[0] == 3.0                 # Retry-After honoured
    assert 0.125 <= client.http.delays[1] <= 0.5        # 0.25 * 2**1 with jitter in [0.5, 1]


def test_final_failure_is_backend_error(fake: FakeBraintrust, run_cli, monkeypatch) -> None:
    fake.plan["/btql"] = [(500, {"Message": "internal"}, {})]
    client = _client(fake, retries=2)
    with pytest.raises(BackendError) as info:
        client.btql("SELECT 1 FROM experiment('e')")
    assert info.value.exit_code == 3
    assert "POST " in str(info.value) and "/btql: HTTP 500: internal (after 3 attempts)" in str(info.value)
    assert len(fake.calls("/btql")) == 3


def test_timeouts_are_retried_then_reported(fake: FakeBraintrust) -> None:
    fake.delay["/btql"] = 0.6
    fake.plan["/btql"] = [(200, ROWS, {})]
    client = RemoteClient(KEY, app_url=fake.url, http=HttpClient(timeout=0.2, retries=1, sleep=lambda s: None))
    with pytest.raises(BackendError, match=r"timed out after 0.2s \(after 2 attempts\)"):
        client.btql("SELECT 1 FROM experiment('e')")


def test_missing_schema_and_bad_login(fake: FakeBraintrust) -> None:
    fake.plan["/btql"] = [(200, {"data": []}, {})]
    with pytest.raises(BackendError, match="missing field `schema`"):
        _client(fake).btql("SELECT 1 FROM experiment('e')")
    fake.plan["/api/apikey/login"] = [(401, {"Message": "Invalid API key"}, {})]
    with pytest.raises(BackendError, match="HTTP 401: Invalid API key"):
        _client(fake).btql("SELECT 1 FROM experiment('e')")


def test_cli_remote_without_key_is_config_error(run_cli) -> None:
    code, _, err = run_cli("sql", "SELECT 1 FROM experiment('e')", "--remote")
    assert code == 2 and "BRAINTRUST_API_KEY" in err


def test_logs_with_project_is_scoped_like_bt(fake: FakeBraintrust) -> None:
    fake.plan["/v1/project"] = [(200, {"objects": [{"id": "proj-uuid", "name": "Support"}]}, {})]
    fake.plan["/btql"] = [(200, ROWS, {})]
    _client(fake).btql("SELECT id FROM logs WHERE created > now() - interval 1 day", project="Support")
    assert "project_logs('proj-uuid')" in fake.calls("/btql")[0]["body"]["query"]
    assert "project_name=Support" in fake.calls("/v1/project")[0]["path"]


def test_dataset_upsert_creates_then_merges(fake: FakeBraintrust) -> None:
    fake.plan["/v1/project"] = [(200, {"objects": [{"id": "proj-uuid", "name": "Support"}]}, {})]
    fake.plan["/v1/dataset"] = [(200, {"objects": []}, {}), (200, {"id": "ds-1", "name": "golden"}, {}),
                                (200, {"objects": [{"id": "ds-1", "name": "golden"}]}, {})]
    fake.plan["/logs3"] = [(200, {"row_ids": []}, {})]
    rows = [{"id": f"r{i}", "input": {"q": i}, "expected": "yes", "metadata": {"split": "train"}} for i in range(1500)]
    client = _client(fake)
    first = client.upsert_dataset("Support", "golden", rows)
    assert first["mode"] == "create" and first["uploaded"] == 1500 and first["created_dataset"] is True
    posts = fake.calls("/logs3")
    assert [len(p["body"]["rows"]) for p in posts] == [1000, 500]
    assert posts[0]["body"]["api_version"] == 2
    event = posts[0]["body"]["rows"][0]
    assert event["id"] == "r0" and event["dataset_id"] == "ds-1" and "_is_merge" not in event
    assert fake.calls("/v1/dataset")[1]["body"] == {"name": "golden", "org_name": "acme", "project_id": "proj-uuid"}
    second = client.upsert_dataset("Support", "golden", rows[:2])
    assert second["mode"] == "update"
    assert all(e["_is_merge"] is True for e in fake.calls("/logs3")[-1]["body"]["rows"])


def test_dataset_rows_are_validated_before_any_request(fake: FakeBraintrust) -> None:
    client = _client(fake)
    with pytest.raises(InputError, match=r"rows\[1\]\.id: missing a stable id"):
        client.upsert_dataset("Support", "golden", [{"id": "a"}, {"input": 1}])
    with pytest.raises(InputError, match=r"rows\[0\]: unknown field 'output'"):
        client.upsert_dataset("Support", "golden", [{"id": "a", "output": 1}])
    assert fake.requests == []


def test_dataset_rows_sent_to_braintrust_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows uploaded with /logs3 (loopback FakeBraintrust from tests/fakes, never the network)
    lose planted secrets, exactly as local files do."""
    from fakes import FakeBraintrust

    monkeypatch.setenv("SUPPORT_DESK_API_KEY", "desk-key-planted-123456")
    row = {"id": "r1", "input": {"q": "my key is desk-key-planted-123456 and sk-abcdefghijklmnopqrstuvwx"},
           "expected": "refuse", "metadata": {"split": "train"}}
    with FakeBraintrust() as server:
        client = RemoteClient("sk-loopback-key-000000000", app_url=server.url)
        assert client.insert_dataset_rows("ds-1", [row], merge=False) == 1
        [sent] = server.requests_to("logs")
    text = json.dumps(sent.body)
    assert "desk-key-planted-123456" not in text and "sk-abcdefghijklmnopqrstuvwx" not in text
    assert sent.body["rows"][0]["id"] == "r1" and sent.body["rows"][0]["expected"] == "refuse"


def _cut_short_then_whole_server(replies: int) -> tuple[str, list[int]]:
    """A loopback socket server (never the network): the first response promises 100 bytes and
    sends 6, then closes; later ones are whole JSON bodies."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    served: list[int] = []

    def serve() -> None:
        with srv:
            for i in range(replies):
                conn, _ = srv.accept()
                with conn:
                    conn.recv(65536)
                    body, length = (b'{"ok":', 100) if i == 0 else (b'{"ok":true}', 11)
                    served.append(i)   # before sending: the client may return before this thread runs again
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (length, body))

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}", served


def test_a_response_cut_short_is_retried_like_a_dropped_connection() -> None:
    url, served = _cut_short_then_whole_server(2)
    slept: list[float] = []
    assert HttpClient(sleep=slept.append).request_json("GET", url + "/x") == {"ok": True}
    assert served == [0, 1] and len(slept) == 1


def test_a_response_cut_short_every_time_is_one_backend_error() -> None:
    url, _ = _cut_short_then_whole_server(1)
    with pytest.raises(BackendError, match=r"GET http://127\.0\.0\.1:\d+/x: IncompleteRead"):
        HttpClient(sleep=lambda _: None, retries=0).request_json("GET", url + "/x")
