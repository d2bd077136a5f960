"""Secrets never reach the handoff, the narrative, stdout or stderr.

A distinctive key is planted in the environment (BRAINTRUST_API_KEY) and another in `.env`
(OPENAI_API_KEY); neither has a key-like shape, so only "we know this value is a secret"
can catch them. Both appear in the inputs of a handoff; then every written artifact and
every captured output is searched for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeBraintrust

from bt_flywheel.core.config import load_settings
from bt_flywheel.core.mode import Mode
from bt_flywheel.handoff.contract import HandoffBuilder, idempotency_key, write_handoff

ENV_KEY = "fwenvkey-Q7m2Z9x4R1t8W3v6"
DOTENV_KEY = "fwdotenv-K5p0L3n8J2h6G9d4"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Both keys planted; Braintrust is the loopback fake (tests/fakes), so a command that calls
    it with the key (orient looks up the newest experiment) never reaches the network."""
    monkeypatch.setenv("BRAINTRUST_API_KEY", ENV_KEY)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={DOTENV_KEY}\nFLYWHEEL_PROJECT=support-bot\n")
    with FakeBraintrust() as server:
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        yield tmp_path


def _leaky_builder() -> HandoffBuilder:
    b = HandoffBuilder(goal=f"improve refusals {ENV_KEY}", project="support-bot",
                       mode=Mode("autonomous", f"CI=true {DOTENV_KEY}"), started_at="2025-06-01T09:00:00Z")
    b.add_finding(f"Key {ENV_KEY} logged in spans", plane="reliability", severity="critical",
                  route="instrumentation", evidence=f"metadata.auth contains {DOTENV_KEY}",
                  queries=[f"SELECT id FROM project_logs('p') WHERE input LIKE '%{ENV_KEY}%'"],
                  trace_ids=[f"trace-{DOTENV_KEY}"],
                  links=[{"title": f"trace {ENV_KEY}", "url": f"https://example.com/t?k={DOTENV_KEY}"}])
    b.add_change("instrumentation", [f"logging_{ENV_KEY}.py"], description=f"drop {DOTENV_KEY}",
                 why_safe=f"removes {ENV_KEY} only")
    b.set_loops(0, ledger=[{"loop": 1, "kept": False, "note": f"saw {ENV_KEY}"}])
    b.add_next_step("rollback", f"Rotate {ENV_KEY}", f"and {DOTENV_KEY}", priority="p0", destination="chat")
    b.extend("x-debug", {"env": ENV_KEY, "dotenv": DOTENV_KEY})
    b.set_outcome("blocked", severity="critical", blocking=True, confidence="high", why=f"saw {DOTENV_KEY}",
                  summary=f"Keys {ENV_KEY} and {DOTENV_KEY} leaked into traces")
    return b


def _assert_clean(text: str, where: str) -> None:
    assert ENV_KEY not in text, f"environment key leaked into {where}"
    assert DOTENV_KEY not in text, f".env key leaked into {where}"


def test_build_write_render_gate_never_leak(planted: Path, run_cli) -> None:
    load_settings({})  # what every command does first: reads env and .env, registers secrets
    out_dir = planted / "out"
    paths = write_handoff(_leaky_builder(), out_dir)
    outputs = []
    for argv in (("handoff", "validate", str(paths.summary)),
                 ("handoff", "validate", str(paths.summary), "--json"),
                 ("handoff", "render", str(paths.summary), "--out", str(out_dir / "again.md")),
                 ("handoff", "render", str(paths.summary)),
                 ("gate", str(paths.summary)),
                 ("orient", "--json")):
        code, stdout, stderr = run_cli(*argv)
        outputs.append((argv, code, stdout, stderr))
    assert [o[1] for o in outputs] == [0, 0, 0, 0, 1, 0]
    for argv, _, stdout, stderr in outputs:
        _assert_clean(stdout + stderr, " ".join(argv))
    doc = json.loads(paths.summary.read_text())
    assert doc["summary"] == "Keys [REDACTED] and [REDACTED] leaked into traces"
    step = doc["next_steps"][0]
    assert step["idempotency_key"] == idempotency_key("rollback", "Rotate [REDACTED]", "support-bot")
    written = [p for p in planted.rglob("*") if p.is_file() and p.name != ".env"]
    assert {p.name for p in written} >= {"bt-flywheel-summary.json", "bt-flywheel-narrative.md", "again.md"}
    for path in written:
        _assert_clean(path.read_text(encoding="utf-8", errors="replace"), str(path))


def _hand_written_leak(tmp_path: Path) -> Path:
    """A handoff assembled by hand (not by the builder) that carries both keys."""
    doc = json.loads((REPO_ROOT / "examples" / "handoffs" / "healthy.json").read_text())
    doc["summary"] = f"leaked {DOTENV_KEY}"
    doc["goal"] = f"goal {ENV_KEY}"
    doc["x-raw"] = [ENV_KEY]
    path = tmp_path / "leaked.json"
    path.write_text(json.dumps(doc))
    return path


def test_cli_rejects_a_hand_written_leak_without_echoing_it(planted: Path, run_cli) -> None:
    path = _hand_written_leak(planted)
    narrative = planted / "narrative.md"
    code_v, out_v, err_v = run_cli("handoff", "validate", str(path))
    code_r, out_r, err_r = run_cli("handoff", "render", str(path), "--out", str(narrative))
    code_g, out_g, err_g = run_cli("gate", str(path))
    assert (code_v, code_r, code_g) == (2, 2, 2)
    assert f"{path}: $.summary: looks like a secret" in out_v
    assert f"{path}: $.goal: looks like a secret" in out_v
    assert f"{path}: $.x-raw[0]: looks like a secret" in out_v
    assert not narrative.exists()
    _assert_clean(out_v + err_v + out_r + err_r + out_g + err_g, "cli output")


def test_fresh_process_loads_dotenv_secrets_before_validating(planted: Path) -> None:
    """A new process knows nothing yet: it must learn the `.env` key from the file to catch it."""
    path = _hand_written_leak(planted)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "OPENAI_", "CI"))}
    env["BRAINTRUST_API_KEY"] = ENV_KEY
    proc = subprocess.run([sys.executable, "-m", "bt_flywheel", "handoff", "validate", str(path)],
                          cwd=planted, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "$.summary: looks like a secret" in proc.stdout  # the .env key was recognised
    assert "$.goal: looks like a secret" in proc.stdout  # the environment key too
    _assert_clean(proc.stdout + proc.stderr, "subprocess output")
