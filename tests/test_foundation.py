"""The foundation a user relies on: atomic writes, redaction, the CLI's error contract,
and the entry scripts the README and CI point at."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bt_flywheel.core import fileio
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.output import format_table
from bt_flywheel.core.redact import MARKER, redact, redact_obj, register_secret

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out" / "summary.json"
    fileio.atomic_write_json(target, {"a": 1})
    fileio.atomic_write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like open(), not mkstemp's 0600


def test_atomic_write_failure_keeps_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    fileio.atomic_write_json(target, {"keep": True})

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("cannot serialize")

    with pytest.raises(RuntimeError):
        fileio.atomic_write_json(target, {"bad": Boom()})
    assert json.loads(target.read_text()) == {"keep": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_read_json_file_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "h.json"
    bad.write_text('{\n  "a": 1,\n  oops\n}\n')
    with pytest.raises(InputError, match=r"h\.json:3:3: invalid JSON"):
        fileio.read_json_file(bad)
    with pytest.raises(InputError, match="file not found"):
        fileio.read_json_file(tmp_path / "missing.json")


def test_redact_known_values_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "zz-first-value-0000")
    assert redact("a zz-first-value-0000 b") == f"a {MARKER} b"
    # set (or changed) after a redaction already looked at the environment: seen by the next one
    monkeypatch.setenv("MY_SERVICE_API_KEY", "zz-distinctive-value-123")
    register_secret("registered-secret-value-42")
    text = ("k=zz-distinctive-value-123 r=registered-secret-value-42 o=sk-abcdefghijklmnopqrstuv "
            "Authorization: Bearer abcdefghijklmnop token: qwertyuiop12")
    out = redact(text)
    for secret in ("zz-distinctive-value-123", "registered-secret-value-42", "sk-abcdefghijklmnopqrstuv",
                   "abcdefghijklmnop", "qwertyuiop12"):
        assert secret not in out
    assert out.count(MARKER) == 5


def test_redact_obj_keeps_metrics_named_tokens() -> None:
    row = {"metrics": {"tokens": 12, "prompt_tokens": 3}, "api_key": "plain-looking-value", "nested": ["ok"]}
    out = redact_obj(row)
    assert out["metrics"] == {"tokens": 12, "prompt_tokens": 3}
    assert out["api_key"] == MARKER
    assert out["nested"] == ["ok"]


def test_table_format_matches_bt_style() -> None:
    table = format_table([{"a": 1, "b": {"x": [1, 2]}}, {"a": None, "b": "t"}])
    assert table.splitlines()[0].startswith("+---")
    assert '{"x":[1,2]}' in table and "null" in table
    assert format_table([]) == "(no rows)"


def test_unexpected_error_is_one_line_without_traceback(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from bt_flywheel.session import orient as orient_module

    def broken(*args, **kwargs):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(orient_module, "orient", broken)
    monkeypatch.delenv("FLYWHEEL_RAISE_ERRORS")
    code, out, err = run_cli("orient", "--json")
    assert code == 70  # EX_SOFTWARE: a bug, distinct from bad input (2) and a backend failure (3)
    assert out == ""
    assert err == "error: internal error: RuntimeError: kaboom second line (rerun with --debug)\n"
    with pytest.raises(RuntimeError):
        run_cli("orient", "--json", "--debug")


def test_config_error_is_exit_2_one_line(run_cli, tmp_path: Path) -> None:
    (tmp_path / ".bt").mkdir()
    (tmp_path / ".bt" / "config.json").write_text("{not json")
    code, out, err = run_cli("orient", "--json")
    assert code == 2
    assert err.startswith("error: ") and ".bt/config.json: invalid JSON" in err
    assert err.count("\n") == 1


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in readme
    assert "exec ./scripts/test" in ci
    assert "flywheel demo" in readme


def test_module_entry_point_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI", "FLYWHEEL_", "BRAINTRUST_"))}
    proc = subprocess.run([sys.executable, "-m", "bt_flywheel", "--version"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("flywheel ")


@pytest.mark.slow
def test_scripts_flywheel_bootstraps_a_private_venv_from_a_fresh_clone(tmp_path: Path) -> None:
    """From a clean clone with a Python that cannot import bt_flywheel, the entry script creates
    its own venv, says so on stderr, and runs the command."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["FLYWHEEL_PYTHON"] = sys.base_prefix + "/bin/python3"
    proc = subprocess.run([str(clone / "scripts" / "flywheel"), "orient", "--json"], capture_output=True,
                          text=True, env=env, cwd=clone, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "creating a private environment" in proc.stderr
    assert json.loads(proc.stdout)["mode"] == "interactive"


def test_readme_cli_reference_is_generated_from_the_real_help() -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_command_is_documented_in_the_readme() -> None:
    from bt_flywheel.cli import build_parser

    readme = (REPO_ROOT / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert f"### `flywheel {name}`" in readme, name


def test_read_jsonl_objects_names_file_line_and_field(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a"}\n\n{"id": "b", "x": 1}\n')
    assert [r["id"] for r in fileio.read_jsonl_objects(rows, require_id=True)] == ["a", "b"]
    rows.write_text('{"id": "a"}\n[1]\n')
    with pytest.raises(InputError, match=r"rows\.jsonl:2: expected a JSON object, got list"):
        fileio.read_jsonl_objects(rows)
    rows.write_text('{"id": "a"}\n{"id": ""}\n')
    with pytest.raises(InputError, match=r"rows\.jsonl:2: id: a row needs a non-empty string id"):
        fileio.read_jsonl_objects(rows, require_id=True)
    rows.write_text('{"id": "a"}\n{"id": \n')
    with pytest.raises(InputError, match=r"rows\.jsonl:2: invalid JSON"):
        fileio.read_jsonl_objects(rows)
    rows.write_text('[{"id": "a"}, 3]')
    with pytest.raises(InputError, match=r"rows\.jsonl: item 2: expected a JSON object"):
        fileio.read_jsonl_objects(rows, allow_array=True)
    with pytest.raises(InputError, match=r"missing\.jsonl: dataset rows file not found"):
        fileio.read_jsonl_objects(tmp_path / "missing.jsonl", what="dataset rows")


def _leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    from bt_flywheel.cli import build_parser

    leaves: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves[name] = parser
        for action in subs:
            for child_name, child in action.choices.items():
                walk(child, f"{name} {child_name}".strip())

    walk(build_parser(), "")
    return leaves


def test_every_command_has_the_same_output_options() -> None:
    """One CLI vocabulary: --json and --quiet everywhere; --out is a FILE, --out-dir a DIR."""
    leaves = _leaf_parsers()
    assert {"sql", "compare", "curate", "demo", "gate", "handoff build", "route decide"} <= set(leaves)
    for name, parser in leaves.items():
        flags = {s: a for a in parser._actions for s in a.option_strings}
        assert "--json" in flags and "--quiet" in flags, f"`flywheel {name}` lacks --json or --quiet"
        if "--out-dir" in flags:
            assert flags["--out-dir"].metavar == "DIR", name
        elif "--out" in flags:
            assert flags["--out"].metavar and "DIR" not in flags["--out"].metavar, name
            assert "director" not in (flags["--out"].help or ""), f"`flywheel {name} --out` names a directory"


def test_quiet_silences_progress(run_cli, tmp_path: Path) -> None:
    code, out, err = run_cli("synth", "--spans", "5", "--out", "s.jsonl", "--quiet")
    assert code == 0 and out.startswith("wrote 5 spans")
    code, out, err = run_cli("ingest", "s.jsonl", "--project", "p", "--quiet", "--json")
    assert code == 0 and err == "" and json.loads(out)["rows"] == 5
