"""Loopback stand-ins for Braintrust's API and an OpenAI-compatible model server.

Nothing here touches the network: every server binds 127.0.0.1 on a free port inside the test
process. Each server records every request it receives (monotonic arrival time, method, path,
headers, JSON body) and can be told to misbehave on a schedule, per route:

    server = FakeModelServer()                  # POST .../chat/completions
    server.schedule("chat", [Fault.status(429, retry_after=1), Fault.status(500),
                             Fault.slow(2.0), Fault.garbage()])
    ...
    server.requests          # [Recorded(at, method, path, headers, body, route, fault)]
    server.close()

Faults are consumed in order, one per request to that route; when the schedule is empty the
route answers normally. `Fault.always(...)` repeats forever (for "fails after every retry").
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class LoopbackHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on 127.0.0.1 with a listen backlog for a burst of concurrent clients.

    socketserver's default backlog is 5: when a client's thread pool opens more connections than
    that before the serving thread (starved of the GIL by those same threads) accepts them, the
    kernel drops the SYNs and each client sits out the 1 s SYN retransmit, or times out and retries.
    """

    request_queue_size = 128
    daemon_threads = True


def stop_server(httpd: socketserver.BaseServer) -> None:
    """`shutdown()` and close a server running `serve_forever()` in another thread, without the wait.

    serve_forever() notices shutdown() only when its select() returns, every 0.5 s when idle, so a
    plain shutdown() costs up to half a second per server; a connection to the server's own port
    wakes the select at once (it is closed unanswered: the loop sees the shutdown first).
    """
    stopper = threading.Thread(target=httpd.shutdown, daemon=True)
    stopper.start()
    while stopper.is_alive():
        try:
            socket.create_connection(httpd.server_address[:2], timeout=1).close()
        except OSError:
            pass
        stopper.join(0.05)
    httpd.server_close()


def record_pauses(monkeypatch: Any) -> list[float]:
    """Make every HTTP client without its own `sleep` (those a command builds too) record the delays
    it would wait (backoff, Retry-After) in the returned list instead of sleeping through them."""
    from bt_flywheel.backends import http

    waited: list[float] = []
    monkeypatch.setattr(http, "pause", waited.append)
    return waited


@dataclass(frozen=True)
class Fault:
    """One scheduled misbehaviour: an HTTP status, a slow answer, a garbage body or a dropped connection."""

    kind: str                        # status | slow | garbage | drop
    code: int = 200
    retry_after: str | None = None
    seconds: float = 0.0
    body: bytes = b""
    forever: bool = False

    @staticmethod
    def status(code: int, *, retry_after: float | str | None = None) -> Fault:
        """Answer with HTTP `code` (and a Retry-After header when given)."""
        return Fault("status", code=code, retry_after=None if retry_after is None else str(retry_after))

    @staticmethod
    def slow(seconds: float) -> Fault:
        """Sleep `seconds` before answering normally (past the client's timeout)."""
        return Fault("slow", seconds=seconds)

    @staticmethod
    def garbage(body: bytes = b"<html>502 Bad Gateway</html>\x00\xff") -> Fault:
        """A 200 answer whose body is not the JSON the client expects."""
        return Fault("garbage", body=body)

    @staticmethod
    def drop() -> Fault:
        """Close the connection without answering."""
        return Fault("drop")

    def always(self) -> Fault:
        """The same fault on every later request too."""
        return Fault(self.kind, self.code, self.retry_after, self.seconds, self.body, forever=True)


@dataclass
class Recorded:
    at: float                        # time.monotonic() when the request arrived
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    route: str
    fault: str | None = None


@dataclass(frozen=True)
class Raw:
    """An answer body sent as is (e.g. a server-sent event stream), not as JSON."""

    data: bytes
    content_type: str


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    schedules: dict[str, list[Fault]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1:<free port>; subclasses map paths to routes and answers."""

    def __init__(self) -> None:
        self.state = _State()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                outer._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                outer._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                outer._handle(self, "PUT")

            def do_PATCH(self) -> None:  # noqa: N802
                outer._handle(self, "PATCH")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    # schedule and records ---------------------------------------------------------------------

    def schedule(self, route: str, faults: Iterable[Fault]) -> None:
        with self.state.lock:
            self.state.schedules.setdefault(route, []).extend(faults)

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    def requests_to(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.route == route]

    def close(self) -> None:
        stop_server(self.httpd)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # subclasses ---------------------------------------------------------------------------------

    def route_of(self, method: str, path: str) -> str:
        return "other"

    def answer(self, route: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        return 404, {"error": f"no route {method} {path}"}

    # plumbing -----------------------------------------------------------------------------------

    def _next_fault(self, route: str) -> Fault | None:
        with self.state.lock:
            queue = self.state.schedules.get(route) or []
            if not queue:
                return None
            fault = queue[0]
            if not fault.forever:
                queue.pop(0)
            return fault

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        arrived = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if raw and handler.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        path = handler.path
        route = self.route_of(method, path.split("?")[0])
        fault = self._next_fault(route)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.state.lock:
            self.state.requests.append(Recorded(arrived, method, path, headers, body, route,
                                                fault.kind if fault else None))
        if fault is not None and fault.kind == "drop":
            handler.close_connection = True
            try:
                handler.connection.shutdown(2)
            except OSError:
                pass
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(handler, fault.code, {"error": {"message": f"scheduled HTTP {fault.code}"}}, extra)
            return
        if fault is not None and fault.kind == "garbage":
            self._send_bytes(handler, 200, fault.body, "application/json")
            return
        status, payload = self.answer(route, method, path, body, headers)
        self._send(handler, status, payload)

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: Any,
              extra: dict[str, str] | None = None) -> None:
        if isinstance(payload, Raw):
            self._send_bytes(handler, status, payload.data, payload.content_type, extra)
            return
        self._send_bytes(handler, status, json.dumps(payload).encode("utf-8"), "application/json", extra)

    @staticmethod
    def _send_bytes(handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
                    extra: dict[str, str] | None = None) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (extra or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
            pass


def default_judge(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A deterministic stand-in judge: 'pass' or 'fail' from a hash of the row part of the last message
    (the text after 'Input:'), so the same row always gets the same label and both labels occur."""
    import hashlib

    text = str((messages[-1] if messages else {}).get("content", ""))
    row_part = text.rsplit("Input:", 1)[-1]
    digest = hashlib.sha256(row_part.encode("utf-8")).hexdigest()
    return {"label": "fail" if digest[0] in "01234567" else "pass", "rationale": "loopback judge"}


class FakeModelServer(LoopbackServer):
    """Loopback OpenAI-compatible server: POST {url}/v1/chat/completions (route "chat") and, when
    given an `embedder` (text -> vector), POST {url}/v1/embeddings (route "embeddings").

    Answers with a chat completion whose content is `json.dumps(judge(messages))`, after `delay`
    seconds (to make a labeling run long enough to kill). Use `base_url` (…/v1) as OPENAI_BASE_URL.
    """

    def __init__(self, judge: Callable[[list[dict[str, Any]]], dict[str, Any]] = default_judge,
                 model: str = "loopback-model", delay: float = 0.0,
                 embedder: Callable[[str], list[float]] | None = None) -> None:
        self.judge = judge
        self.model = model
        self.delay = delay
        self.embedder = embedder
        super().__init__()
        self.base_url = self.url + "/v1"

    def route_of(self, method: str, path: str) -> str:
        if path.endswith("/embeddings"):
            return "embeddings"
        return "chat" if path.endswith("/chat/completions") else "other"

    def answer(self, route: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if route == "embeddings" and self.embedder is not None and isinstance(body, dict):
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            data = [{"object": "embedding", "index": i, "embedding": self.embedder(str(t))}
                    for i, t in enumerate(inputs)]
            return 200, {"object": "list", "model": body.get("model"), "data": data,
                         "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}
        if route != "chat" or not isinstance(body, dict):
            return 404, {"error": {"message": f"no route {method} {path}"}}
        if self.delay:
            time.sleep(self.delay)
        content = json.dumps(self.judge(body.get("messages") or []))
        return 200, {"id": "chatcmpl-loopback", "object": "chat.completion", "model": self.model,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class FakeBraintrust(LoopbackServer):
    """Loopback stand-in for Braintrust's HTTP API (BRAINTRUST.md §1-§2); nothing leaves 127.0.0.1.

    Serves what `bt`, the SDK and flywheel call:
    - "login": POST /api/apikey/login -> org_info (api_url = this server, name = `org_name`);
    - "project": GET /v1/project?project_name=N (the projects added with `add_project`), POST /v1/project;
    - "experiment": GET /v1/experiment?project_id=P[&limit&starting_after] (newest first, paged like the
      REST API's list endpoints), GET /v1/experiment/<id>, POST /v1/experiment (the SDK's create);
    - "dataset": GET /v1/dataset?project_id=P, POST /v1/dataset/<id>/fetch ({events, cursor});
    - "btql": POST /btql. A BTQL pipe query over an experiment added with `add_experiment`
      (`select: * | from: experiment('<id>') spans [| filter: ...] | sort: _pagination_key ASC |
      limit: N [| cursor: "<tok>"]`) answers that experiment's rows a page at a time, in the order
      they were added, with the next page's `cursor`; the only filter understood is the one flywheel
      sends (roots and scorer spans) and any other is a 400, so a changed query cannot pass unnoticed.
      `select: a, b, c` keeps only those top-level fields of each row (the metric guards' read);
      Any other query answers `btql_rows`;
    - "logs": POST /logs3, GET /version, .../summarize (accepted, not stored).
    Use `url` as BRAINTRUST_APP_URL (and BRAINTRUST_API_URL).
    """

    ROOTS_AND_SCORES = "is_root = true OR span_attributes.type = 'score'"

    def __init__(self, btql_rows: list[dict[str, Any]] | None = None, *, org_name: str = "loopback-org") -> None:
        self.btql_rows = btql_rows if btql_rows is not None else [{"id": "r1", "n": 1}]
        self.org_name = org_name
        self.projects: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.experiment_rows: dict[str, list[dict[str, Any]]] = {}
        self.datasets: list[dict[str, Any]] = []
        self.dataset_rows: dict[str, list[dict[str, Any]]] = {}
        super().__init__()

    # what the fake holds --------------------------------------------------------------------------

    def add_project(self, name: str, project_id: str | None = None) -> str:
        project_id = project_id or f"proj-{len(self.projects) + 1:04d}-{name}"
        self.projects.append({"id": project_id, "name": name, "org_id": "org-loopback",
                              "created": "2026-01-01T00:00:00.000Z"})
        return project_id

    def add_experiment(self, project_id: str, name: str, rows: list[dict[str, Any]], *, created: str,
                       metadata: dict[str, Any] | None = None, dataset_id: str | None = None) -> str:
        experiment_id = f"exp-{len(self.experiments) + 1:04d}-{name}"
        self.experiments.append({"id": experiment_id, "name": name, "project_id": project_id, "created": created,
                                 "metadata": metadata, "dataset_id": dataset_id, "dataset_version": None,
                                 "repo_info": None, "deleted_at": None, "public": False})
        self.experiment_rows[experiment_id] = [{**r, "experiment_id": experiment_id} for r in rows]
        return experiment_id

    def add_dataset(self, project_id: str, name: str, rows: list[dict[str, Any]]) -> str:
        dataset_id = f"ds-{len(self.datasets) + 1:04d}-{name}"
        self.datasets.append({"id": dataset_id, "name": name, "project_id": project_id,
                              "created": "2026-01-01T00:00:00.000Z"})
        self.dataset_rows[dataset_id] = [{**r, "dataset_id": dataset_id} for r in rows]
        return dataset_id

    # routes ---------------------------------------------------------------------------------------

    def route_of(self, method: str, path: str) -> str:
        if path == "/api/apikey/login":
            return "login"
        if path == "/btql":
            return "btql"
        if path == "/v1/project":
            return "project"
        if path.startswith("/v1/experiment"):
            return "experiment"
        if path.startswith("/v1/dataset"):
            return "dataset"
        if path.startswith("/logs"):
            return "logs"
        return "other"

    def answer(self, route: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        bare = urlsplit(path).path
        if route == "login":
            return 200, {"org_info": [{"id": "org-loopback", "name": self.org_name, "api_url": self.url,
                                       "proxy_url": self.url, "git_metadata": None}]}
        if route == "btql":
            return self._btql(body)
        if route == "project" and method == "GET":
            wanted = query.get("project_name")
            return 200, {"objects": [p for p in self.projects if not wanted or wanted in (p["name"], p["id"])]}
        if route == "project":
            name = (body or {}).get("name", "loopback-project") if isinstance(body, dict) else "loopback-project"
            return 200, {"id": "proj-loopback", "name": name, "org_id": "org-loopback"}
        if route == "experiment" and method == "GET":
            return self._experiments(bare, query)
        if route == "experiment" and bare == "/v1/experiment":
            body = body if isinstance(body, dict) else {}
            return 200, {"id": "exp-loopback", "name": body.get("name") or "loopback-exp",
                         "project_id": body.get("project_id", "proj-loopback"), "created": "2026-01-01T00:00:00Z"}
        if route == "dataset":
            return self._datasets(method, bare, query, body)
        if path.startswith("/version"):
            return 200, {"version": "loopback", "logs3_payload_max_bytes": None}
        if "/summarize" in path:
            return 200, {"project_name": "loopback", "experiment_name": "loopback-exp", "project_url": "x",
                         "experiment_url": "x", "scores": {}, "metrics": {}}
        return 200, {} if method == "POST" else {"objects": []}

    def _experiments(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path != "/v1/experiment":
            wanted = path.rsplit("/", 1)[-1]
            found = [e for e in self.experiments if e["id"] == wanted]
            return (200, found[0]) if found else (404, {"Code": "NotFound", "Message": f"no experiment {wanted}"})
        listed = sorted((e for e in self.experiments if e["project_id"] == query.get("project_id")),
                        key=lambda e: e["created"], reverse=True)
        if query.get("experiment_name"):
            listed = [e for e in listed if e["name"] == query["experiment_name"]]
        if query.get("starting_after"):
            ids = [e["id"] for e in listed]
            listed = listed[ids.index(query["starting_after"]) + 1:] if query["starting_after"] in ids else []
        return 200, {"objects": listed[:int(query.get("limit") or 1000)]}

    def _datasets(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/v1/dataset":
            return 200, {"objects": [d for d in self.datasets if d["project_id"] == query.get("project_id")]}
        if method == "POST" and path.endswith("/fetch"):
            rows = self.dataset_rows.get(path.split("/")[3], [])
            start = int((body or {}).get("cursor") or 0)
            page = rows[start:start + int((body or {}).get("limit") or 1000)]
            more = start + len(page) < len(rows)
            return 200, {"events": page, "cursor": str(start + len(page)) if more else None}
        return 200, {}

    def _btql(self, body: Any) -> tuple[int, Any]:
        text = str((body or {}).get("query") or "") if isinstance(body, dict) else ""
        source = re.search(r"from:\s*experiment\('([^']+)'\)\s+spans", text)
        if source is None:
            return 200, self._document(self.btql_rows, None)
        clauses = {part.split(":", 1)[0].strip(): part.split(":", 1)[1].strip()
                   for part in text.split(" | ") if ":" in part}
        if clauses.get("filter", self.ROOTS_AND_SCORES) != self.ROOTS_AND_SCORES:
            return 400, {"Code": "BadRequest", "Message": f"loopback: unsupported filter {clauses['filter']!r}"}
        if clauses.get("sort") != "_pagination_key ASC":
            return 400, {"Code": "BadRequest", "Message": "loopback: pages need sort: _pagination_key ASC"}
        rows = self.experiment_rows.get(source.group(1), [])
        if "filter" in clauses:
            rows = [r for r in rows if r.get("is_root") or (r.get("span_attributes") or {}).get("type") == "score"]
        start = int(json.loads(clauses["cursor"])) if "cursor" in clauses else 0
        page = rows[start:start + int(clauses.get("limit") or 1000)]
        more = start + len(page) < len(rows)
        fields = [f.strip() for f in clauses.get("select", "*").split(",")]
        if fields != ["*"]:
            page = [{f: r[f] for f in fields if f in r} for r in page]
        return 200, self._document(page, str(start + len(page)) if more else None)

    @staticmethod
    def _document(rows: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
        columns = sorted({k for row in rows for k in row})
        return {"data": rows, "schema": {"type": "array", "items": {"type": "object",
                                                                    "properties": {c: {} for c in columns}}},
                "cursor": cursor}


class FakeAnthropic(LoopbackServer):
    """Anthropic's Messages API (`POST /v1/messages`, streamed as server-sent events) for running
    the real `claude` CLI offline. It plays a script: each answer to a main-loop request (one that
    offers the Bash tool) is the next list of content blocks, `{"type": "text", ...}` or
    `{"type": "tool_use", "name": ..., "input": ...}`; once the script is used up it answers "done".
    Side requests (no tools: titles, summaries) get a short text. Every request is recorded."""

    def __init__(self, script: Iterable[list[dict[str, Any]]] = ()) -> None:
        self.script = list(script)
        self.turn = 0
        super().__init__()

    def route_of(self, method: str, path: str) -> str:
        if path.endswith("/count_tokens"):
            return "count_tokens"
        return "messages" if path.endswith("/v1/messages") else "other"

    def answer(self, route: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if route == "count_tokens":
            return 200, {"input_tokens": 100}
        if route != "messages" or not isinstance(body, dict):
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
        tools = {t.get("name") for t in body.get("tools") or []}
        blocks: list[dict[str, Any]] = [{"type": "text", "text": "done"}]
        if "Bash" in tools:
            with self.state.lock:
                if self.turn < len(self.script):
                    blocks = self.script[self.turn]
                self.turn += 1
        blocks = [dict(b, id=f"toolu_{self.turn:02d}_{i}") if b["type"] == "tool_use" else b
                  for i, b in enumerate(blocks)]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message = {"id": f"msg_{self.turn:03d}", "type": "message", "role": "assistant",
                   "model": body.get("model", "claude"), "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": 10}}
        if not body.get("stream"):
            return 200, dict(message, content=blocks, stop_reason=stop)
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": message})]
        for i, block in enumerate(blocks):
            if block["type"] == "tool_use":
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            else:
                start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
            events += [("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
                       ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
                       ("content_block_stop", {"type": "content_block_stop", "index": i})]
        events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 10}}),
                   ("message_stop", {"type": "message_stop"})]
        return 200, Raw("".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode(),
                        "text/event-stream")

    def main_requests(self) -> list[dict[str, Any]]:
        """Bodies of the main-loop requests (those offering the Bash tool), in order."""
        return [r.body for r in self.requests_to("messages") if isinstance(r.body, dict)
                and any(t.get("name") == "Bash" for t in r.body.get("tools") or [])]
