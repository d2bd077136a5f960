"""Faults (issue 8): a loopback Braintrust / OpenAI-compatible server (tests/fakes, never the network)
answers 429 with Retry-After, 500, too slowly, or with garbage, on a schedule. The clients retry
with jittered exponential backoff, honour Retry-After (the delays the clients ask to wait are recorded
instead of slept through; one test lets the default wait really happen and measures it at the
server: the gap between the requests, never a wall-clock bound other than the delay itself),
recover, and a final failure is exit 3 with one line. Runs killed with SIGKILL at a random point and restarted finish
with the same result and no duplicate rows.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBraintrust, FakeModelServer, Fault, record_pauses
from fakes.checks import assert_one_line_error, store_snapshot

from bt_flywheel.backends.http import HttpClient
from bt_flywheel.backends.remote import RemoteClient
from bt_flywheel.label.base import Rubric
from bt_flywheel.label.llm import ChatClient, LLMError, LLMLabeler

RUBRIC = Rubric(version="r1", text="fail when the bot mishandled the request", labels=["pass", "fail"])
BRAINTRUST_KEY = "bt-loopback-key-0000000000000000"
OPENAI_KEY = "sk-loopback-openai-00000000000000"


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"row-{i:04d}", "input": {"message": f"message number {i}"}, "metadata": {}} for i in range(n)]


def gaps(server: Any, route: str) -> list[float]:
    times = [r.at for r in server.requests_to(route)]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINTRUST_", "OPENAI_", "FLYWHEEL_"))}
    env.pop("CI", None)
    env.update(extra)
    return env


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays every HTTP client without its own `sleep` waits (the CLI's too), recorded instead of slept."""
    return record_pauses(monkeypatch)


def popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bt_flywheel", *args], cwd=cwd, env=env or cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- the LLM labeler's client ------------------------------------------------------------------------

def test_llm_labeler_recovers_from_429_500_timeout_and_garbage_honouring_retry_after(pauses: list[float]) -> None:
    with FakeModelServer() as server:
        server.schedule("chat", [Fault.status(429, retry_after=1), Fault.status(500), Fault.slow(1.5),
                                 Fault.garbage(), Fault.drop()])
        client = ChatClient(base_url=server.base_url, api_key=OPENAI_KEY, timeout=0.5, backoff_base=0.05,
                            max_retries=6)
        run = LLMLabeler(RUBRIC, model="judge", client=client, concurrency=1).label(rows(3))
        chat = server.requests_to("chat")
    assert sorted(run.labels) == ["row-0000", "row-0001", "row-0002"] and run.failed == {}
    assert [r.fault for r in chat[:6]] == ["status", "status", "slow", "garbage", "drop", None]
    assert len(chat) == 8                                     # 5 faults + 3 answers, nothing lost or doubled
    assert len(pauses) == 5 and pauses[0] == 1.0            # Retry-After: 1 was honoured
    for k, value in enumerate(pauses[1:], start=1):          # then backoff: 0.05 * 2^k, jittered
        assert 0.05 * 2**k * 0.5 <= value <= 0.05 * 2**k
    assert all(r.headers.get("authorization") == f"Bearer {OPENAI_KEY}" for r in chat)


def test_the_default_pause_really_waits_the_retry_after() -> None:
    """The one real wait: a client without its own `sleep` waits Retry-After between the requests."""
    with FakeBraintrust() as server:
        server.schedule("btql", [Fault.status(429, retry_after=0.2)])
        http = HttpClient(backoff=0.01)
        body = http.request_json("POST", server.url + "/btql", body={"query": "select 1"})
        assert body["data"] == server.btql_rows
        assert http.delays == [0.2]
        assert gaps(server, "btql")[0] >= 0.2


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    def delays() -> list[float]:
        slept: list[float] = []
        with FakeModelServer() as server:
            server.schedule("chat", [Fault.status(503).always()])
            client = ChatClient(base_url=server.base_url, sleep=slept.append, backoff_base=0.1, max_backoff=0.5,
                                max_retries=5)
            with pytest.raises(LLMError, match="HTTP 503"):
                client.complete("m", [{"role": "user", "content": "x"}])
            assert len(server.requests_to("chat")) == 6
        return slept

    first, second = delays(), delays()
    assert len(first) == 5
    for k, value in enumerate(first[:3]):                   # 0.1 * 2^k, jittered into [half, full]
        assert 0.1 * 2**k * 0.5 <= value <= 0.1 * 2**k
    assert all(value <= 0.5 for value in first)              # capped
    assert first != second                                   # jitter: two runs do not sleep alike


def test_http_client_backoff_jitter_and_retry_after_cap() -> None:
    with FakeBraintrust() as server:
        server.schedule("btql", [Fault.status(502), Fault.status(503), Fault.status(429, retry_after=7),
                                 Fault.status(429, retry_after=10_000)])
        slept: list[float] = []
        http = HttpClient(sleep=slept.append, backoff=0.2, max_retry_after=30, rng=lambda: 0.5)
        body = http.request_json("POST", server.url + "/btql", body={"query": "select 1"})
    assert body["data"] == server.btql_rows
    assert slept[:2] == [0.2 * 0.75, 0.4 * 0.75] and slept[2:] == [7.0, 30.0]


# -- the remote SQL path -------------------------------------------------------------------------------

def test_remote_sql_recovers_from_429_500_and_a_dropped_connection(tmp_path: Path, run_cli, pauses: list[float],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeBraintrust(btql_rows=[{"id": "a", "n": 1}, {"id": "b", "n": 2}]) as server:
        server.schedule("login", [Fault.status(503, retry_after=0)])
        server.schedule("btql", [Fault.status(429, retry_after=1), Fault.status(500, retry_after=0), Fault.drop()])
        monkeypatch.setenv("BRAINTRUST_API_KEY", BRAINTRUST_KEY)
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        code, out, err = run_cli("sql", "SELECT id, n FROM project_logs('acme') WHERE created > now() - interval 1 day",
                                 "--remote", "--json")
        assert code == 0, err
        assert json.loads(out)["data"] == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
        btql = server.requests_to("btql")
        assert [r.fault for r in btql] == ["status", "status", "drop", None]
        assert pauses[:3] == [0.0, 1.0, 0.0] and len(pauses) == 4   # login's and btql's Retry-After
        assert btql[-1].body["lint_mode"] == "strict"


def test_remote_client_recovers_from_a_slow_response_past_the_timeout() -> None:
    with FakeBraintrust() as server:
        server.schedule("btql", [Fault.slow(1.5)])
        client = RemoteClient(BRAINTRUST_KEY, app_url=server.url, http=HttpClient(timeout=0.5, backoff=0.01))
        result = client.btql("SELECT 1 FROM project_logs('x') WHERE created > now() - interval 1 day")
        assert result.rows == server.btql_rows
        assert [r.fault for r in server.requests_to("btql")] == ["slow", None]


def test_remote_client_retries_a_garbage_body() -> None:
    """A 200 whose body is not JSON (a proxy's error page) is a transient fault like a 502."""
    with FakeBraintrust() as server:
        server.schedule("btql", [Fault.garbage()])
        client = RemoteClient(BRAINTRUST_KEY, app_url=server.url, http=HttpClient(backoff=0.01))
        result = client.btql("SELECT 1 FROM project_logs('x') WHERE created > now() - interval 1 day")
        assert result.rows == server.btql_rows
        assert len(server.requests_to("btql")) == 2


def test_remote_sql_final_failure_is_exit_3_with_one_line(tmp_path: Path, run_cli,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeBraintrust() as server:
        server.schedule("btql", [Fault.status(500, retry_after=0).always()])
        monkeypatch.setenv("BRAINTRUST_API_KEY", BRAINTRUST_KEY)
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        code, out, err = run_cli("sql", "SELECT 1 FROM project_logs('acme') WHERE created > now() - interval 1 day",
                                 "--remote")
        attempts = len(server.requests_to("btql"))
    line = assert_one_line_error(code, err, expect_code=3, names=("/btql", "500"))
    assert "attempts" in line and attempts == 5 and out == ""
    assert BRAINTRUST_KEY not in err


# -- curate --labeler llm through the CLI ------------------------------------------------------------------

RUBRIC_YAML = "version: r1\ninstructions: fail when the bot mishandled the request\nlabels: [pass, fail]\n"


@pytest.fixture(scope="module")
def traces_template(tmp_path_factory: pytest.TempPathFactory, run_cli_once) -> Path:
    """A folder with a local store of 600 synthetic spans of project 'acme' and a rubric file, made
    once for this module through the CLI."""
    folder = tmp_path_factory.mktemp("traces")
    code, _, err = run_cli_once("synth", "--spans", "600", "--seed", "3", "--out", "t.jsonl", cwd=folder)
    assert code == 0, err
    code, _, err = run_cli_once("ingest", "t.jsonl", "--project", "acme", "--quiet", cwd=folder)
    assert code == 0, err
    (folder / "rubric.yaml").write_text(RUBRIC_YAML)
    return folder


@pytest.fixture
def traces(tmp_path: Path, traces_template: Path) -> Path:
    """This test's copy of `traces_template` in its working folder; returns the store's path."""
    shutil.copytree(traces_template / ".flywheel", tmp_path / ".flywheel")
    shutil.copyfile(traces_template / "rubric.yaml", tmp_path / "rubric.yaml")
    return tmp_path / ".flywheel" / "store.duckdb"


CURATE = ("curate", "--score", "helpfulness", "--labeler", "llm", "--rubric", "rubric.yaml", "--project", "acme",
          "--window-days", "3650", "--yes", "--concurrency", "2")


def test_curate_llm_recovers_from_provider_faults(tmp_path: Path, run_cli, traces: Path, pauses: list[float],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeModelServer() as server:
        server.schedule("chat", [Fault.status(429, retry_after=1), Fault.status(500), Fault.garbage()])
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        code, out, err = run_cli(*CURATE, "--per-bucket", "4", "--out", "out", "--json")
        assert code == 0, err
        summary = json.loads(out)
        assert summary["labeling"]["labeled"] == 8 and summary["unlabeled"] == []
        assert len(server.requests_to("chat")) == 8 + 3
        assert len(pauses) == 3 and 1.0 in pauses                # one wait per fault, Retry-After: 1 honoured


def test_curate_llm_final_failure_is_exit_3_with_one_line(tmp_path: Path, run_cli, traces: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeModelServer() as server:
        server.schedule("chat", [Fault.status(500, retry_after=0).always()])
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        code, out, err = run_cli(*CURATE, "--per-bucket", "2", "--max-retries", "1", "--out", "out")
    assert_one_line_error(code, err, expect_code=3, names=("--labeler llm", "HTTP 500"), only_line=False)
    assert OPENAI_KEY not in out + err


# -- SIGKILL at a random point, then restart ----------------------------------------------------------------

def _kill_after(proc: subprocess.Popen[str], seconds: float) -> bool:
    """SIGKILL `proc` after `seconds` unless it already finished; True when it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _spans_without_xact(path: Path) -> list[tuple[str, ...]]:
    snapshot = store_snapshot(path)["spans"]
    return sorted(row[:8] + row[9:] for row in snapshot)     # column 8 is _xact_id (allocation order)


BIG = 20000


@pytest.fixture(scope="module")
def big_load(tmp_path_factory: pytest.TempPathFactory, run_cli_once) -> tuple[Path, list[tuple[str, ...]]]:
    """20,000 synthetic spans and what a clean, never killed ingest of them stores; made once."""
    folder = tmp_path_factory.mktemp("big")
    code, _, err = run_cli_once("synth", "--spans", str(BIG), "--seed", "5", "--out", "big.jsonl", cwd=folder)
    assert code == 0, err
    code, _, err = run_cli_once("ingest", "big.jsonl", "--project", "acme", "--store", "clean.duckdb", "--quiet",
                                cwd=folder)
    assert code == 0, err
    return folder / "big.jsonl", _spans_without_xact(folder / "clean.duckdb")


def _kill_while_loading(proc: subprocess.Popen[str], store: Path, delay: float) -> bool:
    """SIGKILL `proc` `delay` seconds after its load began (its staging folder beside `store`
    appeared), unless it finished first; True when it was killed. Waiting for the load instead of
    a fixed time from the start keeps the kill inside the work whatever interpreter start costs."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(store.parent.glob(f".{store.name}.stage-*")):
            break
        time.sleep(0.002)
    return _kill_after(proc, delay)


@pytest.mark.parametrize("seed", [0, 1])
def test_ingest_killed_at_a_random_point_then_rerun_matches_a_clean_run(tmp_path: Path, run_cli, seed: int,
                                                                        big_load) -> None:
    """A real `flywheel ingest` process is killed at a random point of its load; the rerun (here
    in-process: what matters is the store the killed process left) finishes it, with no duplicates."""
    source, clean = big_load
    killed_store = tmp_path / "killed.duckdb"
    proc = popen("ingest", str(source), "--project", "acme", "--store", str(killed_store), "--quiet", cwd=tmp_path)
    killed = _kill_while_loading(proc, killed_store, random.Random(seed).uniform(0.0, 0.5))
    code, out, err = run_cli("ingest", str(source), "--project", "acme", "--store", str(killed_store), "--json")
    assert code == 0, err
    counts = json.loads(out)
    # one transaction: the killed run stored all of it (killed after its commit, while exiting) or none
    assert counts["rows"] == BIG and counts["inserted"] in ((0, BIG) if killed else (0,))
    assert counts["inserted"] + counts["unchanged"] == BIG
    assert _spans_without_xact(killed_store) == clean
    code, out, err = run_cli("ingest", str(source), "--project", "acme", "--store", str(killed_store), "--json")
    assert code == 0, err
    assert json.loads(out)["unchanged"] == BIG                 # idempotent: no duplicates on a third run
    assert not list(tmp_path.glob(".killed.duckdb.stage-*"))  # the killed load's staging folder is cleaned up


def _labels(out_dir: Path) -> dict[str, tuple[Any, Any, str]]:
    result = {}
    for line in (out_dir / "dataset_rows.jsonl").read_text().splitlines():
        row = json.loads(line)
        label = row["metadata"]["label"]
        result[row["id"]] = (label.get("value"), row.get("expected"), row["metadata"]["split"])
    return result


def test_llm_labeling_killed_mid_run_resumes_from_the_cache_with_the_same_result(
        tmp_path: Path, run_cli, traces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The labeling run killed is a real process; the reference and the resumed run are in-process."""
    with FakeModelServer() as server:
        env = cli_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=OPENAI_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        args = [*CURATE, "--per-bucket", "20"]
        code, _, err = run_cli(*args, "--out", "reference")     # the unkilled reference, in-process
        assert code == 0, err
        reference_calls = len(server.requests_to("chat"))
        n = len(_labels(tmp_path / "reference"))
        assert reference_calls == n and n >= 20

        server.delay = 0.05                                     # slow enough to be killed mid-run
        proc = popen(*args, "--out", "killed", "--dataset", "golden", cwd=tmp_path, env=env)
        cache = tmp_path / "killed" / "label_cache.jsonl"
        deadline = time.monotonic() + 60
        target = random.Random(7).randint(3, n - 5)
        while time.monotonic() < deadline and proc.poll() is None:
            if cache.exists() and cache.read_text().count("\n") >= target:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cached_before = cache.read_text().count("\n")
        assert 0 < cached_before < n, "the kill should land mid-run"

        server.delay = 0.0
        code, out, err = run_cli(*args, "--out", "killed", "--dataset", "golden", "--json")   # resumed
        assert code == 0, err
        summary = json.loads(out)
        total_calls = len(server.requests_to("chat")) - reference_calls

    assert summary["labeling"]["cached"] >= cached_before   # every cached label reused, none asked twice
    assert total_calls <= n + 2                              # at most the in-flight calls (concurrency 2) repeat
    assert _labels(tmp_path / "killed") == _labels(tmp_path / "reference")
    ids = [json.loads(line)["row_id"] for line in cache.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == n                    # the cache holds each row once
    snapshot = store_snapshot(traces)["spans"]
    dataset_rows = [row for row in snapshot if row[0] == "dataset"]
    assert len(dataset_rows) == len({row[2] for row in dataset_rows}) == n
