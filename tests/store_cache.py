"""Local stores built once per test session and copied into each test that asks for the same content.

Opening a DuckDB store, creating its schema and upserting rows costs far more than copying the file
it leaves; tests that start from identical traces share one build. The copy is the test's own, so
its writes never reach another test. `conftest.py` gives the cache its folder for the session.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_STORE_FILES = ("", ".wal")   # the database file and DuckDB's write-ahead log beside it
_root: Path | None = None
_built: dict[str, tuple[Path, Any]] = {}


def set_root(root: Path | None) -> None:
    """Where this session's built stores live (None: forget them)."""
    global _root
    _root = root
    _built.clear()


def content_key(*parts: Any) -> str:
    """A digest of everything that decides a store's content (rows, project names, ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def copy_of(dest: str | Path, key: str, build: Callable[[Path], T]) -> T:
    """Make `dest` a copy of the store `build(path)` writes for `key` (built on the first call of
    the session) and return what that build returned. `dest` must not exist yet."""
    dest = Path(dest)
    assert not dest.exists(), f"{dest} exists: copy_of makes new stores only"
    if _root is None:
        raise RuntimeError("store_cache has no folder: conftest.py sets it for the session")
    if key not in _built:
        path = _root / f"{len(_built)}" / dest.name
        path.parent.mkdir(parents=True)
        _built[key] = (path, build(path))
    src, result = _built[key]
    dest.parent.mkdir(parents=True, exist_ok=True)
    for suffix in _STORE_FILES:
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dest}{suffix}")
    return result
