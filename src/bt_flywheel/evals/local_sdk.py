"""What keeps a local `flywheel eval` run off the network while the user's file stays unmodified.

The SDK reaches for Braintrust in two places a local run must answer itself:

- `init_dataset("<project>", "<dataset>")` (also as `Eval(..., data=init_dataset(...))`): while a
  local run loads and runs the file, `braintrust.init_dataset` returns a `LocalDatasetRef`, which
  reads that dataset from the local store (`evals.data.local_dataset`) when the run iterates it.
- A scorer's `trace` argument: the SDK builds a `braintrust.trace.LocalTrace`, whose
  `get_spans()` logs in and queries btql. During a local run the SDK gets `CollectedTrace`
  instead, which answers `get_spans()` from the rows the run has captured, the rows that are
  written to the local store when it ends, filtered exactly as the SDK filters its own span cache.

`local_sdk(collector)` installs both for the duration of a run; `stdout_to_stderr()` sends the
file's own prints to stderr so `eval --json` leaves stdout to the JSON.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from bt_flywheel.core.errors import InputError


class LocalDatasetRef:
    """`init_dataset(project, name)` on the local backend: iterating it yields the local store's
    dataset rows as EvalCases (id = the dataset record id, origin = the record)."""

    def __init__(self, project: str | None, name: str | None, project_id: str | None = None,
                 dataset_id: str | None = None) -> None:
        self.project = project or project_id
        self.name = dataset_id or name
        if not self.name:
            raise InputError("init_dataset(): a dataset name is needed on the local backend",
                             hint="pass init_dataset(project, name), or run with --remote")

    def __iter__(self) -> Iterator[Any]:
        from bt_flywheel.evals.data import local_dataset

        return iter(local_dataset(self.name, project=self.project))

    def fetch(self) -> Iterator[Any]:
        return iter(self)

    def __repr__(self) -> str:
        return f"LocalDatasetRef(project={self.project!r}, name={self.name!r})"


def local_init_dataset(project: str | None = None, name: str | None = None, *args: Any,
                       project_id: str | None = None, dataset_id: str | None = None, **kwargs: Any
                       ) -> LocalDatasetRef:
    """Stands in for `braintrust.init_dataset` during a local run (same leading parameters)."""
    return LocalDatasetRef(project, name, project_id=project_id, dataset_id=dataset_id)


def collected_trace_class(collector: Any) -> type:
    """A `LocalTrace` subclass whose spans come from `collector` (see the module docstring)."""
    from braintrust.trace import LocalTrace, SpanData, _matches_span_filters, _normalize_span_filters

    class CollectedTrace(LocalTrace):
        async def get_spans(self, span_type: list[str] | None = None, *, filters: Any = None,
                            include_scorers: bool = False) -> list[Any]:
            wanted = _normalize_span_filters(filters, span_type)
            spans = [SpanData.from_dict(row) for row in collector.rows_for_root(self._root_span_id)]
            return [s for s in spans
                    if (include_scorers or (s.span_attributes or {}).get("purpose") != "scorer")
                    and _matches_span_filters(s, wanted)]

        async def get_thread(self, options: Any = None) -> list[Any]:
            raise RuntimeError("trace.get_thread() runs a Braintrust preprocessor function, which the local "
                               "backend does not have; use trace.get_spans(), or run with --remote")

    return CollectedTrace


@contextlib.contextmanager
def local_init_dataset_patch() -> Iterator[None]:
    """`braintrust.init_dataset` reads the local store while the block runs."""
    import braintrust
    import braintrust.logger

    saved = braintrust.init_dataset, braintrust.logger.init_dataset
    braintrust.init_dataset = braintrust.logger.init_dataset = local_init_dataset
    try:
        yield
    finally:
        braintrust.init_dataset, braintrust.logger.init_dataset = saved


@contextlib.contextmanager
def local_trace_patch(collector: Any) -> Iterator[None]:
    """Scorers' `trace` reads `collector` while the block runs (the SDK imports LocalTrace from
    braintrust.trace each time it builds one)."""
    import braintrust.trace

    saved = braintrust.trace.LocalTrace
    braintrust.trace.LocalTrace = collected_trace_class(collector)
    try:
        yield
    finally:
        braintrust.trace.LocalTrace = saved


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """The eval file's prints (at import, in tasks and scorers, on any thread) go to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
