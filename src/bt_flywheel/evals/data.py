"""Eval data for `flywheel eval`: local flywheel datasets, case normalisation, split/first filters,
(the eval config itself is evals/eval_config.py).

`local_dataset(...)` is what a user's Braintrust Eval file calls to read a curated local dataset:

    from braintrust import Eval
    from bt_flywheel.evals.runner import local_dataset

    Eval("support-bot", data=lambda: local_dataset("refusals", split="train"), task=..., scores=[...])

It returns Braintrust `EvalCase` objects (id = the dataset row id, origin = the dataset record),
so the same file also runs unchanged under `braintrust eval` / `bt eval` on a machine that has
the store file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.ids import input_hash  # the one definition; re-exported here

DEFAULT_STORE = ".flywheel/store.duckdb"

# What local_dataset() read during the current load, so the runner can record dataset id/version.
_DATASETS_READ: list[dict[str, Any]] = []
# The store the runner is using (its path, or the Store it holds open while preparing an eval);
# local_dataset() defaults to it (else FLYWHEEL_STORE, else the default path).
_ACTIVE_STORE: list[Any] = []


def _store_path(store: str | os.PathLike[str] | None) -> Path:
    if store:
        return Path(store)
    if _ACTIVE_STORE:
        active = _ACTIVE_STORE[-1]
        return Path(getattr(active, "path", active))
    return Path(os.environ.get("FLYWHEEL_STORE") or DEFAULT_STORE)


def _open_store(path: Path) -> Any:
    """The runner's open store when it is this file (a second open in this process would conflict
    with it), else the file opened read-only."""
    from contextlib import nullcontext

    from bt_flywheel.backends.store import Store

    held = _ACTIVE_STORE[-1] if _ACTIVE_STORE else None
    if isinstance(held, Store) and held.path.resolve() == path.resolve():
        return nullcontext(held)
    return Store(path, read_only=True)


def local_dataset(name_or_path: str, *, split: str | None = None, project: str | None = None,
                  store: str | os.PathLike[str] | None = None, first: int | None = None) -> list[Any]:
    """Rows of a local flywheel dataset as Braintrust EvalCases.

    `name_or_path` is a dataset name or id in the local store, or a path to a `dataset_rows.jsonl`
    file (curate's output). `split` keeps rows whose metadata.split equals it; `first` keeps the
    first N after the split filter. Each case's metadata gets `dataset_row_id` (the row id) and
    keeps `split`.
    """
    from braintrust import EvalCase

    path = Path(name_or_path)
    if path.suffix in (".jsonl", ".json") or path.exists():
        rows, info = _rows_from_file(path)
    else:
        rows, info = _rows_from_store(name_or_path, project=project, store=store)
    if split is not None:
        rows = [r for r in rows if ((r.get("metadata") or {}).get("split")) == split]
    if first is not None:
        rows = rows[:first]
    _DATASETS_READ.append({**info, "split": split, "rows": len(rows)})
    cases = []
    for row in rows:
        metadata = dict(row.get("metadata") or {})
        metadata.setdefault("dataset_row_id", row["id"])
        origin = None
        if info.get("dataset_id"):
            origin = {"object_type": "dataset", "object_id": info["dataset_id"], "id": row["id"]}
            if row.get("_xact_id") is not None:
                origin["_xact_id"] = str(row["_xact_id"])
            if row.get("created"):
                origin["created"] = str(row["created"])
        cases.append(EvalCase(input=row.get("input"), expected=row.get("expected"), metadata=metadata,
                              tags=row.get("tags"), id=row["id"], origin=origin))
    return cases


def _rows_from_file(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bt_flywheel.core.fileio import read_jsonl_objects, sha256_file

    rows = read_jsonl_objects(path, what="dataset", require_id=True)

    return rows, {"dataset_id": None, "dataset_name": path.name, "dataset_path": str(path),
                  "dataset_version": "sha256:" + sha256_file(path)}


def _rows_from_store(name: str, *, project: str | None, store: str | os.PathLike[str] | None
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    path = _store_path(store)
    with _open_store(path) as st:
        dataset_id = st.require_object("dataset", name, project=project,
                                       hint="curate one with `flywheel curate`, or pass a dataset_rows.jsonl path")
        rows = list(st.iter_rows("dataset", dataset_id))
        info = st.object_info("dataset", dataset_id) or {}
    rows.sort(key=lambda r: r["id"])
    version = max((int(r["_xact_id"]) for r in rows if r.get("_xact_id") is not None), default=None)
    return rows, {"dataset_id": dataset_id, "dataset_name": info.get("name", name),
                  "dataset_version": None if version is None else str(version)}


# --- turning whatever an Eval's `data` is into a list of case dicts ---------------------------

def materialize(data: Any) -> list[dict[str, Any]]:
    """Resolve an Eval's `data` (list, iterator, callable, class, async generator, EvalCase or
    dict items) to a list of case dicts, as the SDK's runner would iterate it."""
    from braintrust.framework import BaseExperiment

    if inspect.isclass(data):
        data = data()
    if isinstance(data, BaseExperiment):
        raise InputError("data=BaseExperiment() needs Braintrust (hill climbing reads a remote experiment)",
                         hint="run with --remote, or give the Eval a list or a local_dataset(...)")
    if inspect.isfunction(data) or inspect.isroutine(data):
        data = data()
    if inspect.iscoroutine(data):
        data = asyncio.run(data)
    if inspect.isasyncgen(data) or hasattr(data, "__aiter__"):
        async def collect(it: Any) -> list[Any]:
            return [item async for item in it]
        items = asyncio.run(collect(data))
    else:
        items = list(data)
    return [_case_dict(item, i) for i, item in enumerate(items)]


def _case_dict(item: Any, index: int) -> dict[str, Any]:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        case = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    elif isinstance(item, dict):
        case = dict(item)
    else:
        raise InputError(f"data row {index}: expected a dict or EvalCase with an 'input', got {type(item).__name__}")
    if "input" not in case:
        raise InputError(f"data row {index}: missing 'input'")
    return case


def prepare_cases(cases: list[dict[str, Any]], *, split: str | None, first: int | None,
                  source: str) -> list[dict[str, Any]]:
    """Apply --split and --first, then add metadata.dataset_row_id and metadata.split to each case
    (kept if already present). dataset_row_id = metadata.dataset_row_id, else the case/dataset
    record id, else a hash of the input."""
    if split is not None:
        if cases and not any(isinstance(c.get("metadata"), dict) and "split" in c["metadata"] for c in cases):
            raise InputError(f"{source}: --split {split} given but no row has metadata.split",
                             hint="use a curated dataset (local_dataset(...)) or drop --split")
        cases = [c for c in cases if isinstance(c.get("metadata"), dict) and c["metadata"].get("split") == split]
    if first is not None:
        cases = cases[:first]
    out = []
    for case in cases:
        metadata = dict(case.get("metadata") or {})
        if not metadata.get("dataset_row_id"):
            case_id = case.get("id")
            metadata["dataset_row_id"] = case_id if isinstance(case_id, str) and case_id else input_hash(case["input"])
        metadata.setdefault("split", None)
        out.append({**case, "metadata": metadata})
    return out


# --- loading callables ------------------------------------------------------------------------

def load_callable(spec: str, *, base_dir: Path, what: str) -> Callable[..., Any]:
    """`module:function` (importable) or `path/to/file.py:function` (relative to base_dir)."""
    if ":" not in spec:
        raise InputError(f"{what}: {spec!r} is not 'module:function' or 'path.py:function'")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = (base_dir / target).resolve() if not Path(target).is_absolute() else Path(target)
        if not path.exists():
            raise InputError(f"{what}: {path}: file not found")
        module = load_module_from_path(path, f"flywheel_user_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}")
    else:
        added = str(base_dir) not in sys.path
        if added:
            sys.path.insert(0, str(base_dir))
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise InputError(f"{what}: cannot import {target!r} ({exc})") from None
        finally:
            if added:
                sys.path.remove(str(base_dir))
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise InputError(f"{what}: {target} has no attribute {attr!r}") from None
    if not callable(fn):
        raise InputError(f"{what}: {spec} is not callable")
    return fn


def load_module_from_path(path: Path, module_name: str) -> Any:
    """Execute a Python file as a module, with its folder importable (as `bt eval` runs files)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    # Registered before it runs, as importlib does: @dataclass and pickling look the module up by name.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module
