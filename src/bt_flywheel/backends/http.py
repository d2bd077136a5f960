"""A small JSON-over-HTTP client with retries (stdlib only).

Retries connection errors, timeouts, a 200 whose body is not JSON, HTTP 408/425/429 and 5xx
(plus any statuses a caller adds, e.g. 409 for OpenAI-compatible servers) with exponential
backoff and jitter, honouring `Retry-After` (seconds or an HTTP date, capped at `max_retry_after`). Other 4xx responses are not retried:
they raise `HttpError` (a BackendError carrying `.status` and the parsed `.body`) so callers can
map them (e.g. a btql lint 400 becomes a usage error). The final failure after retries is a
`BackendError` (exit 3) whose one-line message names the method, URL and cause. The one HTTP
client of the project: Braintrust (`remote.RemoteClient`) and the LLM labeler (`label.llm.ChatClient`)
both go through it, so both follow one retry and Retry-After policy.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bt_flywheel import __version__
from bt_flywheel.core.errors import BackendError

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"bt-flywheel/{__version__}"


def pause(seconds: float) -> None:
    """The wait between attempts of every client built without its own `sleep`. Looked up when a
    client waits, so a test can record the delays of clients a command builds (monkeypatch this
    name) instead of sleeping through real backoffs and Retry-After."""
    time.sleep(seconds)


class HttpError(BackendError):
    """A non-retryable HTTP error response (or the last retryable one)."""

    def __init__(self, message: str, *, status: int, body: Any, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body


@dataclass
class HttpClient:
    """`request_json(method, url, body=...)` -> parsed JSON, with retries (see module docstring)."""

    timeout: float = 60.0
    retries: int = 4                    # attempts after the first
    backoff: float = 0.5                # first delay, doubled each retry
    max_backoff: float = 20.0
    max_retry_after: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)
    retry_statuses: frozenset[int] = RETRY_STATUSES
    sleep: Callable[[float], None] | None = None      # None: `pause` (module level)
    rng: Callable[[], float] = random.random
    delays: list[float] = field(default_factory=list)   # what we slept, for tests and logs

    def request_json(self, method: str, url: str, *, body: Any = None, headers: Mapping[str, str] | None = None,
                     timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        merged = {"user-agent": USER_AGENT, "accept": "application/json", **self.headers, **(headers or {})}
        if data is not None:
            merged.setdefault("content-type", "application/json")
        where = f"{method} {_strip_query(url)}"
        last_problem = "no attempt made"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, method=method, headers=merged)
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                    raw = response.read()
                try:
                    return _parse(raw, where)
                except BackendError as exc:  # a 200 with a non-JSON body (a proxy's error page): transient
                    last_problem = exc.message.split(": ", 1)[-1]
            except urllib.error.HTTPError as exc:
                raw = exc.read() if exc.fp else b""
                parsed = _parse_lenient(raw)
                detail = error_detail(parsed)
                if exc.code not in self.retry_statuses:
                    raise HttpError(f"{where}: HTTP {exc.code}{': ' + detail if detail else ''}",
                                    status=exc.code, body=parsed) from None
                last_problem = f"HTTP {exc.code}{': ' + detail if detail else ''}"
                retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                if attempt == self.retries:
                    raise HttpError(f"{where}: {last_problem} (after {attempt + 1} attempts)",
                                    status=exc.code, body=parsed, hint="the service may be down; retry later") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                last_problem = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                if isinstance(reason, TimeoutError):
                    last_problem = f"timed out after {timeout or self.timeout:g}s"
            if attempt < self.retries:
                delay = min(self.max_backoff, self.backoff * (2 ** attempt)) * (0.5 + self.rng() / 2)
                if retry_after is not None:
                    delay = min(self.max_retry_after, retry_after)
                self.delays.append(delay)
                (self.sleep or pause)(delay)
        raise BackendError(f"{where}: {last_problem} (after {self.retries + 1} attempts)",
                           hint="check the network and the service URL")


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _parse(raw: bytes, where: str) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        snippet = raw[:120].decode("utf-8", "replace").replace("\n", " ")
        raise BackendError(f"{where}: response is not JSON ({snippet!r})") from None


def _parse_lenient(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def error_detail(body: Any) -> str:
    """The human part of an error body (`Message`, `message`, `error.message`, `detail`, or the text)."""
    if isinstance(body, dict):
        for key in ("Message", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str):
                return " ".join(value.split())[:300]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return " ".join(value["message"].split())[:300]
    if isinstance(body, str):
        return " ".join(body.split())[:300]
    return ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
