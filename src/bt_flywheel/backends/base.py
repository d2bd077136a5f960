"""The `Backend` protocol: what commands need from where the data lives.

Two implementations: `local.LocalBackend` (the DuckDB store) and `braintrust.BraintrustBackend`
(Braintrust's HTTP API: login, btql, projects, experiments, datasets). Commands build one with
`backend_from_settings(settings)` (core.config's `backend` = local | remote | auto) and call its
methods instead of branching on the backend's name.

Experiment rows come back as root rows (one per (case, trial)) whose `scores` include every
scorer span's score (`rollup_scores`): Braintrust's SDK logs scores only on `score` spans
(BRAINTRUST.md §2), and the local store also rolls them up onto the root, so both shapes read alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bt_flywheel.backends.sql import QueryResult


@dataclass(frozen=True)
class ObjectInfo:
    """An experiment or dataset: its id, name, project and when it was created (ISO 8601)."""

    kind: str                      # "experiment" | "dataset"
    id: str
    name: str
    project_id: str | None = None
    created: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "project_id": self.project_id, "created": self.created,
                "metadata": dict(self.metadata)}


@dataclass(frozen=True)
class Links:
    """Braintrust UI pages of one project (URL shapes: docs/architecture.md, "Links").

    `app_url` is where the app lives (BRAINTRUST_APP_URL, default https://www.braintrust.dev);
    pages are `{app_url}/app/{org}/p/{project}/...`.
    """

    app_url: str
    org: str
    project: str

    def _base(self) -> str:
        from urllib.parse import quote

        return f"{self.app_url.rstrip('/')}/app/{quote(self.org, safe='')}/p/{quote(self.project, safe='')}"

    def project_url(self) -> str:
        return self._base()

    def experiment_url(self, name: str, *, root_span_id: str | None = None) -> str:
        from urllib.parse import quote

        return f"{self._base()}/experiments/{quote(name, safe='')}" + _trace_query(root_span_id)

    def dataset_url(self, name: str) -> str:
        from urllib.parse import quote

        return f"{self._base()}/datasets/{quote(name, safe='')}"

    def trace_url(self, root_span_id: str) -> str:
        """A production trace in the project's logs."""
        return f"{self._base()}/logs" + _trace_query(root_span_id)


def _trace_query(root_span_id: str | None) -> str:
    from urllib.parse import quote

    return f"?r={quote(str(root_span_id), safe='')}" if root_span_id else ""


@runtime_checkable
class Backend(Protocol):
    """Where projects, logs, experiments and datasets live (see the module docstring)."""

    name: str                      # "local" | "remote"

    def reading(self) -> AbstractContextManager[None]:
        """Inside this block, reads and queries share what they can (the local store opens once,
        sandboxed as queries need, instead of once per call). Only reads may run inside it."""
        ...

    def query(self, sql: str, *, project: str | None = None, force_ignore_linter: bool = False) -> QueryResult:
        """Run one Braintrust SQL statement."""
        ...

    def project_id(self, project: str) -> str:
        """The id of a project by name or id; InputError when there is none."""
        ...

    def experiments(self, project: str | None = None) -> list[ObjectInfo]:
        """The project's experiments (every project's when None), newest first."""
        ...

    def experiment(self, name_or_id: str, *, project: str | None = None) -> ObjectInfo:
        """One experiment by name or id (the newest of that name); InputError when absent."""
        ...

    def experiment_roots(self, experiment: ObjectInfo) -> Iterator[dict[str, Any]]:
        """The experiment's root rows, each with every scorer span's score rolled up onto `scores`."""
        ...

    def experiment_span_metrics(self, experiment: ObjectInfo) -> Iterator[dict[str, Any]]:
        """Every span of the experiment, reduced to what metric guards read (`span_metrics_view`)."""
        ...

    def dataset(self, name_or_id: str, *, project: str | None = None) -> ObjectInfo | None:
        """One dataset by name or id, None when absent."""
        ...

    def dataset_rows(self, project: str, dataset: str) -> list[dict[str, Any]]:
        """Every stored row of the dataset (empty when it does not exist yet)."""
        ...

    def upsert_dataset(self, project: str, dataset: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Create the dataset if needed and upsert rows by stable id; returns counts."""
        ...

    def links(self, project: str | None = None) -> Links | None:
        """Pages for the project's objects in the Braintrust UI; None when there are none (local)."""
        ...


def runner_for(backend: Backend, project: str | None) -> Callable[[str], list[dict[str, Any]]]:
    """A `query -> rows` function on the backend (what curation's selection strategies take)."""

    def run(query: str) -> list[dict[str, Any]]:
        return backend.query(query, project=project).rows

    return run


def is_root(row: dict[str, Any]) -> bool:
    return bool(row.get("is_root")) or (row.get("span_attributes") or {}).get("type") == "eval"


def _is_score_span(row: dict[str, Any]) -> bool:
    return (row.get("span_attributes") or {}).get("type") == "score"


def rollup_scores(spans: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Root rows in the order first seen, each with its score spans' scores added to `scores`.

    A score the root row already carries (the local store's roll-up) is kept; a scorer span adds
    the scores the root lacks. Spans that are neither roots nor score spans are ignored.
    """
    roots: dict[str, dict[str, Any]] = {}
    pending: dict[str, dict[str, Any]] = {}
    for span in spans:
        trace = str(span.get("root_span_id") or span.get("span_id") or span.get("id"))
        if is_root(span):
            root = dict(span)
            root["scores"] = _merge_scores(span.get("scores") or {}, pending.pop(trace, {}))
            roots[trace] = root
        elif _is_score_span(span):
            scores = {k: v for k, v in (span.get("scores") or {}).items() if v is not None}
            if trace in roots:
                roots[trace]["scores"] = _merge_scores(roots[trace]["scores"], scores)
            else:
                pending.setdefault(trace, {}).update(scores)
    return list(roots.values())


SPAN_METRIC_FIELDS = ("id", "span_id", "root_span_id", "is_root", "span_attributes", "metrics", "metadata")


def span_metrics_view(span: dict[str, Any]) -> dict[str, Any]:
    """A span as metric guards read it: ids, `is_root`, `span_attributes`, `metrics` (tokens,
    start/end, estimated cost) and `metadata` reduced to its `model` (for the price table)."""
    view = {k: span.get(k) for k in SPAN_METRIC_FIELDS[:-1]}
    model = (span.get("metadata") or {}).get("model") if isinstance(span.get("metadata"), dict) else None
    view["metadata"] = {"model": model} if model is not None else {}
    return view


def _merge_scores(own: dict[str, Any], scorers: dict[str, Any]) -> dict[str, Any]:
    """The root's own non-null scores win; scorer spans fill the rest."""
    return {**own, **{k: v for k, v in scorers.items() if own.get(k) is None}}


def as_backend(source: Any) -> Backend:
    """A Backend as is; a store path (str or PathLike) as the local backend over that file."""
    if isinstance(source, Backend):
        return source
    from bt_flywheel.backends.local import LocalBackend

    return LocalBackend(source)


def backend_from_settings(settings: Any, *, http: Any = None) -> Backend:
    """The backend the settings choose: local, or Braintrust when `backend` resolves to remote."""
    if settings.backend_resolved == "remote":
        from bt_flywheel.backends.braintrust import BraintrustBackend

        return BraintrustBackend.from_settings(settings, http=http)
    from bt_flywheel.backends.local import LocalBackend

    return LocalBackend(settings.store)
