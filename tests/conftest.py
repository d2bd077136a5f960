"""Shared fixtures. Every test runs in a temp directory with no Braintrust/LLM settings
from the outside environment (CI runs with CI=true; the mode tests set what they need)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import store_cache

from bt_flywheel.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
_CLEARED_PREFIXES = ("BRAINTRUST_", "FLYWHEEL_", "OPENAI_")


def _isolate(monkeypatch: pytest.MonkeyPatch, cwd: Path) -> None:
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES) or name in {"CI"}:
            monkeypatch.delenv(name, raising=False)
    # an unexpected exception in a command is a bug: show its traceback instead of exit 70
    monkeypatch.setenv("FLYWHEEL_RAISE_ERRORS", "1")
    monkeypatch.chdir(cwd)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _isolate(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def _store_cache_folder(tmp_path_factory: pytest.TempPathFactory):
    """The session's folder for stores built once and copied per test (tests/store_cache.py)."""
    store_cache.set_root(tmp_path_factory.mktemp("store-cache"))
    yield
    store_cache.set_root(None)


@pytest.fixture(scope="session")
def run_cli_once():
    """Run the CLI in-process from a module- or session-scoped fixture (something expensive built
    once and copied by each test): the environment is cleared as for a test and the command runs in
    `cwd`. Returns (exit_code, stdout, stderr)."""

    def _run(*argv: str, cwd: Path) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as monkeypatch:
            _isolate(monkeypatch, cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return _run


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return _run
