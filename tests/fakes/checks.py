"""Assertions shared by the reliability tests (no network; plain helpers, not servers).

- `store_snapshot(path)`: every table of a local store as sorted text rows, to prove a failed
  command changed nothing already stored.
- `assert_one_line_error(code, err, ...)`: the CLI's error contract (DESIGN.md §10): the exit code,
  exactly one `error:` line on stderr naming what was wrong, and no traceback.
"""

from __future__ import annotations

from pathlib import Path

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
