"""Printing: stdout is data only (JSON, JSONL, CSV, table); progress goes to stderr.

Everything printed passes through `redact`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from bt_flywheel.core.redact import redact


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_json(value: Any, *, indent: int | None = 2) -> str:
    return redact(json.dumps(value, indent=indent, ensure_ascii=False, default=str))


def print_json(value: Any, *, out: TextIO | None = None, indent: int | None = 2) -> None:
    (out or sys.stdout).write(to_json(value, indent=indent) + "\n")


def print_line(text: str, *, out: TextIO | None = None) -> None:
    """One line of human-readable text on stdout, redacted."""
    (out or sys.stdout).write(redact(text) + "\n")


def print_jsonl(rows: Iterable[Any], *, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    for row in rows:
        stream.write(to_json(row, indent=None) + "\n")


def print_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, out: TextIO | None = None) -> None:
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) if row.get(c) is not None else "" for c in columns])
    (out or sys.stdout).write(redact(buffer.getvalue()))


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, max_width: int = 60) -> str:
    """A `+---+` bordered table like `bt sql`; `(no rows)` when empty."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def clip(text: str) -> str:
        text = text.replace("\n", "\\n")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[clip(_cell(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v.ljust(w)} " for v, w in zip(values, widths, strict=True)) + "|"

    body = [border, line(columns), border, *(line(r) for r in cells), border]
    return redact("\n".join(body))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(format_table(rows, columns) + "\n")


_quiet = False


def set_quiet(quiet: bool) -> bool:
    """Silence (or restore) progress on stderr for this process; returns the previous setting."""
    global _quiet
    previous, _quiet = _quiet, bool(quiet)
    return previous


class Progress:
    """Progress lines on stderr, throttled; silent when asked."""

    def __init__(self, label: str, total: int | None = None, *, silent: bool = False, every_seconds: float = 0.5):
        self.label = label
        self.total = total
        self.done = 0
        self.silent = silent or _quiet
        self.every = every_seconds
        self._last = 0.0
        self._start = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if not self.silent and (now - self._last >= self.every or (self.total and self.done >= self.total)):
            self._last = now
            of = f"/{self.total}" if self.total else ""
            status(f"{self.label}: {self.done}{of}")

    def finish(self, message: str | None = None) -> None:
        if not self.silent:
            elapsed = time.monotonic() - self._start
            status(message or f"{self.label}: {self.done} done in {elapsed:.1f}s")


def status(message: str) -> None:
    """One line of chatter on stderr (nothing under --quiet)."""
    if _quiet:
        return
    sys.stderr.write(redact(message) + "\n")
    sys.stderr.flush()
