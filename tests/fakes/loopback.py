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
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
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
        self.httpd.shutdown()
        self.httpd.server_close()

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
    """Loopback Braintrust API (BRAINTRUST.md §1-§2): login, btql, and what the SDK calls for an Eval.

    Routes: "login" (POST /api/apikey/login -> org_info with api_url = this server), "btql"
    (POST /btql -> {"data": btql_rows, "schema": ...}), "project", "experiment", "logs" and "other".
    Use `url` as BRAINTRUST_APP_URL (and BRAINTRUST_API_URL).
    """

    def __init__(self, btql_rows: list[dict[str, Any]] | None = None) -> None:
        self.btql_rows = btql_rows if btql_rows is not None else [{"id": "r1", "n": 1}]
        super().__init__()

    def route_of(self, method: str, path: str) -> str:
        if path == "/api/apikey/login":
            return "login"
        if path == "/btql":
            return "btql"
        if path == "/v1/project":
            return "project"
        if path == "/v1/experiment":
            return "experiment"
        if path.startswith("/logs"):
            return "logs"
        return "other"

    def answer(self, route: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if route == "login":
            return 200, {"org_info": [{"id": "org-loopback", "name": "loopback-org", "api_url": self.url,
                                       "proxy_url": self.url, "git_metadata": None}]}
        if route == "btql":
            columns = sorted({k for row in self.btql_rows for k in row})
            return 200, {"data": self.btql_rows,
                         "schema": {"type": "array", "items": {"type": "object",
                                                               "properties": {c: {} for c in columns}}},
                         "cursor": None}
        if route == "project":
            name = (body or {}).get("name", "loopback-project") if isinstance(body, dict) else "loopback-project"
            return 200, {"id": "proj-loopback", "name": name, "org_id": "org-loopback"}
        if route == "experiment":
            body = body if isinstance(body, dict) else {}
            return 200, {"id": "exp-loopback", "name": body.get("name") or "loopback-exp",
                         "project_id": body.get("project_id", "proj-loopback"), "created": "2026-01-01T00:00:00Z"}
        if path.startswith("/version"):
            return 200, {"version": "loopback", "logs3_payload_max_bytes": None}
        if "/summarize" in path:
            return 200, {"project_name": "loopback", "experiment_name": "loopback-exp", "project_url": "x",
                         "experiment_url": "x", "scores": {}, "metrics": {}}
        return 200, {} if method == "POST" else {"objects": []}


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
