"""The Braintrust HTTP side: login, btql (SQL), project/dataset lookup, dataset upserts.

Speaks the protocol `bt` itself uses (BRAINTRUST.md §1):
- `POST {app_url}/api/apikey/login` (Bearer key) -> `org_info[]`; later calls go to the chosen
  org's `api_url` (the org named by BRAINTRUST_ORG_NAME, else the first).
- `POST {api_url}/btql` with `{"query", "fmt": "json", "lint_mode": "strict", "strict_lint_mode": true,
  "query_source"}` (`lint_mode: "default"`, `strict_lint_mode: false` with --force-ignore-linter);
  a lint 400 becomes the same InputError as the local linter.
- `GET /v1/project?org_name=O&project_name=P`, `GET /v1/dataset?org_name=O&project_id=P`,
  `GET /v1/experiment?org_name=O&project_id=P` (newest first, paged with `limit`/`starting_after`),
  `GET /v1/experiment/<id>`, `POST /v1/dataset`, and `POST /logs3 {"rows": [...], "api_version": 2}` in batches of 1000 with
  `"_is_merge": true` when updating an existing dataset (like `bt datasets update`).
All requests go through `http.HttpClient` (retries, backoff, Retry-After, timeouts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from bt_flywheel.backends.http import HttpClient, HttpError
from bt_flywheel.backends.sql import QueryResult
from bt_flywheel.backends.sql_translate import LINT_ERROR, LINT_HINT
from bt_flywheel.core.errors import BackendError, ConfigError, InputError
from bt_flywheel.core.redact import redact_obj, register_secret
from bt_flywheel.core.sqltext import sql_string

QUERY_SOURCE = "bt_flywheel_sql"
DATASET_ROW_FIELDS = ("id", "input", "expected", "metadata", "tags", "origin")
BATCH = 1000


class RemoteClient:
    def __init__(self, api_key: str, *, app_url: str = "https://www.braintrust.dev", org_name: str | None = None,
                 http: HttpClient | None = None) -> None:
        if not api_key:
            raise ConfigError("BRAINTRUST_API_KEY is not set", hint="set it in the environment or .env, or use --local")
        register_secret(api_key)
        self.api_key = api_key
        self.app_url = app_url.rstrip("/")
        self.org_name = org_name
        self.http = http or HttpClient()
        self.api_url: str | None = None
        self.org: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Any, *, http: HttpClient | None = None) -> RemoteClient:
        return cls(settings.api_key, app_url=settings.get("app_url", "https://www.braintrust.dev"),
                   org_name=settings.org_name, http=http)

    # plumbing ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.api_key}"}
        if self.org_name or (self.org and self.org.get("name")):
            headers["x-bt-org-name"] = str(self.org_name or self.org["name"])  # type: ignore[index]
        return headers

    def login(self) -> str:
        """Resolve the org's api_url (cached)."""
        if self.api_url:
            return self.api_url
        body = self.http.request_json("POST", f"{self.app_url}/api/apikey/login",
                                      headers={"authorization": f"Bearer {self.api_key}"})
        orgs = body.get("org_info") if isinstance(body, dict) else None
        if not isinstance(orgs, list) or not orgs:
            raise BackendError(f"POST {self.app_url}/api/apikey/login: no org_info in the response",
                               hint="check BRAINTRUST_API_KEY and BRAINTRUST_APP_URL")
        chosen = orgs[0]
        if self.org_name:
            named = [o for o in orgs if isinstance(o, dict) and o.get("name") == self.org_name]
            if not named:
                raise ConfigError(f"BRAINTRUST_ORG_NAME: this key has no org named {self.org_name!r}")
            chosen = named[0]
        api_url = chosen.get("api_url") if isinstance(chosen, dict) else None
        if not isinstance(api_url, str) or not api_url:
            raise BackendError("login response: org_info[0].api_url is missing")
        self.org = chosen
        self.api_url = api_url.rstrip("/")
        return self.api_url

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None) -> Any:
        """One request to the org's API (`api_url` + path), with retries; returns the parsed JSON."""
        url = self.login() + path + (("?" + urlencode(params)) if params else "")
        return self.http.request_json(method, url, body=body, headers=self._headers())

    @property
    def org_param(self) -> str:
        self.login()
        return str(self.org_name or (self.org or {}).get("name") or "")

    # SQL ---------------------------------------------------------------------------------------

    def btql(self, query: str, *, force_ignore_linter: bool = False, project: str | None = None) -> QueryResult:
        """Run Braintrust SQL remotely; returns rows and schema like the local backend."""
        if project:
            query = self._scope_logs(query, project)
        body = {"query": query, "fmt": "json",
                "lint_mode": "default" if force_ignore_linter else "strict",
                "strict_lint_mode": not force_ignore_linter, "query_source": QUERY_SOURCE}
        try:
            response = self.call("POST", "/btql", body=body)
        except HttpError as exc:
            text = str(exc.body)
            if exc.status == 400 and "lint" in text.lower():
                raise InputError(LINT_ERROR, hint=LINT_HINT) from None
            if exc.status == 400:
                raise InputError(f"sql: Braintrust rejected the query: {exc.message.split(': ', 1)[-1]}") from None
            raise
        if not isinstance(response, dict) or not isinstance(response.get("data"), list) or "schema" not in response:
            missing = "data" if not isinstance(response, dict) or "data" not in response else "schema"
            raise BackendError(f"POST /btql: unexpected response: missing field `{missing}`")
        rows = response["data"]
        schema = response.get("schema") or {}
        properties = (schema.get("items") or {}).get("properties") if isinstance(schema, dict) else None
        columns = list(properties) if isinstance(properties, dict) and properties else (
            list(rows[0]) if rows and isinstance(rows[0], dict) else [])
        extras = {k: v for k, v in response.items() if k not in ("data", "schema", "cursor")}
        return QueryResult(rows=rows, schema=response.get("schema"), columns=columns, cursor=response.get("cursor"),
                           extras=extras)

    def _scope_logs(self, query: str, project: str) -> str:
        """Like `bt sql -p NAME`: `FROM logs` becomes project_logs('<project uuid>'); the rest of the
        query text is sent exactly as written (tokens located with sqlglot's tokenizer)."""
        from sqlglot.tokens import TokenType

        from bt_flywheel.backends.sql_translate import BraintrustSQL

        try:
            tokens = BraintrustSQL().tokenize(query)
        except Exception:
            return query
        spots = [tok for prev, tok in zip(tokens, tokens[1:], strict=False)
                 if prev.token_type in (TokenType.FROM, TokenType.JOIN) and tok.text.lower() == "logs"
                 and tok.token_type == TokenType.VAR]
        if not spots:
            return query
        found = self.find_project(project)
        if not found:
            raise InputError(f"--project {project!r}: no such project in Braintrust")
        replacement = f"project_logs({sql_string(found['id'])})"
        for tok in reversed(spots):
            query = query[:tok.start] + replacement + query[tok.end + 1:]
        return query

    def btql_pages(self, query: str, *, page_size: int = 1000, query_source: str = "bt_flywheel_read") -> list[Any]:
        """Every row of a BTQL pipe query, following the response `cursor` like `bt sync pull`
        (`| limit: N` and then `| cursor: "<tok>"`; no lint_mode)."""
        rows: list[Any] = []
        cursor: str | None = None
        for _ in range(1_000_000):
            text = f"{query} | limit: {page_size}" + (f" | cursor: {json.dumps(cursor)}" if cursor else "")
            response = self.call("POST", "/btql", body={"query": text, "fmt": "json", "query_source": query_source})
            if not isinstance(response, dict) or not isinstance(response.get("data"), list):
                raise BackendError("POST /btql: unexpected response: missing field `data`")
            rows.extend(response["data"])
            cursor = response.get("cursor")
            if not cursor or not response["data"]:
                break
        return rows

    # projects, experiments and datasets ------------------------------------------------------

    def list_experiments(self, project_id: str, *, page_size: int = 100) -> list[dict[str, Any]]:
        """The project's experiments, newest first (the order `GET /v1/experiment` documents)."""
        out: list[dict[str, Any]] = []
        params = {"org_name": self.org_param, "project_id": project_id, "limit": str(page_size)}
        for _ in range(100_000):
            body = self.call("GET", "/v1/experiment", params=params)
            objects = [o for o in (body.get("objects", []) if isinstance(body, dict) else []) if isinstance(o, dict)]
            out.extend(objects)
            if len(objects) < page_size or not objects[-1].get("id"):
                break
            params = {**params, "starting_after": str(objects[-1]["id"])}
        return out

    def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        try:
            body = self.call("GET", f"/v1/experiment/{quote(experiment_id, safe='')}")
        except HttpError as exc:
            if exc.status in (400, 404):
                return None
            raise
        return body if isinstance(body, dict) and body.get("id") else None

    def find_project(self, name_or_id: str) -> dict[str, Any] | None:
        body = self.call("GET", "/v1/project", params={"org_name": self.org_param, "project_name": name_or_id})
        objects = body.get("objects", []) if isinstance(body, dict) else []
        for obj in objects:
            if obj.get("name") == name_or_id or obj.get("id") == name_or_id:
                return obj
        if len(objects) == 1 and not name_or_id:
            return objects[0]
        return None

    def find_dataset(self, project_id: str, name_or_id: str) -> dict[str, Any] | None:
        body = self.call("GET", "/v1/dataset", params={"org_name": self.org_param, "project_id": project_id})
        for obj in body.get("objects", []) if isinstance(body, dict) else []:
            if obj.get("name") == name_or_id or obj.get("id") == name_or_id:
                return obj
        return None

    def create_dataset(self, project_id: str, name: str) -> dict[str, Any]:
        return self.call("POST", "/v1/dataset", body={"name": name, "org_name": self.org_param,
                                                       "project_id": project_id})

    def insert_dataset_rows(self, dataset_id: str, rows: Iterable[dict[str, Any]], *, merge: bool) -> int:
        """POST rows to /logs3 by id (`_is_merge: true` when `merge`); returns how many were sent.
        Secrets in row content are redacted before they leave the machine, as for local files."""
        created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        sent = 0
        batch: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            batch.append(_dataset_event(redact_obj(row), index, dataset_id, created, merge))
            if len(batch) >= BATCH:
                self.call("POST", "/logs3", body={"rows": batch, "api_version": 2})
                sent += len(batch)
                batch = []
        if batch:
            self.call("POST", "/logs3", body={"rows": batch, "api_version": 2})
            sent += len(batch)
        return sent

    def upsert_dataset(self, project: str, dataset: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Create the dataset if needed, then insert (new) or merge (existing) rows by stable id."""
        ids = [_check_row(r, i)["id"] for i, r in enumerate(rows)]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError(f"dataset rows: duplicate id {dup!r}")
        found_project = self.find_project(project)
        if not found_project:
            raise InputError(f"--project {project!r}: no such project in Braintrust",
                             hint="create it in Braintrust first, or check the name")
        existing = self.find_dataset(found_project["id"], dataset)
        created = existing is None
        info = existing or self.create_dataset(found_project["id"], dataset)
        uploaded = self.insert_dataset_rows(info["id"], rows, merge=not created)
        return {"created_dataset": created, "dataset": {"id": info["id"], "name": info.get("name", dataset),
                                                        "project_id": found_project["id"]},
                "mode": "create" if created else "update", "uploaded": uploaded}


def _check_row(row: Any, index: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise InputError(f"dataset rows[{index}]: expected an object")
    unknown = sorted(set(row) - set(DATASET_ROW_FIELDS))
    if unknown:
        raise InputError(f"dataset rows[{index}]: unknown field {unknown[0]!r} "
                         f"(allowed: {', '.join(DATASET_ROW_FIELDS)})")
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise InputError(f"dataset rows[{index}].id: missing a stable id (a non-empty string)")
    return row


def _dataset_event(row: dict[str, Any], index: int, dataset_id: str, created: str, merge: bool) -> dict[str, Any]:
    _check_row(row, index)
    event = {"id": row["id"], "dataset_id": dataset_id, "created": created}
    for key in DATASET_ROW_FIELDS[1:]:
        if key in row:
            event[key] = row[key]
    if merge:
        event["_is_merge"] = True
    return event

