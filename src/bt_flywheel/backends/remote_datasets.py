"""Curation against Braintrust: candidates via POST /btql, the dataset's stored rows via
POST /v1/dataset/<id>/fetch (so stored splits never move), upserts by stable id via /logs3.

A thin adapter over `remote.RemoteClient` (which owns login, retries and the wire protocol).
"""

from __future__ import annotations

from typing import Any

from bt_flywheel.backends.remote import RemoteClient
from bt_flywheel.core.errors import BackendError, InputError

FETCH_LIMIT = 1000


class BraintrustClient:
    def __init__(self, client: RemoteClient) -> None:
        self.client = client
        self._projects: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> BraintrustClient:
        return cls(RemoteClient.from_settings(settings))

    def project_id(self, project: str) -> str:
        if project not in self._projects:
            found = self.client.find_project(project)
            if not found:
                raise InputError(f"--project {project!r}: no such project in Braintrust")
            self._projects[project] = found["id"]
        return self._projects[project]

    def runner(self, project: str) -> Any:
        def run(query: str) -> list[dict[str, Any]]:
            return self.client.btql(query, project=project).rows

        return run

    def fetch_dataset(self, project: str, dataset: str) -> list[dict[str, Any]]:
        """Every stored row of the dataset (empty when it does not exist yet)."""
        found = self.client.find_project(project)
        if not found:
            return []
        info = self.client.find_dataset(found["id"], dataset)
        if not info:
            return []
        rows: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        for _ in range(100000):
            body: dict[str, Any] = {"limit": FETCH_LIMIT}
            if cursor:
                body["cursor"] = cursor
            response = self.client._call("POST", f"/v1/dataset/{info['id']}/fetch", body=body)
            if not isinstance(response, dict) or not isinstance(response.get("events"), list):
                raise BackendError(f"POST /v1/dataset/{info['id']}/fetch: unexpected response (no events)")
            for event in response["events"]:
                if isinstance(event, dict) and isinstance(event.get("id"), str):
                    rows[event["id"]] = event
            cursor = response.get("cursor")
            if not cursor or not response["events"]:
                break
        return list(rows.values())

    def upsert_dataset(self, project: str, dataset: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        records = [{k: v for k, v in r.items() if k in ("id", "input", "expected", "metadata", "tags")} for r in rows]
        result = self.client.upsert_dataset(project, dataset, records)
        return {"uploaded": result.get("uploaded", 0), "mode": result.get("mode"),
                "dataset_id": (result.get("dataset") or {}).get("id")}
