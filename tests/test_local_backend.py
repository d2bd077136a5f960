"""The local backend's `reading()`: a command's reads share one open store (DuckDB takes about
20 ms to open a database, and a compare used to open it six times), and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bt_flywheel.backends import store as store_module
from bt_flywheel.backends.local import LocalBackend
from bt_flywheel.backends.store import Store
from bt_flywheel.verify.compare import compare_experiments
from tests.test_compare import write_experiment


@pytest.fixture
def two_experiments(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    for name, shift in (("base", 0.0), ("cand", 0.25)):
        write_experiment(path, name, {"acc": {f"r{i}": [min(1.0, (i % 4) / 4 + shift)] for i in range(12)},
                                      "tone": {f"r{i}": [0.5] for i in range(12)}})
    return path


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    opened: list[bool] = []
    real_init = Store.__init__

    def counting(self: Store, path: str | Path, *, read_only: bool = False, sandboxed: bool = False) -> None:
        opened.append(read_only)
        real_init(self, path, read_only=read_only, sandboxed=sandboxed)

    monkeypatch.setattr(store_module.Store, "__init__", counting)
    return opened


def test_a_compare_opens_the_store_once_and_gives_the_same_answer(two_experiments: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = compare_experiments(two_experiments, "base", "cand", target="acc", guards=["tone"]).to_dict()
    opened = _count_opens(monkeypatch)
    after = compare_experiments(LocalBackend(two_experiments), "base", "cand", target="acc",
                                guards=["tone"]).to_dict()
    assert opened == [True]
    assert after == before


def test_reading_allows_only_reads_and_releases_the_store(two_experiments: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(two_experiments)
    sql = "SELECT id, scores FROM experiment('cand') WHERE is_root ORDER BY id LIMIT 5"
    alone = backend.query(sql, project="support-bot")
    opened = _count_opens(monkeypatch)
    with backend.reading():
        assert backend.experiment("base").name == "base"
        assert backend.query(sql, project="support-bot") == alone        # queries run on the store held open
        assert backend.query(sql, project="support-bot").rows
        with pytest.raises(RuntimeError, match="write inside reading"):
            backend.upsert_dataset("support-bot", "d", [])
    assert opened == [True]
    with Store(two_experiments) as writer:      # the read-only connection is closed again
        assert writer.find_object("experiment", "cand") is not None
