"""The handoff contract (DESIGN.md §9): schema, semantic checks, builder, `flywheel handoff validate`,
and write_handoff."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from fakes.comparisons import comparison
from jsonschema import Draft202012Validator

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.mode import Mode
from bt_flywheel.handoff.contract import (
    CONTRACT_VERSION,
    NARRATIVE_FILENAME,
    OUTCOMES,
    SUMMARY_FILENAME,
    HandoffBuilder,
    idempotency_key,
    is_rfc3339,
    load_schema,
    schema_path,
    validate_handoff,
    write_handoff,
)
from bt_flywheel.handoff.narrative import render_narrative

REPO_ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = REPO_ROOT / "examples" / "handoffs"


def example(outcome: str = "improved") -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{outcome}.json").read_text(encoding="utf-8"))


def messages(doc: Any) -> list[str]:
    return [str(v) for v in validate_handoff(doc)]


# ------------------------------------------------------------------ the schema file itself

def test_schema_is_draft_2020_12_and_closed_at_the_top():
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert list(schema["patternProperties"]) == ["^x-"]
    assert schema["properties"]["contract_version"] == {"const": CONTRACT_VERSION}
    assert schema_path() == REPO_ROOT / "schemas" / "handoff.schema.json"
    # every field DESIGN.md §9 names is required at the top level
    for name in ("contract_version", "run_id", "started_at", "finished_at", "mode", "goal", "project",
                 "outcome", "severity", "blocking", "confidence", "summary", "findings", "changes",
                 "verification", "loops", "links", "artifacts", "next_steps"):
        assert name in schema["required"], name


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_full_example_per_outcome_is_valid(outcome):
    doc = example(outcome)
    assert doc["outcome"] == outcome
    assert validate_handoff(doc) == []
    # and a plain jsonschema validator agrees on the schema part
    assert list(Draft202012Validator(load_schema()).iter_errors(doc)) == []


def test_examples_are_what_the_generator_produces():
    spec = importlib.util.spec_from_file_location("generate_examples", EXAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, doc in module.build_all().items():
        assert example(name) == doc, f"examples/handoffs/{name}.json is stale; run generate.py"


def test_x_extensions_are_allowed_at_the_top_level():
    doc = example()
    doc["x-ci"] = {"workflow": "nightly", "attempt": 2}
    assert validate_handoff(doc) == []


# ------------------------------------------------------------------ rejection, each with its JSON path

def _set(doc: dict, path: str, value: Any) -> None:
    *parents, last = _parse(path)
    target = doc
    for part in parents:
        target = target[part]
    target[last] = value


def _delete(doc: dict, path: str) -> None:
    *parents, last = _parse(path)
    target = doc
    for part in parents:
        target = target[part]
    del target[last]


def _parse(path: str) -> list[Any]:
    parts: list[Any] = []
    for token in path.replace("]", "").replace("[", ".").split("."):
        if token:
            parts.append(int(token) if token.isdigit() else token)
    return parts


SHA_OF_NOTHING = hashlib.sha256(b"").hexdigest()

# (name, mutation, expected substring of one violation line)
MUTATIONS: list[tuple[str, Any, str]] = [
    ("missing required field", lambda d: _delete(d, "run_id"), "$.run_id: required property is missing"),
    ("missing nested required field", lambda d: _delete(d, "confidence.why"),
     "$.confidence.why: required property is missing"),
    ("bad outcome enum", lambda d: _set(d, "outcome", "great"), "$.outcome: 'great' is not one of ['healthy'"),
    ("bad intent enum", lambda d: _set(d, "next_steps[0].intent", "foo"),
     "$.next_steps[0].intent: 'foo' is not one of ['no_action', 'review_change'"),
    ("wrong type boolean", lambda d: _set(d, "blocking", "no"), "$.blocking: 'no' is not of type boolean"),
    ("wrong type array", lambda d: _set(d, "findings", {"F1": "x"}), "$.findings: {\"F1\": \"x\"} is not of type array"),
    ("extra top-level key", lambda d: _set(d, "extra", 1),
     "$.extra: unexpected property (allowed: artifacts, blocking, changes,"),
    ("extra nested key", lambda d: _set(d, "findings[0].confidence", "high"), "$.findings[0].confidence: unexpected"),
    ("wrong idempotency key", lambda d: _set(d, "next_steps[0].idempotency_key", SHA_OF_NOTHING),
     "$.next_steps[0].idempotency_key: does not match sha256(intent"),
    ("non-hex idempotency key", lambda d: _set(d, "next_steps[1].idempotency_key", "abc"),
     "$.next_steps[1].idempotency_key: 'abc' does not match '^[0-9a-f]{64}$'"),
    ("key stale after title edit", lambda d: _set(d, "next_steps[0].title", "Something else"),
     "$.next_steps[0].idempotency_key: does not match"),
    ("sk- secret in summary", lambda d: _set(d, "summary", "key sk-abcdefghijklmnopqrstuvwx leaked"),
     "$.summary: looks like a secret"),
    ("bearer token in body", lambda d: _set(d, "next_steps[0].body", "curl -H 'Authorization: Bearer abc123def456ghi789'"),
     "$.next_steps[0].body: looks like a secret"),
    ("api_key pair in a query", lambda d: _set(d, "findings[0].evidence.queries[0]", "SELECT 1 -- api_key=hunter2hunter2"),
     "$.findings[0].evidence.queries[0]: looks like a secret"),
    ("bad sha256", lambda d: _set(d, "artifacts[0].sha256", "ABC123"), "$.artifacts[0].sha256: 'ABC123' does not match"),
    ("date-time not a date", lambda d: _set(d, "started_at", "yesterday"), "$.started_at: 'yesterday' is not an RFC 3339"),
    ("date-time impossible month", lambda d: _set(d, "finished_at", "2025-13-01T00:00:00Z"),
     "$.finished_at: '2025-13-01T00:00:00Z' is not an RFC 3339"),
    ("date-time without offset", lambda d: _set(d, "started_at", "2025-06-01T09:00:00"),
     "$.started_at: '2025-06-01T09:00:00' is not an RFC 3339"),
    ("finished before started", lambda d: _set(d, "finished_at", "2025-06-01T08:00:00Z"),
     "$.finished_at: 2025-06-01T08:00:00Z is before started_at"),
    ("wrong contract version", lambda d: _set(d, "contract_version", "bt-flywheel-handoff/v2"),
     "$.contract_version: 'bt-flywheel-handoff/v2' must be \"bt-flywheel-handoff/v1\""),
    ("bad confidence level", lambda d: _set(d, "confidence.level", "certain"), "$.confidence.level: 'certain' is not one of"),
    ("bad plane", lambda d: _set(d, "findings[0].plane", "vibes"), "$.findings[0].plane: 'vibes' is not one of"),
    ("bad change artifact", lambda d: _set(d, "changes[1].artifact", "code"), "$.changes[1].artifact: 'code' is not one of"),
    ("ci with one bound", lambda d: _set(d, "verification.scores[0].ci", [0.1]), "$.verification.scores[0].ci:"),
    ("p above 1", lambda d: _set(d, "verification.scores[0].p", 1.5), "$.verification.scores[0].p: 1.5 is greater than"),
    ("bad verdict", lambda d: _set(d, "verification.scores[1].verdict", "fine"),
     "$.verification.scores[1].verdict: 'fine' is not one of"),
    ("improved without a passing verification", lambda d: _set(d, "verification.status", "failed"),
     "$.verification.status: 'failed' must be \"passed\""),
    ("passed verification without baseline", lambda d: _set(d, "verification.baseline", None),
     "$.verification.baseline: null is not of type string"),
    ("duplicate finding id", lambda d: d["findings"].append(copy.deepcopy(d["findings"][0])),
     "$.findings[1].id: duplicate finding id 'F1'"),
    ("duplicate next step", lambda d: d["next_steps"].append(copy.deepcopy(d["next_steps"][0])),
     "$.next_steps[2].idempotency_key: duplicate of next_steps[0]"),
    ("bad mode name", lambda d: _set(d, "mode.name", "auto"), "$.mode.name: 'auto' is not one of"),
    ("url without scheme", lambda d: _set(d, "links[0].url", "not a url"), "$.links[0].url: 'not a url' does not match"),
    ("negative loop count", lambda d: _set(d, "loops.count", -1), "$.loops.count: -1 is less than the minimum"),
    ("bad priority", lambda d: _set(d, "next_steps[0].priority", "urgent"), "$.next_steps[0].priority: 'urgent' is not one of"),
    ("bad destination", lambda d: _set(d, "next_steps[0].suggested_destination", "slack"),
     "$.next_steps[0].suggested_destination: 'slack' is not one of"),
    ("project without name", lambda d: _delete(d, "project.name"), "$.project.name: required property is missing"),
    ("ledger of wrong shape", lambda d: _set(d, "loops.ledger", 3), "$.loops.ledger: 3 must be a path string"),
    ("empty goal", lambda d: _set(d, "goal", ""), "$.goal: must not be empty"),
]


@pytest.mark.parametrize("name,mutate,expected", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_rejected_with_its_json_path(name, mutate, expected):
    doc = example()
    mutate(doc)
    found = messages(doc)
    assert any(expected in line for line in found), f"{name}: expected {expected!r} in {found}"


def test_at_least_fifteen_distinct_mutations():
    assert len({m[0] for m in MUTATIONS}) >= 15


def test_not_an_object():
    assert messages([1, 2]) == ["$: expected a JSON object, got list"]


def test_secret_violation_does_not_echo_the_secret():
    doc = example()
    doc["summary"] = "sk-abcdefghijklmnopqrstuvwx"
    text = "\n".join(messages(doc))
    assert "sk-abcdefghijklmnopqrstuvwx" not in text
    assert text.count("$.summary:") == 1  # schema `not` and the walk report it once


def test_a_value_registered_as_secret_is_rejected_anywhere(monkeypatch):
    monkeypatch.setenv("BRAINTRUST_API_KEY", "plain-looking-value-42x")
    doc = example()
    doc["verification"]["candidate"] = "exp-plain-looking-value-42x"
    assert "$.verification.candidate: looks like a secret" in "\n".join(messages(doc))


def test_every_violation_is_reported_not_just_the_first():
    doc = example()
    del doc["run_id"]
    doc["outcome"] = "great"
    doc["artifacts"][0]["sha256"] = "nope"
    paths = {v.path for v in validate_handoff(doc)}
    assert {"$.run_id", "$.outcome", "$.artifacts[0].sha256"} <= paths


@pytest.mark.parametrize("value,ok", [
    ("2025-06-01T09:00:00Z", True),
    ("2025-06-01T09:00:00.123456+02:00", True),
    ("2025-06-01t09:00:00z", True),
    ("2025-06-01", False),
    ("2025-06-01 09:00:00Z", False),
    ("2025-02-30T09:00:00Z", False),
    ("2025-06-01T25:00:00Z", False),
    ("2025-06-01T09:00:00", False),
    (20250601, False),
])
def test_date_time_format_is_really_checked(value, ok):
    assert is_rfc3339(value) is ok
    doc = example()
    doc["started_at"] = value
    has_error = any(v.path == "$.started_at" for v in validate_handoff(doc))
    assert has_error is (not ok)


# ------------------------------------------------------------------ `flywheel handoff validate`

def test_cli_validate_valid(run_cli):
    code, out, err = run_cli("handoff", "validate", str(EXAMPLES / "blocked.json"))
    assert code == 0
    assert out.strip().endswith("valid bt-flywheel-handoff/v1 handoff (outcome blocked)")
    assert err == ""


def test_cli_validate_prints_every_violation_with_its_path(run_cli, tmp_path):
    doc = example()
    doc["next_steps"][0]["intent"] = "foo"
    doc["extra"] = True
    path = tmp_path / "h.json"
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("handoff", "validate", str(path))
    assert code == 2
    lines = out.splitlines()
    assert any(line.startswith(f"{path}: $.extra: unexpected property (allowed: artifacts,") and
               line.endswith("; extensions start with 'x-')") for line in lines)
    assert any(line.startswith(f"{path}: $.next_steps[0].intent: 'foo' is not one of ['no_action'") for line in lines)
    assert any("$.next_steps[0].idempotency_key: does not match" in line for line in lines)
    assert err == f"error: {path}: invalid handoff: 3 violations\n"


def test_cli_validate_json(run_cli, tmp_path):
    doc = example()
    del doc["summary"]
    path = tmp_path / "h.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run_cli("handoff", "validate", str(path), "--json")
    assert code == 2
    report = json.loads(out)
    assert report["valid"] is False
    assert report["violations"] == [{"path": "$.summary", "message": "required property is missing"}]


@pytest.mark.parametrize("content,expected", [
    (None, "file not found"),
    ("{not json", "invalid JSON"),
    ("[]", "$: expected a JSON object, got list"),
])
def test_cli_validate_missing_or_unparseable_is_exit_2(run_cli, tmp_path, content, expected):
    path = tmp_path / "h.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli("handoff", "validate", str(path))
    assert code == 2
    assert expected in out + err
    assert "Traceback" not in err


# ------------------------------------------------------------------ the builder

def _builder(**kwargs: Any) -> HandoffBuilder:
    return HandoffBuilder(goal="improve refusals", project="support-bot", mode=Mode("autonomous", "CI=true"),
                          started_at="2025-06-01T09:00:00Z", **kwargs)


def _comparison(verdict: str = "improved", guard: str = "non_inferior") -> dict[str, Any]:
    return comparison(verdict, guard=guard, baseline="exp-a", candidate="exp-b")


def test_builder_makes_a_valid_handoff_with_computed_fields(tmp_path):
    artifact = tmp_path / "rows.jsonl"
    artifact.write_bytes(b'{"id": 1}\n')
    b = _builder(project_id="p_1")
    b.add_finding("Misses refusals", plane="behavior", severity="high", route="agent", evidence="38/212",
                  queries=["SELECT 1"], trace_ids=["t1"], links=[{"title": "q", "url": "https://example.com/q"}])
    b.add_change("agent", [Path("agent.yaml")], description="prompt line", why_safe="guards hold")
    b.set_verification(_comparison())
    b.set_loops(1, ledger=[{"loop": 1, "kept": True}])
    b.add_artifact(artifact, "dataset_rows", base_dir=tmp_path)
    key = b.add_next_step("review_change", "  Review   the change ", "see diff", priority="p1",
                          destination="code_review")
    b.extend("x-ci", {"job": 7})
    b.set_outcome("improved", severity="low", confidence="high", why="CI above 0", summary="better")
    doc = b.build(finished_at="2025-06-01T09:05:00Z")
    assert validate_handoff(doc) == []
    assert doc["contract_version"] == CONTRACT_VERSION
    assert doc["run_id"].startswith("fw-20250601T090000Z-")
    assert doc["project"] == {"name": "support-bot", "id": "p_1"}
    assert doc["next_steps"][0]["title"] == "Review the change"
    assert key == doc["next_steps"][0]["idempotency_key"] == hashlib.sha256(
        b"review_change\nReview the change\nsupport-bot").hexdigest()
    assert doc["artifacts"] == [{"path": "rows.jsonl", "kind": "dataset_rows",
                                 "sha256": hashlib.sha256(b'{"id": 1}\n').hexdigest(), "bytes": 10}]
    ver = doc["verification"]
    comp = _comparison()
    assert ver["status"] == "passed" and (ver["baseline"], ver["candidate"]) == ("exp-a", "exp-b")
    assert ver["scores"][0]["role"] == "target" and ver["scores"][1]["role"] == "guard"
    assert ver["scores"][0]["ci"] == comp["scores"][0]["ci"] and ver["scores"][0]["effect"] == pytest.approx(0.2)
    assert ver["scores"][1]["verdict"] == "non_inferior" and ver["scores"][1]["p"] == 1.0  # identical rows
    assert ver["guards"] == {"passed": True, "margin": 0.02}
    assert doc["x-ci"] == {"job": 7}
    json.dumps(doc, allow_nan=False)  # strict JSON


def test_idempotency_key_is_stable_across_runs():
    keys = []
    for started in ("2025-06-01T09:00:00Z", "2025-06-08T09:00:00Z"):
        b = HandoffBuilder(goal="g", project="support-bot", mode="autonomous", mode_reason="CI=true",
                           started_at=started)
        keys.append(b.add_next_step("investigate", "Fix the scorer", "body differs " + started))
    assert keys[0] == keys[1] == idempotency_key("investigate", "Fix the scorer", "support-bot")
    assert idempotency_key("investigate", "Fix the scorer", "other-bot") != keys[0]


@pytest.mark.parametrize("bad", [
    {"baseline": "a", "candidate": "b", "scores": [{"name": "Refusal", "mean_diff": 0.1, "p_value": 0.01}]},
    {**comparison(), "status": "failed"},
])
def test_set_verification_reads_only_what_compare_writes(bad):
    """One spelling (compare's): alias shapes and a status that contradicts the keep rule are refused."""
    with pytest.raises(InputError, match="comparison"):
        _builder().set_verification(bad)


def test_set_verification_reads_a_compare_comparison():
    from bt_flywheel.verify import compare

    rows = range(60)

    def experiment(eid: str, refusal: int, factuality: int) -> Any:
        scores = {"Refusal": {f"r{i}": [1.0 if i % refusal else 0.0] * 3 for i in rows},
                  "Factuality": {f"r{i}": [0.9 if i % factuality else 0.8] * 3 for i in rows}}
        return compare.ExperimentScores(id=eid, name=eid, created=None, metadata={}, root_rows=180,
                                        scores=scores, available={"Refusal", "Factuality"})

    result = compare.compare_loaded(experiment("base", 3, 5), experiment("cand", 11, 7), target="Refusal",
                                    guards=["Factuality"], n_resamples=200)
    b = _builder()
    b.set_verification(result, split="validation")
    ver = b.verification
    assert ver["status"] == result.status == "passed"
    assert (ver["baseline"], ver["candidate"], ver["target"]) == ("base", "cand", "Refusal")
    assert [s["name"] for s in ver["scores"]] == ["Refusal", "Factuality"]
    assert ver["multiplicity"]["method"] == "holm"
    assert ver["regression_threshold"] == result.threshold
    b.set_outcome("improved", severity="low", confidence="high", why="w", summary="s")
    assert validate_handoff(b.build()) == []


@pytest.mark.parametrize("call,expected", [
    (lambda b: b.add_finding("t", plane="vibes", severity="low", route="agent", evidence="e"),
     "finding plane: 'vibes' is not one of"),
    (lambda b: b.add_change("code", ["f"], description="d", why_safe="w"), "change artifact: 'code'"),
    (lambda b: b.add_next_step("open_pr", "t", "b"), "next step intent: 'open_pr'"),
    (lambda b: b.add_next_step("rerun", "t", "b", priority="high"), "next step priority: 'high'"),
    (lambda b: b.extend("ci", 1), "extension key 'ci' must start with 'x-'"),
    (lambda b: b.add_artifact("nope.txt", "report"), "nope.txt: artifact file not found"),
    (lambda b: b.build(), "set_outcome() was not called"),
    (lambda b: b.set_outcome("improved", severity="low", confidence="high", why="w", summary="s").build(),
     "$.verification.status: 'not_run' must be \"passed\""),
])
def test_builder_errors_name_the_field(call, expected):
    with pytest.raises(InputError) as info:
        call(_builder())
    assert expected in info.value.one_line()


def test_builder_redacts_instead_of_failing():
    b = _builder()
    b.add_next_step("investigate", "Rotate sk-abcdefghijklmnopqrstuvwx", "token=abcdefghijkl leaked")
    b.set_outcome("needs_work", severity="high", confidence="low", why="w",
                  summary="found sk-abcdefghijklmnopqrstuvwx in logs")
    doc = b.build()
    text = json.dumps(doc)
    assert "sk-abcdefghijklmnopqrstuvwx" not in text and "abcdefghijkl" not in text
    assert doc["summary"] == "found [REDACTED] in logs"
    step = doc["next_steps"][0]
    assert step["idempotency_key"] == idempotency_key("investigate", step["title"], "support-bot")


# ------------------------------------------------------------------ write_handoff

def test_write_handoff_writes_both_files_atomically(tmp_path):
    doc = example("no_convergence")
    paths = write_handoff(doc, tmp_path / "out")
    assert paths.summary == tmp_path / "out" / SUMMARY_FILENAME
    assert paths.narrative == tmp_path / "out" / NARRATIVE_FILENAME
    assert json.loads(paths.summary.read_text()) == doc
    assert paths.narrative.read_text() == render_narrative(doc)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([SUMMARY_FILENAME, NARRATIVE_FILENAME])


def test_write_handoff_accepts_a_builder(tmp_path):
    b = _builder()
    b.set_outcome("healthy", severity="none", confidence="medium", why="w", summary="fine")
    paths = write_handoff(b, tmp_path)
    assert validate_handoff(json.loads(paths.summary.read_text())) == []


def test_write_handoff_refuses_an_invalid_handoff_and_writes_nothing(tmp_path):
    doc = example()
    doc["outcome"] = "great"
    with pytest.raises(InputError, match=r"\$\.outcome: 'great' is not one of"):
        write_handoff(doc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_handoff_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    good = example("healthy")
    paths = write_handoff(good, tmp_path)
    before = paths.summary.read_bytes()
    import bt_flywheel.core.fileio as fileio

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_handoff(example("improved"), tmp_path)
    assert paths.summary.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite {name}")


def test_numbers_are_finite_json():
    for outcome in OUTCOMES:
        text = (EXAMPLES / f"{outcome}.json").read_text()
        json.loads(text, parse_constant=_reject_constant)  # no NaN/Infinity anywhere
