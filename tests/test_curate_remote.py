"""Curation upserting to Braintrust by stable id, against a loopback Braintrust API inside this
test (127.0.0.1: login, projects, datasets, dataset fetch, /logs3); nothing touches the internet.
Candidates come from the local store so the test exercises the remote dataset side only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fakes.loopback import LoopbackHTTPServer, stop_server
from test_curate import STORE, load, make_spans

from bt_flywheel.backends.braintrust import BraintrustBackend
from bt_flywheel.backends.http import HttpClient
from bt_flywheel.backends.remote import RemoteClient
from bt_flywheel.backends.sql import run_query
from bt_flywheel.curate.pipeline import CurateOptions, curate, make_labeler


class FakeBraintrust:
    def __init__(self) -> None:
        self.projects = [{"id": "proj-remote-1", "name": "support"}]
        self.datasets: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.logs3_rows = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: Any, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/v1/project":
                    name = query.get("project_name")
                    self._send({"objects": [p for p in fake.projects if not name or p["name"] == name]})
                elif url.path == "/v1/dataset":
                    self._send({"objects": [d for d in fake.datasets.values()
                                            if d["project_id"] == query.get("project_id")]})
                else:
                    self._send({"error": "not found"}, 404)

            def do_POST(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                body = self._body()
                if url.path == "/api/apikey/login":
                    self._send({"org_info": [{"id": "org", "name": "acme", "api_url": fake.url}]})
                elif url.path == "/v1/dataset":
                    dataset_id = f"ds-{len(fake.datasets) + 1}"
                    fake.datasets[dataset_id] = {"id": dataset_id, "name": body["name"], "project_id": body["project_id"]}
                    fake.rows[dataset_id] = {}
                    self._send(fake.datasets[dataset_id])
                elif url.path.startswith("/v1/dataset/") and url.path.endswith("/fetch"):
                    dataset_id = url.path.split("/")[3]
                    events = list(fake.rows.get(dataset_id, {}).values())
                    start = int(body.get("cursor") or 0)
                    page = events[start:start + body.get("limit", 1000)]
                    more = start + len(page) < len(events)
                    self._send({"events": page, "cursor": str(start + len(page)) if more else None})
                elif url.path == "/logs3":
                    for row in body["rows"]:
                        fake.logs3_rows += 1
                        table = fake.rows[row["dataset_id"]]
                        stored = table.get(row["id"], {}) if row.get("_is_merge") else {}
                        stored.update({k: v for k, v in row.items() if k != "_is_merge"})
                        table[row["id"]] = stored
                    self._send({"ok": True})
                else:
                    self._send({"error": "not found"}, 404)

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        stop_server(self.server)


@pytest.fixture
def braintrust() -> Iterator[FakeBraintrust]:
    fake = FakeBraintrust()
    yield fake
    fake.close()


def test_remote_upsert_by_stable_id_is_idempotent_and_keeps_stored_splits(braintrust: FakeBraintrust) -> None:
    load(make_spans(40))
    backend = BraintrustBackend(RemoteClient("bt-test-key-0000000000", app_url=braintrust.url,
                                             http=HttpClient(retries=0)))

    def runner(query: str) -> list[dict[str, Any]]:
        return run_query(STORE, query, project="support").rows

    def options(per_bucket: int) -> CurateOptions:
        return CurateOptions(project="support", out_dir=Path("cur"), strategy="score-balanced", store_path=STORE,
                             score="resolution", lo=0.0, hi=1.0, per_bucket=per_bucket, window_days=30,
                             dataset="ds")

    labeler = make_labeler("score", score="resolution")
    first = curate(options(5), labeler=labeler, runner=runner, backend=backend)
    assert first["dataset"]["plan"]["insert"] == 10 and first["dataset"]["written"]
    (dataset_id,) = braintrust.rows
    stored = braintrust.rows[dataset_id]
    assert len(stored) == 10 and all(len(i) == 32 for i in stored)
    assert all(r["metadata"]["source"]["project_id"] == "proj-remote-1" for r in stored.values())
    splits = {i: r["metadata"]["split"] for i, r in stored.items()}

    sent = braintrust.logs3_rows
    again = curate(options(5), labeler=labeler, runner=runner, backend=backend)
    assert again["dataset"]["plan"] == {"insert": 0, "update": 0, "unchanged": 10, "not_uploaded_pending": 0,
            "label_changes": {}, "kept_stronger_labels": {}}
    assert braintrust.logs3_rows == sent  # a rerun sends nothing

    # the remote dataset is authoritative: a split stored there never moves, even with no local file
    Path("cur/dataset_rows.jsonl").unlink()
    more = curate(options(12), labeler=labeler, runner=runner, backend=backend)
    assert more["dataset"]["plan"]["insert"] > 0 and more["dataset"]["plan"]["update"] == 0
    assert {i: braintrust.rows[dataset_id][i]["metadata"]["split"] for i in splits} == splits
