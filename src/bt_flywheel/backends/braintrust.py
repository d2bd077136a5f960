"""The remote backend: the `Backend` protocol over Braintrust's API (`remote.RemoteClient` speaks
the wire protocol: login, retries, btql, projects, experiments, datasets, /logs3).

- SQL: `POST /btql` with the query as written (`bt sql`'s body).
- Experiments: `GET /v1/experiment?project_id=P` (newest first), then the rows through btql:
  `select: * | from: experiment('<id>') spans | filter: is_root = true OR span_attributes.type =
  'score' | sort: _pagination_key ASC | limit: 1000`, paged with `cursor` like `bt sync pull`.
  Scorer spans' scores are rolled up onto their roots (`base.rollup_scores`), because the SDK
  logs no scores on the root span (BRAINTRUST.md §2). Metric guards read every span's metrics:
  `select: id, span_id, root_span_id, is_root, span_attributes, metrics, metadata | from:
  experiment('<id>') spans | sort: _pagination_key ASC`, paged the same way.
- Datasets: the stored rows via `POST /v1/dataset/<id>/fetch` (so stored splits never move),
  upserts by stable id via `/logs3`.
- Links: the org comes from the login response (`org_info`, as `bt status --json` resolves it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from bt_flywheel.backends.base import SPAN_METRIC_FIELDS, Links, ObjectInfo, rollup_scores, span_metrics_view
from bt_flywheel.backends.remote import RemoteClient
from bt_flywheel.backends.sql import QueryResult
from bt_flywheel.core.errors import BackendError, InputError
from bt_flywheel.core.sqltext import sql_string

FETCH_LIMIT = 1000
_ROOTS_AND_SCORES = "is_root = true OR span_attributes.type = 'score'"
_DATASET_FIELDS = ("id", "input", "expected", "metadata", "tags")


class BraintrustBackend:
    name = "remote"

    def __init__(self, client: RemoteClient, *, project: str | None = None) -> None:
        self.client = client
        self.default_project = project
        self._projects: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Any, *, http: Any = None) -> BraintrustBackend:
        return cls(RemoteClient.from_settings(settings, http=http), project=settings.get("project"))

    def reading(self) -> AbstractContextManager[None]:
        return nullcontext()

    def __repr__(self) -> str:
        return f"BraintrustBackend({self.client.app_url!r})"

    # projects --------------------------------------------------------------------------------

    def _project(self, project: str) -> dict[str, Any]:
        if project not in self._projects:
            found = self.client.find_project(project)
            if not found:
                raise InputError(f"--project {project!r}: no such project in Braintrust",
                                 hint="check the name (or id) and BRAINTRUST_ORG_NAME")
            self._projects[project] = found
        return self._projects[project]

    def project_id(self, project: str) -> str:
        return str(self._project(project)["id"])

    def _project_or_default(self, project: str | None, what: str) -> str:
        chosen = project or self.default_project
        if not chosen:
            raise InputError(f"{what}: Braintrust needs a project", hint="give --project NAME (or FLYWHEEL_PROJECT)")
        return chosen

    # SQL ---------------------------------------------------------------------------------------

    def query(self, sql: str, *, project: str | None = None, force_ignore_linter: bool = False) -> QueryResult:
        return self.client.btql(sql, force_ignore_linter=force_ignore_linter, project=project)

    # experiments -------------------------------------------------------------------------------

    def experiments(self, project: str | None = None) -> list[ObjectInfo]:
        chosen = self._project_or_default(project, "experiments")
        found = self.client.list_experiments(self.project_id(chosen))
        infos = [_experiment_info(o) for o in found if not o.get("deleted_at")]
        # newest first whatever order the server used (created is ISO 8601, so text order is time order)
        return sorted(infos, key=lambda i: i.created or "", reverse=True)

    def experiment(self, name_or_id: str, *, project: str | None = None) -> ObjectInfo:
        chosen = project or self.default_project
        if chosen:
            listed = self.experiments(chosen)
            for info in [i for i in listed if i.id == name_or_id] or [i for i in listed if i.name == name_or_id]:
                return info
            known = ", ".join(i.name for i in listed[:10]) or "(none)"
            raise InputError(f"experiment {name_or_id!r}: not found in Braintrust project {chosen!r}",
                             hint=f"known experiments: {known}")
        found = self.client.get_experiment(name_or_id)
        if found is None:
            raise InputError(f"experiment {name_or_id!r}: not found in Braintrust",
                             hint="give --project NAME to look it up by name")
        return _experiment_info(found)

    def experiment_roots(self, experiment: ObjectInfo) -> Iterator[dict[str, Any]]:
        spans = self.client.btql_pages(
            f"select: * | from: experiment({sql_string(experiment.id)}) spans | filter: {_ROOTS_AND_SCORES} | sort: _pagination_key ASC")
        yield from rollup_scores(s for s in spans if isinstance(s, dict))

    def experiment_span_metrics(self, experiment: ObjectInfo) -> Iterator[dict[str, Any]]:
        spans = self.client.btql_pages(f"select: {', '.join(SPAN_METRIC_FIELDS)} | from: experiment("
                                       f"{sql_string(experiment.id)}) spans "
                                       "| sort: _pagination_key ASC")
        yield from (span_metrics_view(s) for s in spans if isinstance(s, dict))

    # datasets ----------------------------------------------------------------------------------

    def dataset(self, name_or_id: str, *, project: str | None = None) -> ObjectInfo | None:
        chosen = self._project_or_default(project, "dataset")
        found = self.client.find_project(chosen)
        if not found:
            return None
        info = self.client.find_dataset(str(found["id"]), name_or_id)
        if not info:
            return None
        return ObjectInfo(kind="dataset", id=str(info["id"]), name=str(info.get("name") or name_or_id),
                          project_id=str(found["id"]), created=info.get("created"),
                          metadata=info.get("metadata") or {})

    def dataset_rows(self, project: str, dataset: str) -> list[dict[str, Any]]:
        info = self.dataset(dataset, project=project)
        if info is None:
            return []
        rows: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        for _ in range(100_000):
            body: dict[str, Any] = {"limit": FETCH_LIMIT}
            if cursor:
                body["cursor"] = cursor
            response = self.client.call("POST", f"/v1/dataset/{info.id}/fetch", body=body)
            if not isinstance(response, dict) or not isinstance(response.get("events"), list):
                raise BackendError(f"POST /v1/dataset/{info.id}/fetch: unexpected response (no events)")
            for event in response["events"]:
                if isinstance(event, dict) and isinstance(event.get("id"), str):
                    rows[event["id"]] = event
            cursor = response.get("cursor")
            if not cursor or not response["events"]:
                break
        return list(rows.values())

    def upsert_dataset(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        records = [{k: v for k, v in r.items() if k in _DATASET_FIELDS} for r in rows]
        result = self.client.upsert_dataset(project, dataset, records)
        return {"uploaded": result.get("uploaded", 0), "mode": result.get("mode"),
                "dataset_id": (result.get("dataset") or {}).get("id")}

    # links -------------------------------------------------------------------------------------

    def links(self, project: str | None = None) -> Links | None:
        chosen = project or self.default_project
        if not chosen:
            return None
        self.client.login()
        org = self.client.org_param
        if not org:
            return None
        # the project's own name, whether we were given its name or its id
        name = str(self._project(chosen).get("name") or chosen)
        return Links(app_url=self.client.app_url, org=org, project=name)


def _experiment_info(obj: dict[str, Any]) -> ObjectInfo:
    """An experiment object of the REST API, with what compare reads lifted into `metadata`:
    dataset id/version and git sha from the object, trials/split from `metadata.flywheel`
    (what `flywheel eval --remote` records)."""
    meta = dict(obj.get("metadata") or {})
    flywheel = meta.get("flywheel") if isinstance(meta.get("flywheel"), dict) else {}
    lifted = {**flywheel, **meta}
    for key in ("dataset_id", "dataset_version"):
        if obj.get(key) is not None:
            lifted[key] = obj[key]
    commit = (obj.get("repo_info") or {}).get("commit") if isinstance(obj.get("repo_info"), dict) else None
    if commit:
        lifted.setdefault("git_sha", commit)
    return ObjectInfo(kind="experiment", id=str(obj["id"]), name=str(obj.get("name") or obj["id"]),
                      project_id=obj.get("project_id"), created=obj.get("created"), metadata=lifted)


def sdk_login(settings: Any) -> None:
    """Log the braintrust SDK in with these settings, forced (a second run in the same process may
    name another API URL). A forced re-login does not always reach the SDK's background logger,
    which then keeps posting rows to the old URL: point it at the connection this login made."""
    import braintrust
    from braintrust.logger import _internal_get_global_state

    braintrust.login(api_key=settings.get("api_key"), app_url=settings.get("app_url"),
                     org_name=settings.get("org_name"), force_login=True)
    state = _internal_get_global_state()
    state._global_bg_logger.get().internal_replace_api_conn(state.api_conn())
