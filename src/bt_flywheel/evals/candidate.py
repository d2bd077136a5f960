"""Which candidate an eval measured: a fingerprint of the files changed in the working tree.

The loop ledger counts validation looks per candidate. An experiment id cannot tell candidates
apart (measuring the same edit twice gives two experiments), so a candidate is identified by what
was changed: the tracked files that differ from HEAD in the eval file's git checkout (staged or
not, deletions included), plus any files named explicitly. Their paths and content hashes make
the fingerprint `cand:<16 hex>`; an unchanged tree is the baseline, `base:<HEAD sha, 12 hex>`.
Untracked files do not count: an agent's outputs (compare.json, curation/) must not make every
look a new candidate. Outside git, only the named files count; with none, there is no fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError

BASELINE_PREFIX = "base:"
CANDIDATE_PREFIX = "cand:"


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def changed_files(folder: str | os.PathLike[str]) -> tuple[Path | None, str | None, list[str]]:
    """(repository root, HEAD sha, tracked files changed against HEAD, relative to the root)."""
    root_text = _git(Path(folder), "rev-parse", "--show-toplevel")
    if not root_text:
        return None, None, []
    root = Path(root_text.strip())
    head = (_git(root, "rev-parse", "HEAD") or "").strip() or None
    names = _git(root, "diff", "HEAD", "--name-only", "-z") if head else _git(root, "ls-files", "-z")
    return root, head, sorted(n for n in (names or "").split("\0") if n)


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return "deleted"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(root: Path, files: Sequence[str]) -> str:
    """`cand:` + 16 hex of sha256 over each file's path and content hash, in path order."""
    digest = hashlib.sha256()
    for name in sorted(set(files)):
        digest.update(f"{name}\0{_file_digest(root / name)}\n".encode())
    return CANDIDATE_PREFIX + digest.hexdigest()[:16]


def identify(eval_path: str | os.PathLike[str], extra_files: Sequence[str | os.PathLike[str]] = ()) -> dict[str, Any]:
    """The candidate an eval of `eval_path` measures now: {id, files, head, baseline}."""
    folder = Path(eval_path).resolve().parent
    root, head, files = changed_files(folder)
    base = root or Path.cwd().resolve()
    named = []
    for extra in extra_files:
        path = Path(extra).resolve()
        if not path.exists():
            raise InputError(f"--candidate-file {extra}: file not found")
        try:
            named.append(path.relative_to(base).as_posix())
        except ValueError:
            named.append(path.as_posix())
    every = sorted(set(files) | set(named))
    if every:
        return {"id": fingerprint(base, every), "files": every, "head": head, "baseline": False}
    if head:
        return {"id": BASELINE_PREFIX + head[:12], "files": [], "head": head, "baseline": True}
    return {"id": None, "files": [], "head": None, "baseline": False}


def is_baseline(candidate: str | None) -> bool:
    return bool(candidate) and str(candidate).startswith(BASELINE_PREFIX)
