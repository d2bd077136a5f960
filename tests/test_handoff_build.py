"""`flywheel handoff build DRAFT`: the agent writes the judgement, the tool fills the numbers.

A real comparison and ledger are made with the CLI (`flywheel compare --out`, `flywheel route
decide --ledger`) over a temp store holding two experiments in the BRIEF's §4 shape.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from fakes import FakeBraintrust

from bt_flywheel.backends.store import Store
from bt_flywheel.handoff.build import build_from_draft, validate_draft
from bt_flywheel.handoff.contract import idempotency_key, validate_handoff

PROJECT = "support-bot"
STORE = ".flywheel/store.duckdb"

DRAFT = """\
outcome: improved
severity: low
confidence:
  level: high
  why: Refusal improved on validation with the CI above zero; the guard held.
summary: One prompt line made the agent refuse quoted instructions; no guard regressed.
findings:
  - title: The agent follows instructions quoted inside user data
    plane: behavior
    severity: high
    route: agent
    evidence:
      summary: 9 of 40 rows obeyed the quoted text instead of refusing.
      queries:
        - "SELECT COUNT(*) FROM project_logs('support-bot') WHERE created >= NOW() - INTERVAL 7 day"
      trace_ids: [tr_01, tr_02]
changes:
  - artifact: agent
    files: [agent_config.yaml]
    description: "System prompt: treat quoted text as data."
    why_safe: One prompt line; the guard is non-inferior on validation.
next_steps:
  - intent: review_change
    priority: p1
    title: Review the refusal prompt change
    body: Merge agent_config.yaml if the diff reads well.
    destination: code_review
  - intent: rerun
    title: Rerun on next week's traces
    body: Check the refusal rate held in production.
artifacts:
  - path: notes/diagnosis.md
    kind: notes
x-team: support
"""


def _write_experiment(store: Store, project_id: str, name: str, refusal: dict[str, list[float]]) -> None:
    """One experiment in the §4 shape: per (row, trial) a root eval span with rolled-up scores,
    a task span and one score span per scorer (Refusal, Factuality)."""
    exp_id = store.create_object("experiment", name, project_id,
                                 metadata={"trials": 2, "split": "validation", "git_sha": "abc"})
    rows = []
    for row_id, trials in refusal.items():
        for trial, value in enumerate(trials):
            root = f"{name}-{row_id}-{trial}"
            wobble = (0.01 if int(row_id[-1]) % 2 else -0.01) if name == "candidate" else 0.0
            scores = {"Refusal": value, "Factuality": round(0.8 + wobble, 3)}
            meta = {"trial": trial, "dataset_row_id": row_id, "split": "validation"}
            case = {"question": f"please {row_id}"}
            rows.append({"id": root, "span_id": root, "root_span_id": root, "span_parents": [], "is_root": True,
                         "created": "2026-01-01T00:00:00Z", "input": case, "expected": {"refuse": True},
                         "output": {"answer": "no" if value else "ok"}, "metadata": meta, "scores": scores,
                         "tags": [], "span_attributes": {"name": "eval", "type": "eval"}})
            rows.append({"id": f"{root}-task", "span_id": f"{root}-task", "root_span_id": root,
                         "span_parents": [root], "is_root": False, "created": "2026-01-01T00:00:00Z",
                         "span_attributes": {"name": "task", "type": "task"}})
            for scorer, score in scores.items():
                sid = f"{root}-{scorer}"
                rows.append({"id": sid, "span_id": sid, "root_span_id": root, "span_parents": [root],
                             "is_root": False, "created": "2026-01-01T00:00:00Z",
                             "input": {"input": case, "expected": {"refuse": True}, "metadata": meta,
                                       "output": {"answer": "x"}, "id": row_id, "tags": []},
                             "output": {"score": score}, "scores": {scorer: score},
                             "span_attributes": {"name": scorer, "type": "score", "purpose": "scorer"}})
    store.upsert_rows("experiment", exp_id, rows)


@pytest.fixture(scope="module")
def built_workspace(tmp_path_factory: pytest.TempPathFactory, run_cli_once) -> Path:
    """A store with baseline/candidate (candidate fixes refusals on 30 of 40 rows), compare.json
    from `flywheel compare --out`, a ledger from `flywheel route decide`, a draft and a notes file;
    made once per module with the real commands (each test works in its own copy: `workspace`)."""
    root = tmp_path_factory.mktemp("handoff-build")
    ids = [f"row-{i:02d}" for i in range(40)]
    with Store(root / STORE) as store:
        pid = store.ensure_project(PROJECT)
        _write_experiment(store, pid, "baseline", {r: [0.0, 0.0] if i % 4 else [1.0, 1.0] for i, r in enumerate(ids)})
        _write_experiment(store, pid, "candidate", {r: [1.0, 1.0] if i % 4 or i == 0 else [1.0, 0.0]
                                                    for i, r in enumerate(ids)})
    code, _, err = run_cli_once("compare", "baseline", "candidate", "--target", "Refusal", "--guard", "Factuality",
                                "--resamples", "0", "--out", "compare.json", cwd=root)
    assert code == 0, err
    code, _, err = run_cli_once("route", "decide", "--ledger", "ledger.json", "--comparison", "compare.json",
                                "--change", "refusal prompt", cwd=root)
    assert code == 0, err
    code, out, err = run_cli_once("orient", "--json", "--project", PROJECT, cwd=root)
    assert code == 0, err
    (root / "orient.json").write_text(out, encoding="utf-8")
    (root / "draft").mkdir()
    (root / "draft" / "handoff.yaml").write_text(DRAFT, encoding="utf-8")
    (root / "draft" / "notes").mkdir()
    (root / "draft" / "notes" / "diagnosis.md").write_text("quoted instructions\n", encoding="utf-8")
    return root


@pytest.fixture
def workspace(tmp_path: Path, built_workspace: Path) -> Path:
    """This test's own copy of the built workspace, in its working directory."""
    shutil.copytree(built_workspace, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _build(run_cli, *extra: str) -> tuple[int, str, str]:
    return run_cli("handoff", "build", "draft/handoff.yaml", "--orient", "orient.json", "--comparison",
                   "compare.json", "--ledger", "ledger.json", "--out", "out", *extra)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_fills_every_computed_field_from_the_real_inputs(workspace: Path, run_cli) -> None:
    code, out, err = _build(run_cli, "--json")
    assert code == 0, out + err
    printed = json.loads(out)
    summary = workspace / "out" / "bt-flywheel-summary.json"
    assert Path(printed["summary"]) == Path("out/bt-flywheel-summary.json")
    doc = json.loads(summary.read_text(encoding="utf-8"))
    assert validate_handoff(doc) == []
    assert run_cli("handoff", "validate", str(summary))[0] == 0

    # verification numbers are compare.json's, untouched
    comp = json.loads((workspace / "compare.json").read_text(encoding="utf-8"))
    ver = doc["verification"]
    assert ver["status"] == comp["status"] == "passed"
    assert (ver["baseline"], ver["candidate"], ver["target"]) == (comp["baseline"], comp["candidate"], "Refusal")
    for got, want in zip(ver["scores"], comp["scores"], strict=True):
        assert (got["name"], got["effect"], got["ci"], got["p"], got["n"], got["verdict"]) == (
            want["name"], want["effect"], want["ci"], want["p"], want["n"], want["verdict"])
    assert ver["guards"]["margin"] == comp["margin"]

    # loops from the ledger; started_at is when Orient ran (the ledger is made a moment before it)
    ledger = json.loads((workspace / "ledger.json").read_text(encoding="utf-8"))
    assert doc["loops"]["count"] == 1 and doc["loops"]["max"] == ledger["max_loops"]
    assert doc["loops"]["ledger"][0]["candidate"] == comp["candidate"]
    orient = json.loads((workspace / "orient.json").read_text(encoding="utf-8"))
    assert doc["started_at"] == orient["started_at"]

    # mode, goal and project from orient.json
    orient = json.loads((workspace / "orient.json").read_text(encoding="utf-8"))
    assert doc["mode"] == {"name": orient["mode"], "reason": orient["mode_reason"]}
    assert doc["goal"] == orient["goal"] and doc["project"]["name"] == PROJECT

    # idempotency keys as the contract defines them; defaults for omitted priority/destination
    for step in doc["next_steps"]:
        assert step["idempotency_key"] == idempotency_key(step["intent"], step["title"], PROJECT)
    assert (doc["next_steps"][1]["priority"], doc["next_steps"][1]["suggested_destination"]) == ("p2", "none")
    assert doc["findings"][0]["id"] == "F1" and doc["x-team"] == "support"

    # artifacts: every hash matches its file; plot and report written next to the narrative
    kinds = {a["kind"]: a for a in doc["artifacts"]}
    assert set(kinds) == {"notes", "comparison", "ledger", "forest_plot", "report"}
    assert kinds["forest_plot"]["path"] == "forest.svg"
    assert kinds["report"]["path"] == "bt-flywheel-report.html"
    assert kinds["notes"]["path"] == "draft/notes/diagnosis.md"
    for artifact in doc["artifacts"]:
        for base in (workspace / "out", workspace):
            if (base / artifact["path"]).is_file():
                file = base / artifact["path"]
                break
        assert _sha(file) == artifact["sha256"] and file.stat().st_size == artifact["bytes"]
    assert (workspace / "out" / "forest.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    report = (workspace / "out" / "bt-flywheel-report.html").read_text(encoding="utf-8")
    assert comp["status"] in report
    narrative = (workspace / "out" / "bt-flywheel-narrative.md").read_text(encoding="utf-8")
    assert "![forest plot" in narrative and "(forest.svg)" in narrative
    assert "(bt-flywheel-report.html)" in narrative
    # the gate reads it like any handoff
    assert run_cli("gate", str(summary), "--fail-on", "needs_work,blocked,no_convergence")[0] == 0


def test_plain_output_lists_the_written_paths(workspace: Path, run_cli) -> None:
    code, out, err = _build(run_cli)
    assert code == 0, err
    assert out.split() == ["out/bt-flywheel-summary.json", "out/bt-flywheel-narrative.md", "out/forest.svg",
                           "out/bt-flywheel-report.html"]


def test_without_the_experiments_in_the_store_only_the_plot_is_written(workspace: Path, run_cli) -> None:
    code, out, err = _build(run_cli, "--store", "elsewhere.duckdb", "--json")
    assert code == 0, err
    assert "no HTML report" in err
    kinds = [a["kind"] for a in json.loads(out)["artifacts"]]
    assert "forest_plot" in kinds and "report" not in kinds
    assert not (workspace / "out" / "bt-flywheel-report.html").exists()


def test_minimal_draft_without_orient_or_comparison(tmp_path: Path, run_cli, monkeypatch) -> None:
    """Nothing but the judgement: mode resolved now, verification not_run, no loops."""
    monkeypatch.setenv("FLYWHEEL_AUTONOMOUS", "true")
    (tmp_path / "d.json").write_text(json.dumps({
        "project": PROJECT, "outcome": "healthy", "severity": "none",
        "confidence": {"level": "medium", "why": "7 days, 1,200 traces, no score below its usual range."},
        "summary": "Nothing needs changing."}), encoding="utf-8")
    code, out, err = run_cli("handoff", "build", "d.json", "--json")
    assert code == 0, err
    doc = json.loads((tmp_path / "bt-flywheel-summary.json").read_text(encoding="utf-8"))
    assert doc["mode"]["name"] == "autonomous" and "FLYWHEEL_AUTONOMOUS" in doc["mode"]["reason"]
    assert doc["verification"]["status"] == "not_run" and doc["loops"]["count"] == 0
    assert doc["goal"] == "general health check" and doc["artifacts"] == []


def _nothing_written(root: Path) -> None:
    for name in ("bt-flywheel-summary.json", "bt-flywheel-narrative.md", "forest.svg", "bt-flywheel-report.html"):
        assert not (root / "out" / name).exists(), name


def test_bad_draft_lists_every_violation_by_path_and_writes_nothing(workspace: Path, run_cli) -> None:
    bad = DRAFT.replace("plane: behavior", "plane: vibes").replace("severity: low\n", "", 1)
    bad = bad.replace("    destination: code_review", "    destination: code_review\n    idempotency_key: abc")
    (workspace / "draft" / "handoff.yaml").write_text(bad, encoding="utf-8")
    code, out, err = _build(run_cli)
    assert code == 2
    assert "$.findings[0].plane: 'vibes' is not one of" in err
    assert "$.severity: required property is missing" in err
    assert "$.next_steps[0].idempotency_key: computed by `handoff build`" in err
    assert "error: draft/handoff.yaml: 3 violations; nothing written" in err
    assert "Traceback" not in err
    _nothing_written(workspace)
    code, out, _ = _build(run_cli, "--json")
    assert code == 2 and {v["path"] for v in json.loads(out)["violations"]} == {
        "$.findings[0].plane", "$.severity", "$.next_steps[0].idempotency_key"}


def test_improved_without_a_passing_comparison_is_invalid(workspace: Path, run_cli) -> None:
    """The assembled handoff is validated too: `improved` needs verification.status passed."""
    code, out, err = run_cli("handoff", "build", "draft/handoff.yaml", "--out", "out", "--project", PROJECT)
    assert code == 2
    assert "$.verification.status" in err
    _nothing_written(workspace)


def test_a_secret_in_the_draft_is_rejected(workspace: Path, run_cli, monkeypatch) -> None:
    key = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    secret = DRAFT.replace("Merge agent_config.yaml", f"Use the key {key} to merge")
    (workspace / "draft" / "handoff.yaml").write_text(secret, encoding="utf-8")
    code, out, err = _build(run_cli)
    assert code == 2 and "$.next_steps[0].body: looks like a secret" in err
    assert key not in out + err
    _nothing_written(workspace)
    # a value known from the environment is caught too, even without a key shape (a key means
    # Braintrust is asked for links: the loopback one from tests/fakes, never the network)
    monkeypatch.setenv("BRAINTRUST_API_KEY", "plainvalue-0123456789abcdef")
    (workspace / "draft" / "handoff.yaml").write_text(
        DRAFT.replace("Merge agent_config.yaml", "Merge plainvalue-0123456789abcdef"), encoding="utf-8")
    with FakeBraintrust() as server:
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        code, out, err = _build(run_cli)
    assert code == 2 and "$.next_steps[0].body: looks like a secret" in err
    assert "plainvalue-0123456789abcdef" not in out + err
    _nothing_written(workspace)


def test_without_a_key_there_are_no_links_and_no_made_up_ones(workspace: Path, run_cli) -> None:
    code, _, err = _build(run_cli)
    assert code == 0, err
    handoff = json.loads((workspace / "out" / "bt-flywheel-summary.json").read_text(encoding="utf-8"))
    assert handoff["links"] == [] and handoff["findings"][0]["evidence"]["links"] == []
    bad = dict(handoff, links=[{"title": "baseline", "url": "flywheel:experiment/baseline"}])
    assert any(v.path == "$.links[0].url" for v in validate_handoff(bad))


def test_with_a_key_links_go_to_the_orgs_braintrust_pages(workspace: Path, run_cli, monkeypatch) -> None:
    """The org comes from the login response (as `bt status --json` resolves it); findings' trace ids
    link to the project's logs, the compared experiments and their dataset to their pages."""
    with FakeBraintrust(org_name="Acme Org") as server:
        project_id = server.add_project(PROJECT)
        dataset_id = server.add_dataset(project_id, "refusal rows", [])
        comparison = json.loads((workspace / "compare.json").read_text(encoding="utf-8"))
        comparison["experiments"]["baseline"]["dataset_id"] = dataset_id
        comparison["experiments"]["candidate"]["dataset_id"] = dataset_id
        (workspace / "compare.json").write_text(json.dumps(comparison), encoding="utf-8")
        monkeypatch.setenv("BRAINTRUST_API_KEY", "bt-loopback-key-0123456789")
        monkeypatch.setenv("BRAINTRUST_APP_URL", server.url)
        monkeypatch.setenv("FLYWHEEL_BACKEND", "remote")  # the workspace's orient saved a keyless (local) session
        code, _, err = _build(run_cli, "--store", STORE)
        logins = server.requests_to("login")
    assert code == 0, err
    handoff = json.loads((workspace / "out" / "bt-flywheel-summary.json").read_text(encoding="utf-8"))
    pages = f"{server.url}/app/Acme%20Org/p/{PROJECT}"
    assert handoff["findings"][0]["evidence"]["links"] == [
        {"title": "trace tr_01", "url": f"{pages}/logs?r=tr_01", "kind": "trace"},
        {"title": "trace tr_02", "url": f"{pages}/logs?r=tr_02", "kind": "trace"}]
    assert handoff["links"] == [
        {"title": "baseline experiment baseline", "url": f"{pages}/experiments/baseline", "kind": "experiment"},
        {"title": "candidate experiment candidate", "url": f"{pages}/experiments/candidate", "kind": "experiment"},
        {"title": "dataset refusal rows", "url": f"{pages}/datasets/refusal%20rows", "kind": "dataset"}]
    assert logins and logins[0].headers["authorization"] == "Bearer bt-loopback-key-0123456789"
    assert validate_handoff(handoff) == []


def test_a_missing_artifact_is_one_line_naming_it(workspace: Path, run_cli) -> None:
    (workspace / "draft" / "notes" / "diagnosis.md").unlink()
    code, out, err = _build(run_cli)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: draft/handoff.yaml: artifacts[0].path: ")
    assert "'notes/diagnosis.md' not found" in lines[0]
    _nothing_written(workspace)


def test_wrong_input_files_are_one_line_errors(workspace: Path, run_cli) -> None:
    code, _, err = run_cli("handoff", "build", "draft/handoff.yaml", "--comparison", "orient.json", "--out", "out")
    assert code == 2 and err.startswith("error: orient.json: not a comparison")
    code, _, err = run_cli("handoff", "build", "draft/handoff.yaml", "--ledger", "nope.json", "--out", "out")
    assert code == 2 and "nope.json" in err and len(err.strip().splitlines()) == 1
    (workspace / "broken.yaml").write_text("outcome: [healthy\n", encoding="utf-8")
    code, _, err = run_cli("handoff", "build", "broken.yaml", "--out", "out")
    assert code == 2 and err.startswith("error: broken.yaml:") and "cannot parse" in err
    _nothing_written(workspace)


def test_library_accepts_a_mapping_and_the_draft_schema_names_paths(workspace: Path) -> None:
    import yaml

    draft = yaml.safe_load(DRAFT)
    draft["artifacts"] = []
    result = build_from_draft(draft, orient=workspace / "orient.json", comparison=workspace / "compare.json",
                              ledger=workspace / "ledger.json", store=workspace / STORE,
                              out_dir=workspace / "lib", now="2030-01-01T00:00:00Z")
    assert result.handoff["finished_at"] == "2030-01-01T00:00:00Z"
    assert result.paths.summary == workspace / "lib" / "bt-flywheel-summary.json"
    broken = {**draft, "confidence": {"level": "sure"}, "extra": 1}
    assert [str(v) for v in validate_draft(broken)] == [
        "$.confidence.level: 'sure' is not one of ['low', 'medium', 'high']",
        "$.confidence.why: required property is missing",
        "$.extra: unexpected property (allowed: artifacts, blocking, changes, confidence, findings, goal, links, "
        "next_steps, outcome, project, severity, summary; extensions start with 'x-')",
    ]


@pytest.mark.parametrize("doc", ["skills/bt-flywheel/SKILL.md", "references/handoff-templates.md"])
def test_the_printed_yaml_drafts_are_valid_drafts(doc: str) -> None:
    """The drafts the skill prints validate (the templates' one is also built by test_recipes)."""
    import re

    import yaml

    text = (Path(__file__).resolve().parents[1] / doc).read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    assert blocks, f"no yaml draft in {doc}"
    for block in blocks:
        assert [str(v) for v in validate_draft(yaml.safe_load(block))] == []
