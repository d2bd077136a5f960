"""Run a Braintrust Eval file (or an eval config) and store it as an experiment (DESIGN.md §4).

How it works, and why this route
--------------------------------
The user's file is executed exactly as `braintrust eval` executes it: under the SDK's
`_set_lazy_load(True)`, so each `Eval(...)` registers an `Evaluator` in `framework._evals`
instead of running. We then run each evaluator with the SDK's own `run_evaluator` — the same
code path as `braintrust eval` — so tasks, hooks, trials, `max_concurrency`, scorer calling
conventions (functions, autoevals classes, lists of `Score`) and error handling are the SDK's,
not a re-implementation.

Locally (no key, nothing sent) we point the SDK at an experiment *slug* for our local experiment
id (`parent_context`) and swap the SDK state's background logger for an in-memory collector for
the duration of the run. Every span the SDK logs (root `eval` span per (case, trial), `task`
span, one `score` span per scorer, plus anything the user's task traces) is captured in
Braintrust's own row shape, merged as the server would merge it (`merge_row_batch`), and written
to the local store. We add what the SDK does not log: `metadata.trial` (read from
`hooks.trial_index` by a thin wrapper around the task, keyed by the root span id),
`metadata.dataset_row_id` (existing metadata.dataset_row_id, else the case/dataset record id,
else a hash of the input), `metadata.split`, and the scorer scores rolled up onto the root row's
`scores`. dataset_row_id and split are put into the case metadata before the SDK sees it, so
scorer spans' `input.metadata` carry them too (the facet-optimizer queries filter on them).

Hooking only the returned `EvalResult` list was rejected: it has no span ids, no task/score spans
and no timing, so the scorer-span SQL recipes could not work.

Remotely (`remote=True`, a key configured) we call `init_experiment` like `braintrust eval`
does and let the SDK send everything to Braintrust; the collector then tees the same rows into
the local store under the Braintrust experiment id, so local SQL and `flywheel compare` work on
remote runs too.

Public API: `run_evals(...) -> list[EvalRunResult]`, `run_eval(...) -> EvalRunResult`,
`load_evaluators(path)`, `local_dataset(...)` (re-exported from evals_data).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bt_flywheel.backends.experiment_rollup import roll_up
from bt_flywheel.core.errors import ConfigError, InputError
from bt_flywheel.core.output import Progress
from bt_flywheel.core.redact import redact, redact_obj
from bt_flywheel.evals import data as evals_data
from bt_flywheel.evals.candidate import identify
from bt_flywheel.evals.data import input_hash, local_dataset  # noqa: F401  (public re-export)
from bt_flywheel.evals.local_sdk import local_init_dataset_patch, local_trace_patch, stdout_to_stderr

DEFAULT_MAX_CONCURRENCY = 16
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_EVALCASE_FIELDS = ("input", "expected", "metadata", "tags", "trial_count", "id", "_xact_id", "created",
                    "origin", "upsert_id")
_RUN_LOCK = threading.Lock()


@dataclass
class RowError:
    """A task or scorer that raised on one (case, trial)."""

    kind: str  # "task" | "scorer"
    dataset_row_id: str
    trial: int | None
    message: str
    input_excerpt: str
    scorer: str | None = None

    def describe(self) -> str:
        what = f"scorer {self.scorer}" if self.kind == "scorer" else "task"
        return (f"{what} failed on row {self.dataset_row_id} (trial {self.trial}, input {self.input_excerpt}): "
                f"{self.message}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvalRunResult:
    """What one Eval produced. `scores` is the mean over (case, trial) roots of each score, nulls skipped."""

    experiment_id: str
    experiment_name: str
    project: str
    project_id: str | None
    backend: str
    store: str | None
    rows: int
    trials: int
    roots: int
    spans: int
    scores: dict[str, float | None]
    score_counts: dict[str, int]
    errors: list[RowError] = field(default_factory=list)
    duration_s: float = 0.0
    experiment_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def task_errors(self) -> list[RowError]:
        return [e for e in self.errors if e.kind == "task"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id, "experiment_name": self.experiment_name,
            "project": self.project, "project_id": self.project_id, "backend": self.backend,
            "store": self.store, "experiment_url": self.experiment_url, "rows": self.rows,
            "trials": self.trials, "roots": self.roots, "spans": self.spans, "scores": self.scores,
            "score_counts": self.score_counts, "errors": [e.as_dict() for e in self.errors],
            "duration_s": round(self.duration_s, 3), "metadata": self.metadata,
        }


# --- loading ----------------------------------------------------------------------------------

def load_evaluators(path: str | Path) -> list[Any]:
    """The SDK `Evaluator`s an Eval file registers (as `braintrust eval` loads it), or the one an
    eval config describes."""
    from braintrust.framework import _evals, _set_lazy_load

    source = Path(path)
    if not source.exists():
        raise InputError(f"{source}: file not found")
    if source.suffix.lower() in CONFIG_SUFFIXES:
        return [_evaluator_from_config(source)]
    with _RUN_LOCK, _set_lazy_load(True):
        _evals.clear()
        try:
            module_name = "flywheel_eval_" + hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]
            evals_data.load_module_from_path(source.resolve(), module_name)
            registered = _evals.copy()
        except InputError:
            raise
        except SyntaxError as exc:
            raise InputError(f"{source}:{exc.lineno}: syntax error ({exc.msg})") from None
        except Exception as exc:
            raise InputError(f"{source}: failed to load ({type(exc).__name__}: {_one_line(exc)})") from None
        finally:
            _evals.clear()
    evaluators = [inst.evaluator for inst in registered.evaluators.values()]
    if not evaluators:
        raise InputError(f"{source}: no Eval(...) found", hint="the file must call braintrust.Eval at import time")
    return evaluators


def _evaluator_from_config(path: Path) -> Any:
    from bt_flywheel.evals.eval_config import read_config
    from bt_flywheel.evals.scorers import resolve_scorer

    config = read_config(path)
    base = path.resolve().parent
    task = evals_data.load_callable(config.task, base_dir=base, what=f"{path}: task")
    scorers = [resolve_scorer(spec, base_dir=base, where=f"{path}: scorers[{i}]")
               for i, spec in enumerate(config.scorers)]
    dataset = config.dataset
    if dataset.path is not None:
        target = str((base / dataset.path).resolve())

        def data() -> list[Any]:
            return local_dataset(target)
    else:
        name = dataset.name or ""

        def data() -> list[Any]:
            return local_dataset(name, project=dataset.project)

    evaluator = build_evaluator(config.project, data=data, task=task, scores=scorers,
                                name=config.experiment_name, trials=config.trials,
                                params=dict(config.params) if config.params is not None else None,
                                max_concurrency=config.max_concurrency, description=config.description)
    evaluator._flywheel_config = {"split": config.split, "first": config.first}
    return evaluator


def build_evaluator(project: str, *, data: Any, task: Any, scores: list[Any], name: str | None = None,
                    trials: int = 1, params: dict[str, Any] | None = None, max_concurrency: int | None = None,
                    description: str | None = None) -> Any:
    """An SDK `Evaluator` built by `braintrust.Eval` itself (lazily, not run); run it with `run_evaluator_once`."""
    from braintrust import Eval
    from braintrust.framework import _evals, _set_lazy_load

    with _RUN_LOCK, _set_lazy_load(True):
        _evals.clear()
        try:
            Eval(project, data=data, task=task, scores=scores, experiment_name=name, trial_count=trials,
                 metadata=params, max_concurrency=max_concurrency, description=description)
            return next(iter(_evals.evaluators.values())).evaluator
        finally:
            _evals.clear()


def run_evaluator_once(evaluator: Any, *, source: str | Path, split: str | None = None, first: int | None = None,
                       trials: int | None = None, max_concurrency: int | None = None, name: str | None = None,
                       project: str | None = None, store: str | Path = ".flywheel/store.duckdb",
                       remote: bool = False, settings: Any = None, silent: bool = False) -> EvalRunResult:
    """Run one built evaluator like `run_evals` runs a file's; `source` is the file it came from
    (its hash is recorded as the experiment's eval file, and it is the candidate the run measures)."""
    from bt_flywheel.core.fileio import sha256_file

    path = Path(source)
    return _run_one(evaluator, path=path, file_sha=sha256_file(path), split=split, first=first, trials=trials,
                    max_concurrency=max_concurrency, name=name, project=project, store=Path(store),
                    remote=remote, settings=settings, silent=silent, multiple=False,
                    candidate=identify(path, [path]))


# --- running ----------------------------------------------------------------------------------

def run_eval(source: str | Path, **options: Any) -> EvalRunResult:
    """Run the single Eval in `source` (an Eval file or eval config); see `run_evals` for options."""
    results = run_evals(source, **options)
    if len(results) != 1:
        names = ", ".join(r.experiment_name for r in results)
        raise InputError(f"{source}: expected one Eval, ran {len(results)} ({names})",
                         hint="use run_evals() or pass eval_name=")
    return results[0]


def run_evals(source: str | Path, *, split: str | None = None, first: int | None = None,
              trials: int | None = None, max_concurrency: int | None = None, name: str | None = None,
              project: str | None = None, store: str | Path = ".flywheel/store.duckdb",
              remote: bool = False, settings: Any = None, eval_name: str | None = None,
              silent: bool = False, candidate_files: Sequence[str] = ()) -> list[EvalRunResult]:
    """Run every Eval in an Eval file (or the one in an eval config) with the braintrust SDK.

    split/first filter the data (metadata.split, then the first N rows); trials overrides
    trial_count; max_concurrency bounds concurrent (case, trial) tasks (default: the Eval's, else
    16); name/project override the experiment name and project; store is the local DuckDB file.
    remote=True sends to Braintrust (needs settings with an api_key) and mirrors locally.
    Progress goes to stderr unless silent. Results are stored even when some rows error; check
    `result.errors`. The experiment's metadata.candidate fingerprints the changed files
    (evals.candidate; `candidate_files` adds files git does not see as changed).
    """
    if first is not None and first < 1:
        raise InputError(f"--first: must be >= 1, got {first}")
    if trials is not None and trials < 1:
        raise InputError(f"--trials: must be >= 1, got {trials}")
    if max_concurrency is not None and max_concurrency < 1:
        raise InputError(f"--max-concurrency: must be >= 1, got {max_concurrency}")
    if remote and not (settings is not None and settings.get("api_key")):
        raise ConfigError("--remote needs BRAINTRUST_API_KEY", hint="set it in the environment or .env, or use --local")
    path = Path(source)
    with contextlib.ExitStack() as stack:
        stack.enter_context(stdout_to_stderr())    # the file's prints never reach --json's stdout
        if not remote:
            stack.enter_context(local_init_dataset_patch())
        evaluators = load_evaluators(path)
        if eval_name is not None:
            evaluators = [e for e in evaluators if e.eval_name == eval_name or e.project_name == eval_name]
            if not evaluators:
                raise InputError(f"{path}: no Eval named {eval_name!r}")
        from bt_flywheel.core.fileio import sha256_file

        file_sha = sha256_file(path)
        candidate = identify(path, candidate_files)
        return [_run_one(evaluator, path=path, file_sha=file_sha, split=split, first=first, trials=trials,
                         max_concurrency=max_concurrency, name=name, project=project, store=Path(store),
                         remote=remote, settings=settings, silent=silent, multiple=len(evaluators) > 1,
                         candidate=candidate)
                for evaluator in evaluators]


@dataclass
class _Run:
    """One Eval being run: its cases, where it goes, and what the SDK captured."""

    evaluator: Any
    path: Path
    store: Path
    remote: bool
    cases: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    split: str | None
    first: int | None
    trial_count: int
    concurrency: int
    project_name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    experiment: Any = None
    experiment_id: str = ""
    experiment_name: str = ""
    project_id: str | None = None
    collector: Any = None
    trial_info: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    duration: float = 0.0


def _run_one(evaluator: Any, *, path: Path, file_sha: str, split: str | None, first: int | None,
             trials: int | None, max_concurrency: int | None, name: str | None, project: str | None,
             store: Path, remote: bool, settings: Any, silent: bool, multiple: bool,
             candidate: dict[str, Any] | None = None) -> EvalRunResult:
    from bt_flywheel.backends.store import Store

    # reading the Eval's local datasets and naming its experiment share one open of an existing store
    with Store(store) if not remote and store.exists() else contextlib.nullcontext() as held:
        run = _prepare(evaluator, path=path, store=store, remote=remote, split=split, first=first, trials=trials,
                       max_concurrency=max_concurrency, project=project, held=held)
        run.metadata = _experiment_metadata(evaluator, path=path, file_sha=file_sha, datasets=run.datasets,
                                            split=run.split, first=run.first, trials=run.trial_count,
                                            concurrency=run.concurrency, rows=len(run.cases),
                                            backend="remote" if remote else "local")
        if candidate is not None:
            run.metadata["candidate"] = candidate
        _open_experiment(run, settings, name or evaluator.experiment_name
                         or _default_name(path, evaluator if multiple else None), held=held)
    _execute(run, silent=silent)
    rows, roots = build_experiment_rows(run.collector.rows(), run.trial_info, run.experiment_id)
    experiment_url = _store_experiment(run, rows)
    means, counts = _score_means(roots)
    return EvalRunResult(
        experiment_id=run.experiment_id, experiment_name=run.experiment_name, project=run.project_name,
        project_id=run.project_id, backend="remote" if remote else "local", store=str(store), rows=len(run.cases),
        trials=run.trial_count, roots=len(roots), spans=len(rows), scores=means, score_counts=counts,
        errors=_row_errors(roots), duration_s=run.duration, experiment_url=experiment_url, metadata=run.metadata,
    )


def _prepare(evaluator: Any, *, path: Path, store: Path, remote: bool, split: str | None, first: int | None,
             trials: int | None, max_concurrency: int | None, project: str | None, held: Any = None) -> _Run:
    """Resolve the Eval's data (local datasets read from `store`, or from `held`, that store
    already open) and its run settings."""
    config_defaults = getattr(evaluator, "_flywheel_config", {}) or {}
    split = split if split is not None else config_defaults.get("split")
    first = first if first is not None else config_defaults.get("first")
    evals_data._DATASETS_READ.clear()
    evals_data._ACTIVE_STORE.append(held or str(store))
    try:
        cases = evals_data.prepare_cases(evals_data.materialize(evaluator.data), split=split, first=first,
                                         source=str(path))
    finally:
        evals_data._ACTIVE_STORE.pop()
    if not cases:
        filters = " ".join(f for f in (f"--split {split}" if split else "", f"--first {first}" if first else "") if f)
        raise InputError(f"{path}: no rows to run{' after ' + filters if filters else ''}",
                         hint="check the Eval's data and its metadata.split values")
    return _Run(evaluator=evaluator, path=path, store=store, remote=remote, cases=cases,
                datasets=list(evals_data._DATASETS_READ), split=split, first=first,
                trial_count=trials or evaluator.trial_count or 1,
                concurrency=max_concurrency or evaluator.max_concurrency or DEFAULT_MAX_CONCURRENCY,
                project_name=project or evaluator.project_name)


def _open_experiment(run: _Run, settings: Any, base_name: str, *, held: Any = None) -> None:
    """Create the Braintrust experiment (remote), or pick a free local experiment name and id
    (in `held`, the store already open for writing, if given)."""
    from bt_flywheel.backends.store import Store, local_id

    if run.remote:
        run.experiment = _init_remote_experiment(run.evaluator, settings, run.project_name, base_name, run.metadata)
        run.experiment_id, run.experiment_name = run.experiment.id, run.experiment.name
        return
    with contextlib.nullcontext(held) if held is not None else Store(run.store) as st:
        run.project_id = st.ensure_project(run.project_name)
        run.experiment_name = _unique_name(st, base_name, run.project_id)
    run.experiment_id = local_id("experiment", f"{run.project_id}:{run.experiment_name}")


def _execute(run: _Run, *, silent: bool) -> None:
    """Run the cases with the SDK's own `run_evaluator`, capturing every span it logs."""
    from braintrust.framework import run_evaluator
    from braintrust.logger import parent_context

    progress = Progress(f"eval {run.experiment_name}", total=len(run.cases) * run.trial_count, silent=silent)
    evaluator = dataclasses.replace(
        run.evaluator, data=[{k: c[k] for k in _EVALCASE_FIELDS if k in c} for c in run.cases],
        task=_wrap_task(run.evaluator.task, run.trial_info, progress), trial_count=run.trial_count,
        max_concurrency=run.concurrency)
    _ensure_thread_pool(run.concurrency)
    run.collector = _Collector()
    started = time.monotonic()
    with _RUN_LOCK, _capture(run.collector, tee=run.remote), contextlib.ExitStack() as stack:
        if run.remote:
            async def go() -> Any:
                return await run_evaluator(run.experiment, evaluator, None, [], None, None, False)
        else:
            from braintrust.logger import _internal_get_global_state
            from braintrust.span_identifier_v3 import SpanObjectTypeV3
            from braintrust.span_identifier_v4 import SpanComponentsV4

            stack.enter_context(local_trace_patch(run.collector))   # trace.get_spans() stays local
            state = _internal_get_global_state()
            slug = SpanComponentsV4(object_type=SpanObjectTypeV3.EXPERIMENT, object_id=run.experiment_id).to_str()

            async def go() -> Any:
                with parent_context(slug, state):
                    return await run_evaluator(None, evaluator, None, [], None, state, False)
        try:
            asyncio.run(go())
        finally:
            if run.experiment is not None:
                run.experiment.flush()
    run.duration = time.monotonic() - started
    progress.finish()


def _store_experiment(run: _Run, rows: list[dict[str, Any]]) -> str | None:
    """Write the experiment and its rows to the local store; returns the Braintrust URL (remote)."""
    from bt_flywheel.backends.store import Store, local_id

    experiment_url = None
    if run.remote:
        try:
            experiment_url = run.experiment.summarize(summarize_scores=False).experiment_url
        except Exception:  # the summary is a nicety; the rows were sent already
            experiment_url = None
        run.metadata["experiment_url"] = experiment_url
    with Store(run.store) as st:
        run.project_id = st.ensure_project(run.project_name)
        if not run.remote and st.find_object("experiment", run.experiment_id):  # another run took the name
            run.experiment_name = _unique_name(st, run.experiment_name, run.project_id)
            run.experiment_id = local_id("experiment", f"{run.project_id}:{run.experiment_name}")
            for row in rows:
                row["experiment_id"] = run.experiment_id
        st.create_object("experiment", run.experiment_name, run.project_id, metadata=redact_obj(run.metadata),
                         object_id=run.experiment_id)
        st.upsert_rows("experiment", run.experiment_id, redact_obj(rows))  # task errors may quote a key
    return experiment_url


def _wrap_task(task: Any, trial_info: dict[str, tuple[int, dict[str, Any]]], progress: Progress) -> Any:
    """Wrap the user's task to learn each root span's trial index (hooks.trial_index). The wrapper
    keeps the task sync or async and passes hooks only if the task takes two parameters."""
    from braintrust.util import bt_iscoroutinefunction, get_signature

    try:
        wants_hooks = len(get_signature(task).parameters) == 2
    except Exception:
        wants_hooks = False
    lock = threading.Lock()

    def record(hooks: Any) -> None:
        root = getattr(hooks.span, "root_span_id", None)
        if root is not None:
            trial_info[root] = (hooks.trial_index, dict(hooks.metadata or {}))

    def tick() -> None:
        with lock:
            progress.advance()

    if bt_iscoroutinefunction(task):
        async def async_task(input: Any, hooks: Any) -> Any:  # noqa: A002 (the SDK's name)
            record(hooks)
            try:
                return await (task(input, hooks) if wants_hooks else task(input))
            finally:
                tick()
        return async_task

    def sync_task(input: Any, hooks: Any) -> Any:  # noqa: A002
        record(hooks)
        try:
            return task(input, hooks) if wants_hooks else task(input)
        finally:
            tick()
    return sync_task


def _ensure_thread_pool(workers: int) -> None:
    """The SDK runs sync tasks/scorers in one process-wide thread pool sized to the CPU count,
    which would cap max_concurrency on a 2-core machine. Size it to at least `workers`
    (replacing an idle, smaller pool; the SDK has no public resize)."""
    import os

    from braintrust.framework import _THREAD_POOL_SINGLETON

    wanted = max(workers + 4, os.cpu_count() or 1)
    with _THREAD_POOL_SINGLETON.get() as pool:
        if pool._thread_pool is None:
            pool._max_workers = max(pool._max_workers or 0, wanted)
        elif (pool._max_workers or 0) < wanted:
            old = pool._thread_pool
            pool._thread_pool = None
            pool._max_workers = wanted
            old.shutdown(wait=False)


class _Collector:
    """A stand-in for the SDK's background logger: keeps every logged row in memory, and in tee
    mode also forwards to the real (HTTP) logger."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Any] = []
        self.forward: Any = None

    def log(self, *items: Any) -> None:
        with self.lock:
            self.items.extend(items)
        if self.forward is not None:
            self.forward.log(*items)

    def flush(self, batch_size: int | None = None) -> None:
        if self.forward is not None:
            self.forward.flush(batch_size) if batch_size is not None else self.forward.flush()

    def enforce_queue_size_limit(self, enforce: bool) -> None:
        if self.forward is not None:
            self.forward.enforce_queue_size_limit(enforce)

    def __getattr__(self, name: str) -> Any:  # internal_replace_api_conn, set_masking_function, ...
        forward = self.__dict__.get("forward")
        if forward is None:
            raise AttributeError(name)
        return getattr(forward, name)

    def rows(self) -> list[dict[str, Any]]:
        return self._merged(lambda row: True)

    def rows_for_root(self, root_span_id: str) -> list[dict[str, Any]]:
        """The rows of one trace logged so far, merged (what `trace.get_spans()` answers locally)."""
        return self._merged(lambda row: row.get("root_span_id") == root_span_id)

    def _merged(self, keep: Any) -> list[dict[str, Any]]:
        import json

        from braintrust.bt_json import bt_dumps
        from braintrust.merge_row_batch import merge_row_batch

        with self.lock:
            items = list(self.items)
        resolved = [row for row in (item.get() for item in items) if keep(row)]
        return [json.loads(bt_dumps(r)) for r in merge_row_batch(resolved)]


class _capture:
    """Swap the SDK state's background logger for the collector during a run."""

    def __init__(self, collector: _Collector, *, tee: bool) -> None:
        self.collector = collector
        self.tee = tee

    def __enter__(self) -> _Collector:
        from braintrust.logger import LazyValue, _internal_get_global_state

        self.state = _internal_get_global_state()
        self.saved = self.state._global_bg_logger
        if self.tee:
            self.collector.forward = self.saved.get()
        self.state._global_bg_logger = LazyValue(lambda: self.collector, use_mutex=False)
        return self.collector

    def __exit__(self, *exc: object) -> None:
        self.state._global_bg_logger = self.saved


def _init_remote_experiment(evaluator: Any, settings: Any, project: str, name: str,
                            metadata: dict[str, Any]) -> Any:
    from braintrust.framework import init_experiment
    from braintrust.logger import Dataset

    from bt_flywheel.backends.braintrust import sdk_login
    from bt_flywheel.core.errors import BackendError

    try:
        sdk_login(settings)
        return init_experiment(
            project_name=project, experiment_name=name, description=evaluator.description,
            metadata={**(evaluator.metadata or {}), "flywheel": metadata}, tags=evaluator.tags,
            is_public=evaluator.is_public, update=evaluator.update,
            base_experiment_id=evaluator.base_experiment_id,
            dataset=evaluator.data if isinstance(evaluator.data, Dataset) else None,
        )
    except Exception as exc:
        raise BackendError(f"Braintrust: could not create the experiment ({_one_line(exc)})") from None


# --- turning captured spans into the stored shape ---------------------------------------------

_DROP_KEYS = ("_is_merge", "_merge_paths", "_parent_id", "_object_delete", "_array_concat_paths")


def build_experiment_rows(raw: list[dict[str, Any]], trial_info: dict[str, tuple[int, dict[str, Any]]],
                          experiment_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Captured SDK rows -> stored rows (DESIGN.md §4): root metadata gets trial, dataset_row_id
    and split; scorer scores roll up onto the root. Returns (all rows, root rows)."""
    rows = []
    for row in raw:
        row = {k: v for k, v in row.items() if k not in _DROP_KEYS}
        row["experiment_id"] = experiment_id
        row["is_root"] = not row.get("span_parents")
        rows.append(row)
    by_root: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_root[row.get("root_span_id") or row["id"]].append(row)
    roots = []
    for root_span_id, spans in by_root.items():
        root = next((s for s in spans if s["is_root"]), None)
        if root is None:
            continue
        trial, case_metadata = trial_info.get(root_span_id, (None, {}))
        root["metadata"] = {**case_metadata, **(root.get("metadata") or {}), "trial": trial}
        roots.append(root)
    roll_up(roots, by_root)   # the same roll-up `flywheel ingest` gives SDK-shaped experiments
    roots.sort(key=lambda r: (str(r["metadata"]["dataset_row_id"]), r["metadata"]["trial"]))
    return rows, roots


def _score_means(roots: list[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, int]]:
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    names: list[str] = []
    for root in roots:
        for key, value in (root.get("scores") or {}).items():
            if key not in names:
                names.append(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums[key] += float(value)
                counts[key] += 1
    means = {k: (sums[k] / counts[k] if counts[k] else None) for k in sorted(names)}
    return means, {k: counts[k] for k in sorted(names)}


def _row_errors(roots: list[dict[str, Any]]) -> list[RowError]:
    errors = []
    for root in roots:
        meta = root["metadata"]
        excerpt = _excerpt(root.get("input"))
        if root.get("error"):
            errors.append(RowError("task", str(meta["dataset_row_id"]), meta.get("trial"),
                                   _last_line(root["error"]), excerpt))
        for scorer, info in (meta.get("scorer_errors") or {}).items():
            errors.append(RowError("scorer", str(meta["dataset_row_id"]), meta.get("trial"),
                                   _last_line(info), excerpt, scorer=scorer))
    return errors


# --- small helpers ----------------------------------------------------------------------------

def _experiment_metadata(evaluator: Any, *, path: Path, file_sha: str, datasets: list[dict[str, Any]],
                         split: str | None, first: int | None, trials: int, concurrency: int, rows: int,
                         backend: str) -> dict[str, Any]:
    sha, dirty = _git_info(path)
    dataset = datasets[0] if len(datasets) == 1 else {}
    if not datasets:
        from braintrust.logger import Dataset

        if isinstance(evaluator.data, Dataset):
            dataset = {"dataset_id": getattr(evaluator.data, "id", None), "dataset_name": getattr(evaluator.data, "name", None)}
    return {
        "git_sha": sha, "git_dirty": dirty,
        "dataset_id": dataset.get("dataset_id"), "dataset_name": dataset.get("dataset_name"),
        "dataset_version": dataset.get("dataset_version"),
        **({"datasets": datasets} if len(datasets) > 1 else {}),
        "eval_file": str(path), "eval_file_sha256": file_sha, "eval_name": evaluator.eval_name,
        "params": dict(evaluator.metadata or {}), "description": evaluator.description,
        "tags": list(evaluator.tags or []) or None,
        "trials": trials, "split": split, "first": first, "max_concurrency": concurrency, "rows": rows,
        "backend": backend, "sdk": f"braintrust {_sdk_version()}",
        "runner": "flywheel eval",
    }


def _git_info(path: Path) -> tuple[str | None, bool | None]:
    folder = str(path.resolve().parent)
    try:
        sha = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", folder, "status", "--porcelain"], capture_output=True, text=True,
                                timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return sha or None, bool(status.strip())


def _default_name(path: Path, evaluator: Any) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    stem = path.stem.removeprefix("eval_")
    if evaluator is not None:
        stem = f"{stem}-{evaluator.eval_name}"
    return f"{stem}-{stamp}"


def _unique_name(st: Any, name: str, project_id: str) -> str:
    """Braintrust adds a suffix when an experiment name exists; so do we."""
    if not st.find_object("experiment", name, project_id=project_id):
        return name
    n = 1
    while st.find_object("experiment", f"{name}-{n}", project_id=project_id):
        n += 1
    return f"{name}-{n}"


def _excerpt(value: Any, limit: int = 80) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(redact(text).split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _last_line(text: Any) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return redact(lines[-1] if lines else str(text))[:300]


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))[:300]


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("braintrust")
    except PackageNotFoundError:
        return "?"
