"""The local backend: the `Backend` protocol over the DuckDB store (`store.Store`, `sql.run_query`).

Every call opens the store for as long as it needs it (read-only for reads), so several flywheel
processes can read while none writes; a command that makes many reads or queries in a row wraps
them in `reading()`, which opens the store once, sandboxed as queries need, for all of them
(DuckDB takes about 20 ms to open a database). No links: local objects have no pages to point to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bt_flywheel.backends.base import Links, ObjectInfo, rollup_scores, span_metrics_view
from bt_flywheel.backends.sql import QueryResult
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.redact import redact_obj

# an experiment's (case, trial) roots, and the SDK's scorer spans whose scores roll up onto them
ROOT_WHERE = "(is_root OR json_extract_string(span_attributes, '$.type') = 'eval')"
ROOTS_AND_SCORES_WHERE = ("(is_root OR json_extract_string(span_attributes, '$.type') IN ('eval', 'score'))")


class LocalBackend:
    name = "local"

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.store_path = Path(store_path)
        self._held: Any = None      # the read-only store `reading()` keeps open

    @contextmanager
    def reading(self) -> Iterator[None]:
        if self._held is not None or not self.store_path.exists():
            yield
            return
        from bt_flywheel.backends.store import Store

        with Store(self.store_path, read_only=True, sandboxed=True) as store:
            self._held = store
            try:
                yield
            finally:
                self._held = None

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.store_path)!r})"

    def _open(self, *, read_only: bool = True) -> Any:
        from bt_flywheel.backends.store import Store

        if self._held is not None:
            if not read_only:
                raise RuntimeError("LocalBackend: a write inside reading()")
            return nullcontext(self._held)
        return Store(self.store_path, read_only=read_only)

    def query(self, sql: str, *, project: str | None = None, force_ignore_linter: bool = False) -> QueryResult:
        from bt_flywheel.backends.sql import run_query

        return run_query(self._held or self.store_path, sql, project=project, force_ignore_linter=force_ignore_linter)

    def project_id(self, project: str) -> str:
        with self._open() as store:
            return self._project_id(store, project)

    def _project_id(self, store: Any, project: str) -> str:
        found = store.find_project(project)
        if found is None:
            raise InputError(f"project {project!r} not found in the local store {self.store_path}",
                             hint="check --project, or ingest its traces first")
        return str(found)

    def experiments(self, project: str | None = None) -> list[ObjectInfo]:
        if not self.store_path.exists():
            return []
        with self._open() as store:
            project_id = self._project_id(store, project) if project else None
            return [_info("experiment", o) for o in store.list_objects("experiment", project_id)]

    def experiment(self, name_or_id: str, *, project: str | None = None) -> ObjectInfo:
        with self._open() as store:
            project_id = self._project_id(store, project) if project else None
            object_id = store.find_object("experiment", name_or_id, project_id=project_id)
            if object_id is None:
                known = [o["name"] for o in store.list_objects("experiment", project_id)][:10]
                raise InputError(f"experiment {name_or_id!r}: not found in the local store {self.store_path}",
                                 hint=f"known experiments: {', '.join(known) or '(none)'}")
            return _info("experiment", store.object_info("experiment", object_id) or {"id": object_id,
                                                                                      "name": name_or_id})

    def experiment_roots(self, experiment: ObjectInfo) -> Iterator[dict[str, Any]]:
        with self._open() as store:
            roots = list(store.iter_rows("experiment", experiment.id, where=ROOT_WHERE))
            # SDK-shaped rows carry no scores on the root: read the scorer spans too and roll them up
            # (rows stored by `flywheel eval` are rolled up already and need no second read)
            spans = None if all(r.get("scores") for r in roots) else list(
                store.iter_rows("experiment", experiment.id, where=ROOTS_AND_SCORES_WHERE))
        yield from roots if spans is None else rollup_scores(spans)

    def experiment_span_metrics(self, experiment: ObjectInfo) -> Iterator[dict[str, Any]]:
        with self._open() as store:
            spans = [span_metrics_view(s) for s in store.iter_span_metrics("experiment", experiment.id)]
        yield from spans

    def dataset(self, name_or_id: str, *, project: str | None = None) -> ObjectInfo | None:
        if not self.store_path.exists():
            return None
        with self._open() as store:
            project_id = store.find_project(project) if project else None
            if project and project_id is None:
                return None
            object_id = store.find_object("dataset", name_or_id, project_id=project_id)
            info = store.object_info("dataset", object_id) if object_id else None
            return _info("dataset", info) if info else None

    def dataset_rows(self, project: str, dataset: str) -> list[dict[str, Any]]:
        info = self.dataset(dataset, project=project)
        if info is None:
            return []
        with self._open() as store:
            return list(store.iter_rows("dataset", info.id))

    def upsert_dataset(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        with self._open(read_only=False) as store:
            project_id = store.ensure_project(project)
            dataset_id = store.create_object("dataset", dataset, project_id,
                                             metadata={"created_by": "flywheel curate"})
            # a model's rationale may quote a key it saw: the store is an artifact too
            return store.upsert_rows("dataset", dataset_id, [redact_obj(dict(r)) for r in rows]).as_dict()

    def links(self, project: str | None = None) -> Links | None:
        return None


def _info(kind: str, info: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(kind=kind, id=str(info["id"]), name=str(info.get("name") or info["id"]),
                      project_id=info.get("project_id"), created=info.get("created"),
                      metadata=info.get("metadata") or {})
