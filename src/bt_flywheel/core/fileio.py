"""Atomic writes and careful reads. Every artifact goes through here."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.redact import redact

# mkstemp creates 0600 files; artifacts should get the permissions a plain open() would give.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` only when the block ends without an exception:
    written to a temp file in the same directory, fsynced, then renamed over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    with atomic_output(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write text with secrets redacted."""
    return atomic_write_bytes(path, redact(text).encode("utf-8"))


def dumps_json(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=False, default=str)


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> Path:
    return atomic_write_text(path, dumps_json(value) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def read_json_file(path: str | os.PathLike[str]) -> Any:
    """Read one JSON document; errors name the file and the line/column."""
    p = Path(path)
    return loads_json(read_text_file(p), p)


def read_text_file(path: str | os.PathLike[str], *, what: str = "file") -> str:
    """A UTF-8 text file; a missing, unreadable or non-UTF-8 file is an InputError naming it."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None


def loads_json(text: str, path: str | os.PathLike[str]) -> Any:
    """Parse the JSON text read from `path`; an error names the file and the line/column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None


def read_jsonl_objects(path: str | os.PathLike[str], *, what: str = "rows", require_id: bool = False,
                       allow_array: bool = False) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped); errors name the file and line.

    `require_id`: each object needs a non-empty string `id`. `allow_array`: a file holding one
    JSON array of objects is accepted too.
    """
    p = Path(path)
    text = read_text_file(p, what=f"{what} file")
    if allow_array and text.lstrip().startswith("["):
        data = read_json_file(p)
        items = list(enumerate(data if isinstance(data, list) else [data], 1))
        where = "item"
    else:
        items = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{p}:{lineno}: invalid JSON ({exc.msg})") from None
        where = "line"
    rows = []
    for number, value in items:
        prefix = f"{p}:{number}" if where == "line" else f"{p}: item {number}"
        if not isinstance(value, dict):
            raise InputError(f"{prefix}: expected a JSON object, got {type(value).__name__}")
        if require_id and (not isinstance(value.get("id"), str) or not value["id"]):
            raise InputError(f"{prefix}: id: a row needs a non-empty string id")
        rows.append(value)
    return rows


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
