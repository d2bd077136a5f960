"""Secrets (issue 8): distinctive keys planted in the environment, in `.env` and in a file given by the
`--env-file` flag never appear in stdout, stderr, any file written under the run's directory (artifacts,
caches, the handoff, the narrative, the HTML report, the DuckDB store) or an error message (--debug off),
even when the loopback Braintrust / model server (tests/fakes, never the network) echoes the key back in
its answers and errors, and an Eval task raises an exception carrying it.

The keys deliberately do not look like keys (no `sk-` prefix), so only the registered values can hide them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBraintrust, FakeModelServer

ENV_KEY = "btkENVplanted7f3a9c1e5d2b"          # BRAINTRUST_API_KEY in the environment
DOTENV_KEY = "oakDOTENVplanted4b2e8f6a1c"      # OPENAI_API_KEY in ./.env
FLAG_KEY = "btkFLAGplanted9d1c3e7b5a0f"        # BRAINTRUST_API_KEY in a file passed with --env-file
KEYS = (ENV_KEY, DOTENV_KEY, FLAG_KEY)

EVAL_FILE = '''\
import os
from braintrust import Eval
from autoevals import ExactMatch

def task(input):
    if input == "boom":
        raise RuntimeError("task failed with key " + os.environ.get("BRAINTRUST_API_KEY", "?"))
    return "Hi " + input

Eval(
    "Say Hi Bot",
    data=lambda: [{"input": "Foo", "expected": "Hi Foo"}, {"input": "Bar", "expected": "Hello Bar"},
                  {"input": "Baz", "expected": "Hi Baz"}],
    task=task,
    scores=[ExactMatch],
    metadata={"model": "m-1"},
)
'''
FAILING_EVAL = EVAL_FILE.replace('"Baz", "expected": "Hi Baz"', '"boom", "expected": "x"')


class EchoingBraintrust(FakeBraintrust):
    """Loopback Braintrust that puts the caller's Authorization header into rows and error bodies."""

    def answer(self, route: str, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        auth = headers.get("authorization", "")
        if route == "btql" and isinstance(body, dict) and "fail" in str(body.get("query")):
            return 400, {"Message": f"bad query from {auth}"}
        if route == "btql":
            self.btql_rows = [{"id": "r1", "seen_auth": auth}]
        return super().answer(route, method, path, body, headers)


def echoing_judge(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"label": "pass", "rationale": f"env says {os.environ.get('OPENAI_API_KEY')} and {DOTENV_KEY}"}


def scan(tmp_path: Path, outputs: list[tuple[str, str, str]]) -> list[str]:
    leaks = []
    for what, out, err in outputs:
        for key in KEYS:
            if key in out or key in err:
                leaks.append(f"{what}: {key} in {'stdout' if key in out else 'stderr'}")
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        if path.name in (".env", "flag.env"):
            continue
        data = path.read_bytes()
        for key in KEYS:
            if key.encode() in data or key.encode("utf-16-le") in data:
                leaks.append(f"{path.relative_to(tmp_path)}: {key}")
    return leaks


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAINTRUST_API_KEY", ENV_KEY)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={DOTENV_KEY}\nFLYWHEEL_PROJECT=acme\n")
    (tmp_path / "flag.env").write_text(f"BRAINTRUST_API_KEY={FLAG_KEY}\nOPENAI_API_KEY={DOTENV_KEY}\n")
    return tmp_path


def test_planted_keys_reach_no_output_file_or_error(planted: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = planted
    outputs: list[tuple[str, str, str]] = []

    def run(what: str, *argv: str, ok: bool | None = True) -> tuple[int, str, str]:
        code, out, err = run_cli(*argv)
        outputs.append((what, out, err))
        if ok is True:
            assert code == 0, f"{what}: {err}"
        elif ok is False:
            assert code != 0, f"{what} should fail"
        return code, out, err

    run("orient", "orient", "--json", "--local")
    run("orient --env-file", "orient", "--json", "--env-file", "flag.env", "--local")
    run("synth", "synth", "--spans", "400", "--seed", "2", "--out", "traces.jsonl")
    run("ingest", "ingest", "traces.jsonl", "--project", "acme", "--quiet")
    run("sql local", "sql", "SELECT count(*) AS n FROM project_logs('acme') WHERE created > '2000-01-01'",
        "--json", "--local")
    run("sql error", "sql", f"SELECT '{ENV_KEY}' FROM nowhere", "--local", ok=False)

    with EchoingBraintrust() as braintrust, FakeModelServer(judge=echoing_judge) as model:
        monkeypatch.setenv("BRAINTRUST_APP_URL", braintrust.url)
        monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
        run("sql remote", "sql", "SELECT id FROM project_logs('acme') WHERE created > now() - interval 1 day",
            "--remote", "--json")
        monkeypatch.delenv("BRAINTRUST_API_KEY")          # the environment wins over files: let the flag's file speak
        run("sql remote --env-file", "sql", "SELECT id FROM project_logs('acme') WHERE created > '2000-01-01'",
            "--remote", "--csv", "--env-file", "flag.env")
        monkeypatch.setenv("BRAINTRUST_API_KEY", ENV_KEY)
        run("sql remote error", "sql", "SELECT fail FROM project_logs('acme') WHERE created > '2000-01-01'",
            "--remote", ok=False)
        (tmp_path / "eval_hi.py").write_text(EVAL_FILE)
        (tmp_path / "eval_boom.py").write_text(FAILING_EVAL)
        run("eval base", "eval", "eval_hi.py", "--local", "--name", "base", "--json", "--silent")
        run("eval cand", "eval", "eval_hi.py", "--local", "--name", "cand", "--json", "--silent")
        run("eval remote", "eval", "eval_hi.py", "--remote", "--name", "remote-exp", "--json", "--silent")
        run("eval task error", "eval", "eval_boom.py", "--local", "--name", "boom", ok=None)
        (tmp_path / "rubric.yaml").write_text("version: r1\ninstructions: judge it\nlabels: [pass, fail]\n")
        run("curate llm", "curate", "--score", "helpfulness", "--labeler", "llm", "--rubric", "rubric.yaml",
            "--project", "acme", "--window-days", "3650", "--per-bucket", "3", "--out", "curated", "--yes",
            "--dataset", "golden", "--local")
        assert len(model.requests_to("chat")) >= 1
        assert {r.headers.get("authorization") for r in model.requests_to("chat")} == {f"Bearer {DOTENV_KEY}"}
        assert any(r.headers.get("authorization") == f"Bearer {FLAG_KEY}" for r in braintrust.requests)

    run("compare", "compare", "base", "cand", "--target", "ExactMatch", "--json", "--project", "Say Hi Bot",
        "--local")
    run("report", "report", "base", "cand", "--target", "ExactMatch", "--out", "report.html", "--project", "Say Hi Bot",
        "--local")
    # every phase and artifact of the demo, at its smallest size (where keys go does not depend on size)
    run("demo", "demo", "--out", "demo", "--silent", "--spans", "800")
    handoff = tmp_path / "demo" / "bt-flywheel-summary.json"
    assert handoff.exists()
    run("handoff validate", "handoff", "validate", str(handoff))
    run("handoff render", "handoff", "render", str(handoff), "--out", "narrative.md")
    run("gate", "gate", str(handoff), ok=None)

    # a handoff that carries a planted key is refused by validate and gate, and redacted by render
    doc = json.loads(handoff.read_text())
    doc["summary"] = f"the key is {ENV_KEY}"
    (tmp_path / "leaky.json").write_text(json.dumps(doc))
    run("validate leaky", "handoff", "validate", str(tmp_path / "leaky.json"), ok=False)
    run("gate leaky", "gate", str(tmp_path / "leaky.json"), ok=False)
    (tmp_path / "leaky.json").unlink()

    leaks = scan(tmp_path, outputs)
    assert leaks == [], leaks
    assert (tmp_path / "curated" / "dataset_rows.jsonl").exists() and (tmp_path / "report.html").exists()
