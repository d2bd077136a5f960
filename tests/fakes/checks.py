"""Assertions shared by the reliability tests (no network; plain helpers, not servers).

- `store_snapshot(path)`: every table of a local store as sorted text rows, to prove a failed
  command changed nothing already stored.
- `store_state(path)`: the same proof, cheaper to repeat: it keeps the store's bytes, and two states
  are equal when the bytes are (the same bytes hold the same rows) or, when they differ, when
  their `store_snapshot`s are (a write that changed nothing may still move bytes).
- `assert_one_line_error(code, err, ...)`: the CLI's error contract (DESIGN.md §10): the exit code,
  exactly one `error:` line on stderr naming what was wrong, and no traceback.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "', "  raise ", "internal error")


def store_snapshot(path: str | Path) -> dict[str, list[tuple[str, ...]]]:
    """{table: sorted rows as text} for projects, objects and spans (opened read-only)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        out: dict[str, list[tuple[str, ...]]] = {}
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = 'main' ORDER BY 1").fetchall():
            rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
            out[table] = sorted(tuple("" if v is None else str(v) for v in row) for row in rows)
        return out
    finally:
        con.close()


_STORE_FILES = ("", ".wal")   # the database file and DuckDB's write-ahead log beside it


class StoreState:
    """A local store's content at one moment; compare two with `==` (see `store_state`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files = {suffix: _read(Path(f"{self.path}{suffix}")) for suffix in _STORE_FILES}
        self._tables: dict[str, list[tuple[str, ...]]] | None = None

    def tables(self) -> dict[str, list[tuple[str, ...]]]:
        """`store_snapshot` of these bytes, restored into a scratch folder."""
        if self._tables is None:
            scratch = Path(tempfile.mkdtemp(prefix="store-state-"))
            try:
                for suffix, data in self.files.items():
                    if data is not None:
                        Path(f"{scratch / self.path.name}{suffix}").write_bytes(data)
                self._tables = store_snapshot(scratch / self.path.name)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return self._tables

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, StoreState):
            return NotImplemented
        return self.files == other.files or self.tables() == other.tables()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._tables is None:
            return f"StoreState({self.path})"
        return f"StoreState({self.path}: {self._tables!r})"


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def store_state(path: str | Path) -> StoreState:
    """What the store at `path` holds now, as bytes; `==` falls back to the rows when bytes differ."""
    return StoreState(path)


def assert_one_line_error(code: int, err: str, *, expect_code: int | tuple[int, ...] = 2,
                          names: tuple[str, ...] = (), only_line: bool = True) -> str:
    """Check the error contract and return the `error:` line."""
    codes = expect_code if isinstance(expect_code, tuple) else (expect_code,)
    assert code in codes, f"exit {code}, expected {codes}; stderr: {err!r}"
    for marker in TRACEBACK_MARKERS:
        assert marker not in err, f"traceback-like text {marker!r} on stderr: {err!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"expected one 'error:' line, got {errors!r} in {err!r}"
    if only_line:
        assert lines == errors, f"stderr has more than the error line: {err!r}"
    for name in names:
        assert name in errors[0], f"{name!r} not named in {errors[0]!r}"
    return errors[0]
