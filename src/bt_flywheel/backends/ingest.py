"""Load span rows into the local store: JSONL, gzip JSONL, and `bt sync pull` output trees.

A `bt sync pull` tree looks like `bt-sync/<type>_<id>/<hash>/{spec,state,manifest}.json` plus
`data/part-*.jsonl`; `spec.json`'s `object_type` (project_logs/experiment/dataset) and
`object_ref` decide where the rows go (BRAINTRUST.md §1).

The whole run is one transaction: a bad row without `skip_bad` raises `InputError`
(`FILE:LINE: field: problem`) and nothing from the run is stored. With `skip_bad`, bad rows are
reported and skipped and the good ones are kept. Re-ingesting the same rows is a no-op
(idempotent by row id; see `Store.upsert_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bt_flywheel.backends.native_ingest import NativeLoader, iter_lines, parse_line
from bt_flywheel.backends.store import Store
from bt_flywheel.core.errors import InputError

_OBJECT_TYPES = ("project_logs", "experiment", "dataset")
INGEST_MEMORY_LIMIT = "512MB"   # DuckDB spills beyond this, so a 1M-span load stays well under 1.5 GB


@dataclass
class Source:
    """One input file and where its rows go."""

    path: Path
    object_type: str = "project_logs"
    object_ref: str | None = None     # id/name from a bt-sync spec (experiment/dataset/project id)


@dataclass
class IngestResult:
    files: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    bad_rows: list[str] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "rows": self.rows, "inserted": self.inserted, "updated": self.updated,
                "unchanged": self.unchanged, "skipped": self.skipped, "bad_rows": self.bad_rows,
                "objects": self.objects}


def discover_sources(path: str | Path, *, object_type: str = "project_logs") -> list[Source]:
    """The files under `path`: a JSONL(.gz) file, a bt-sync tree, or a directory of JSONL files."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: file or directory not found")
    if root.is_file():
        return [Source(root, object_type)]
    specs = sorted(root.rglob("spec.json"))
    sources: list[Source] = []
    for spec_path in specs:
        if not (spec_path.parent / "data").is_dir() and not (spec_path.parent / "manifest.json").exists():
            continue
        sources.extend(_sync_sources(spec_path))
    if sources:
        return sources
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".jsonl")
                                                                   or p.name.endswith(".jsonl.gz")))
    if not files:
        raise InputError(f"{root}: no .jsonl, .jsonl.gz or bt sync pull output (spec.json + data/) found")
    return [Source(p, object_type) for p in files]


def _sync_sources(spec_path: Path) -> list[Source]:
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{spec_path}: cannot read bt sync spec ({exc})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{spec_path}: expected a JSON object")
    ref = str(spec.get("object_ref") or "")
    object_type = spec.get("object_type") or (ref.split(":", 1)[0] if ":" in ref else None)
    if object_type not in _OBJECT_TYPES:
        raise InputError(f"{spec_path}: object_type: expected one of {', '.join(_OBJECT_TYPES)}, "
                         f"got {object_type!r}")
    object_ref = ref.split(":", 1)[1] if ":" in ref else spec.get("object_name")
    parts = sorted((spec_path.parent / "data").glob("part-*.jsonl*"))
    return [Source(p, object_type, object_ref) for p in parts]


def ingest(store: Store, path: str | Path, *, project: str, skip_bad: bool = False,
           experiment: str | None = None, dataset: str | None = None,
           on_bad: Callable[[str], None] | None = None,
           on_progress: Callable[[int], None] | None = None) -> IngestResult:
    """Load every row under `path` into `store` for `project` (see module docstring): DuckDB
    parses and checks the files (`native_ingest`); Python reads only rows it cannot vouch for."""
    sources = _sources(path, experiment, dataset)
    result = IngestResult(files=len(sources))

    def bad(message: str) -> None:
        _report_bad(result, message, skip_bad=skip_bad, on_bad=on_bad)

    def load_file(loader: NativeLoader, source: Source) -> None:
        staged = loader.add_file(source.path)
        if on_progress:
            on_progress(staged)

    return _load_sources(store, sources, result, project=project, name=experiment or dataset,
                         open_loader=lambda key: NativeLoader(store, *key, on_bad=bad), load_file=load_file)


def _sources(path: str | Path, experiment: str | None, dataset: str | None) -> list[Source]:
    if experiment and dataset:
        raise InputError("--experiment and --dataset: give at most one")
    default_type = "experiment" if experiment else "dataset" if dataset else "project_logs"
    return discover_sources(path, object_type=default_type)


def _load_sources(store: Store, sources: list[Source], result: IngestResult, *, project: str, name: str | None,
                  open_loader: Callable[[tuple[str, str]], Any],
                  load_file: Callable[[Any, Source], None]) -> IngestResult:
    """One transaction: a loader per target object (opened on its first file), every file through
    `load_file`, then each loader's counts; loaders are closed whatever happens."""
    loaders: dict[tuple[str, str], Any] = {}
    with store.memory_limit(INGEST_MEMORY_LIMIT), store.transaction():
        try:
            project_id = _resolve_project(store, project, sources)
            for source in sources:
                key = _target(store, source, project_id, name)
                if key not in loaders:
                    loaders[key] = open_loader(key)
                    result.objects.append({"object_type": key[0], "id": key[1]})
                load_file(loaders[key], source)
            for loader in loaders.values():
                _add_counts(result, loader.finish())
        finally:
            for loader in loaders.values():
                loader.close()
    return result


def _report_bad(result: IngestResult, message: str, *, skip_bad: bool,
                on_bad: Callable[[str], None] | None) -> None:
    if not skip_bad:
        raise InputError(message, hint="fix the row, or rerun with --skip-bad to skip bad rows")
    result.skipped += 1
    if len(result.bad_rows) < 1000:
        result.bad_rows.append(message)
    if on_bad:
        on_bad(message)


def _add_counts(result: IngestResult, counts: Any) -> None:
    result.inserted += counts.inserted
    result.updated += counts.updated
    result.unchanged += counts.unchanged


def ingest_rowwise(store: Store, path: str | Path, *, project: str, skip_bad: bool = False,
                   experiment: str | None = None, dataset: str | None = None,
                   on_bad: Callable[[str], None] | None = None,
                   on_progress: Callable[[int], None] | None = None) -> IngestResult:
    """The row-by-row path (every row through `json.loads` and `validate_row`): what `ingest`
    did before it let DuckDB parse; kept as the naive baseline of benchmarks/sql_bench.py."""
    sources = _sources(path, experiment, dataset)
    result = IngestResult(files=len(sources))

    def load_file(loader: Any, source: Source) -> None:
        for number, line in iter_lines(source.path):
            problem = _add_line(loader, line)
            if problem is None:
                if on_progress:
                    on_progress(1)
                continue
            _report_bad(result, f"{source.path}:{number}: {problem}", skip_bad=skip_bad, on_bad=on_bad)

    return _load_sources(store, sources, result, project=project, name=experiment or dataset,
                         open_loader=lambda key: store.bulk_loader(*key, batch_size=25_000), load_file=load_file)


def _add_line(loader: Any, line: bytes) -> str | None:
    row, problem = parse_line(line)
    if problem is not None:
        return problem
    try:
        loader.add(row)
    except ValueError as exc:
        return str(exc)
    return None


def _resolve_project(store: Store, project: str, sources: list[Source]) -> str:
    if not project:
        raise InputError("--project: required (the project these spans belong to)")
    found = store.find_project(project)
    if found:
        return found
    # a bt sync pull of project_logs carries the real project id: keep it so
    # project_logs('<uuid>') and project_logs('<name>') both resolve locally
    for source in sources:
        if source.object_type == "project_logs" and source.object_ref and _looks_like_id(source.object_ref):
            if store.find_project(source.object_ref) is None:
                store.con.execute("INSERT INTO projects VALUES (?, ?, now())", [source.object_ref, project])
                return source.object_ref
    return store.ensure_project(project)


def _target(store: Store, source: Source, project_id: str, name: str | None) -> tuple[str, str]:
    if source.object_type == "project_logs":
        return "project_logs", project_id
    object_name = name or source.object_ref or source.path.stem
    object_id = source.object_ref if source.object_ref and _looks_like_id(source.object_ref) else None
    # an id from a bt-sync spec is global; a name only means something within this project
    existing = store.find_object(source.object_type, object_id) if object_id else None
    if existing:
        return source.object_type, existing
    return source.object_type, store.create_object(source.object_type, object_name, project_id,
                                                   object_id=object_id)


def _looks_like_id(value: str) -> bool:
    parts = value.split("-")
    return len(value) == 36 and [len(p) for p in parts] == [8, 4, 4, 4, 12]
