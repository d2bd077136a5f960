"""Every recipe printed in the skill runs (issue 7).

Extracts each ```sql block and each command line of each ```bash block from SKILL.md,
references/*.md and README.md, fills the placeholders from a fixture (a temp local store with
synthetic project logs, two experiments in the DESIGN.md §4 shape, a dataset, an Eval file, a
handoff) and executes it:

- SQL blocks run through `bt_flywheel.backends.sql.run_query` on the local backend and must return rows.
- `scripts/flywheel ...` / `flywheel ...` lines run through the real CLI in-process with their
  real flags and must exit 0. Lines with `--remote` need a Braintrust key: they are parsed by the
  real argument parser, not run.
- `bt ...` lines: `bt sql` queries also run unchanged under the local backend, and `bt eval` is
  mapped to `flywheel eval`; every `bt` line is checked against the real bt CLI's argument parser
  (`bt <args> --help` rejects unknown flags) when bt is installed. Without bt, the lines in
  REMOTE_ONLY are skipped with the reason given there.

No test here touches the network: bt is run with HTTP(S)_PROXY pointing at a closed loopback port
and only ever with --help.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from facet_world import FIX, KINDS, facet_model, make_traces, truth
from fakes import FakeModelServer

from bt_flywheel.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
RECIPE_FILES = [REPO / "skills" / "bt-flywheel" / "SKILL.md", *sorted((REPO / "references").glob("*.md"))]
if (REPO / "README.md").exists():
    RECIPE_FILES.append(REPO / "README.md")

PROJECT = "support-bot"
FACET_TRACES = 60
SCORE = "Factuality"
GUARD = "helpfulness"

# `bt` subcommands that have no local equivalent and so are only checked against bt's own
# argument parser. When bt is not installed they are skipped, for the reason given here.
REMOTE_ONLY = {
    "view": "reads traces from Braintrust (local drill-ins are the SQL recipes beside it)",
    "experiments": "lists experiments in a Braintrust project",
    "projects": "lists Braintrust projects",
    "functions": "reads or pushes Braintrust functions",
    "datasets": "reads or writes a Braintrust dataset",
    "status": "shows the Braintrust login",
    "topics": "drives Braintrust's Topics automation (the local pipeline is `flywheel topics run`)",
    "sync": "copies objects between Braintrust and local files (the fixture holds a pulled tree)",
}
# README lines that install or fetch things rather than use the tool; never run by tests.
NOT_RUN_PREFIXES = {
    "git clone": "clones the repository from the network",
    "pip install": "installs packages from the network",
    "python -m pip": "installs packages from the network",
    "./scripts/test": "is the test command itself",
    "scripts/test": "is the test command itself",
    "claude ": "drives an installed Claude Code",
    "codex ": "drives an installed Codex",
    "/plugin": "a Claude Code slash command, not a shell command",
    "npx ": "fetches a package from the npm registry",
    "npm ": "fetches a package from the npm registry",
    "cd ": "changes directory (the test already runs in a scratch copy)",
    "bash .ci/run": "is CI itself",
    "cp ": "copies into the user's home",
    "mkdir ": "creates directories in the user's home",
}
SHELL_OK = {"find", "ls", "cat", "head", "test"}


# ---------------------------------------------------------------------------------------------
# extraction

@dataclass(frozen=True)
class Recipe:
    kind: str  # "sql" | "bash"
    text: str
    source: str  # "references/sql-patterns.md:57"

    def __str__(self) -> str:
        return self.source


_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def extract_recipes(path: Path) -> list[Recipe]:
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(REPO).as_posix()
    recipes: list[Recipe] = []
    for match in _FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        first_line = text.count("\n", 0, match.start()) + 2
        if lang == "sql":
            recipes.append(Recipe("sql", body.strip(), f"{rel}:{first_line}"))
        elif lang == "bash":
            for offset, command in _commands(body):
                recipes.append(Recipe("bash", command, f"{rel}:{first_line + offset}"))
    return recipes


def _commands(body: str) -> list[tuple[int, str]]:
    """Logical command lines (backslash continuations joined, comments and blanks dropped)."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for index, line in enumerate(body.splitlines()):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = index
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        out.append((start, " ".join(part.strip() for part in pending)))
        pending = []
    if pending:
        out.append((start, " ".join(pending)))
    return out


ALL_RECIPES = [recipe for path in RECIPE_FILES for recipe in extract_recipes(path)]
SQL_RECIPES = [r for r in ALL_RECIPES if r.kind == "sql"]
BASH_RECIPES = [r for r in ALL_RECIPES if r.kind == "bash"]


def distinct_commands(recipes: list[Recipe]) -> list[Recipe]:
    """One recipe per distinct command line. A line printed in several places (the demo in the
    README and in SKILL.md; `./scripts/flywheel` and `scripts/flywheel` are the same program) runs
    once, in its own fresh copy of the fixture, under a source naming every place it is printed."""
    by_command: dict[str, list[Recipe]] = {}
    for recipe in recipes:
        by_command.setdefault(recipe.text.removeprefix("./"), []).append(recipe)
    return [replace(same[0], source="+".join(r.source for r in same)) for same in by_command.values()]


BASH_COMMANDS = distinct_commands(BASH_RECIPES)


# ---------------------------------------------------------------------------------------------
# the fixture: a project with logs, experiments, a dataset and the files commands take

NOW = datetime.now(UTC).replace(microsecond=0)
TOPICS = ("billing", "shipping", "account", "returns")


def _log_rows() -> list[dict]:
    """120 traces over 10 days (several within the last day): a root task span, an llm span and a
    tool span. Billing questions mentioning a refund are often answered badly (low Factuality),
    some tool calls fail, scores and facets are in the usual places."""
    rows: list[dict] = []
    for i in range(120):
        topic = TOPICS[i % len(TOPICS)]
        root = f"trace-{i:03d}"
        created = NOW - timedelta(hours=2 + i * 2)
        refund = topic == "billing" and i % 8 == 0
        question = f"Can I get a refund for order {i}?" if refund else f"Question {i} about {topic}"
        bad = refund or i % 11 == 0
        answer = "I can't help with that." if bad else f"Here is how to handle {topic}."
        factuality = 0.2 if bad else 0.9
        helpful = 0.0 if bad else 1.0
        tool_error = i % 13 == 0
        rows.append({
            "id": f"{root}-root", "span_id": root, "root_span_id": root, "span_parents": [],
            "is_root": True, "created": created.isoformat(),
            "input": {"question": question}, "output": {"answer": answer},
            "metadata": {"topic": topic, "model": "gpt-4o-mini" if i % 2 else "gpt-4o",
                         "user_tier": "pro" if i % 3 else "free",
                         "facets": {"issues": "refusal" if bad else "none"}},
            "scores": {SCORE: factuality, GUARD: helpful},
            "metrics": {"start": created.timestamp(), "end": created.timestamp() + 1.5},
            "span_attributes": {"name": "support-bot", "type": "task"}, "tags": [topic],
            "error": "lookup_order failed" if tool_error else None,
        })
        rows.append({
            "id": f"{root}-llm", "span_id": f"{root}-llm", "root_span_id": root, "span_parents": [root],
            "is_root": False, "created": (created + timedelta(seconds=1)).isoformat(),
            "input": [{"role": "system", "content": "You are a support bot."},
                      {"role": "user", "content": question}],
            "output": [{"role": "assistant", "content": answer}],
            "metadata": {"model": "gpt-4o-mini" if i % 2 else "gpt-4o"},
            "metrics": {"prompt_tokens": 120 + i, "completion_tokens": 30 + i % 7, "tokens": 150 + i,
                        "estimated_cost": 0.0001 * (1 + i % 5)},
            "span_attributes": {"name": "answer", "type": "llm"},
        })
        rows.append({
            "id": f"{root}-tool", "span_id": f"{root}-tool", "root_span_id": root, "span_parents": [root],
            "is_root": False, "created": (created + timedelta(seconds=2)).isoformat(),
            "input": {"order": i}, "output": None if tool_error else {"status": "shipped"},
            "metadata": {}, "span_attributes": {"name": "lookup_order", "type": "tool"},
            "error": "timeout from orders API" if tool_error else None,
        })
    return rows


def _experiment_rows(experiment: str, *, better: bool) -> list[dict]:
    """DESIGN.md §4: per (case, trial) a root eval span with rolled-up scores, a task span and
    one score span per scorer (`Factuality`, and a facet classifier `binary_classification_scores`)."""
    rows: list[dict] = []
    facets = ("issues", "sentiment")
    for case in range(24):
        row_id = f"row-{case:02d}"
        split = "validation" if case % 4 == 0 else "train"
        facet = facets[case % 2]
        for trial in range(2):
            root = f"{experiment}-{case}-{trial}"
            created = (NOW - timedelta(minutes=60 - case)).isoformat()
            ok = (case % 3 != 0) or (better and case % 2 == 0)
            fact = 1.0 if ok else 0.0
            match = 1.0 if ok or case % 5 else 0.0
            metadata = {"trial": trial, "dataset_row_id": row_id, "split": split, "facet_name": facet}
            case_input = {"question": f"case {case}", "metadata": {"facet_name": facet}}
            expected = {"refuse": case % 3 == 0}
            output = {"answer": "ok" if ok else "I can't help with that."}
            scores = {SCORE: fact, GUARD: 1.0, "binary_decision_match": match,
                      "positive_recall": match, "negative_specificity": 1.0}
            start = (NOW - timedelta(minutes=60 - case)).timestamp()  # the SDK's metrics.start/end (seconds)
            took = 0.8 + 0.05 * case + (0.0 if better else 0.1 * trial)
            rows.append({"id": root, "span_id": root, "root_span_id": root, "span_parents": [], "is_root": True,
                         "created": created, "input": case_input, "expected": expected, "output": output,
                         "metadata": metadata, "scores": scores, "tags": [],
                         "metrics": {"start": start, "end": start + took + 0.2},
                         "span_attributes": {"name": "eval", "type": "eval"}})
            rows.append({"id": f"{root}-task", "span_id": f"{root}-task", "root_span_id": root,
                         "span_parents": [root], "is_root": False, "created": created, "input": case_input,
                         "output": output, "metrics": {"start": start + 0.1, "end": start + 0.1 + took},
                         "span_attributes": {"name": "task", "type": "task"}})
            scorer_input = {"input": case_input, "expected": expected, "metadata": metadata,
                            "output": output, "id": row_id, "tags": []}
            for name, span_scores in ((SCORE, {SCORE: fact}),
                                      ("binary_classification_scores",
                                       {"binary_decision_match": match, "positive_recall": match,
                                        "negative_specificity": 1.0})):
                rows.append({"id": f"{root}-{name}", "span_id": f"{root}-{name}", "root_span_id": root,
                             "span_parents": [root], "is_root": False, "created": created,
                             "input": scorer_input,
                             "output": {"score": fact} if name == SCORE else
                             {k: {"score": v} for k, v in span_scores.items()},
                             "scores": span_scores,
                             "span_attributes": {"name": name, "type": "score", "purpose": "scorer"}})
    return rows


def _dataset_rows() -> list[dict]:
    rows = []
    for i in range(20):
        rows.append({
            "id": f"ds-{i:02d}", "input": {"question": f"Question {i}"}, "expected": {"refuse": i % 2 == 0},
            "metadata": {"split": "validation" if i % 5 == 0 else "train",
                         "source": {"trace_id": f"trace-{i:03d}", "span_id": f"trace-{i:03d}",
                                    "project_id": "p", "created": NOW.isoformat()},
                         "label": {"labeler": "file", "rubric_version": "v1", "labeled_at": NOW.isoformat()},
                         "curation": {"bucket": "failing" if i % 2 == 0 else "passing", "seed": "flywheel-v1"}},
            "tags": [], "created": NOW.isoformat(),
        })
    return rows


def _eval_file_text() -> str:
    """The minimal Eval file printed in eval-patterns.md (so the printed file is what runs)."""
    text = (REPO / "references" / "eval-patterns.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(from braintrust import Eval\n.*?)```", text, re.S).group(1)


def _draft_text() -> str:
    """The full handoff draft printed in handoff-templates.md (so the printed draft is what builds)."""
    text = (REPO / "references" / "handoff-templates.md").read_text(encoding="utf-8")
    return re.search(r"```yaml\n(.*?)```", text, re.S).group(1)


@dataclass
class Fixture:
    root: Path
    values: dict[str, str]


@pytest.fixture(scope="session")
def recipe_fixture(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    from bt_flywheel.backends.store import Store

    root = tmp_path_factory.mktemp("recipes")
    store_path = root / ".flywheel" / "store.duckdb"
    logs = _log_rows()
    (root / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs), encoding="utf-8")
    with Store(store_path) as store:
        project_id = store.ensure_project(PROJECT)
        store.upsert_rows("project_logs", project_id, logs)
        store.upsert_rows("project_logs", project_id, make_traces(FACET_TRACES))  # facet llm spans
        ids = {}
        for name, better in (("baseline", False), ("candidate", True)):
            ids[name] = store.create_object("experiment", name, project_id,
                                            metadata={"trials": 2, "split": "all"})
            store.upsert_rows("experiment", ids[name], _experiment_rows(name, better=better))
        dataset_id = store.create_object("dataset", "support-bot-gt", project_id)
        store.upsert_rows("dataset", dataset_id, _dataset_rows())
    (root / ".env").write_text("# settings for bt --env-file (none needed by the recipes)\n", encoding="utf-8")
    (root / "facets.yaml").write_text(
        "version: 1\nfacets:\n  - name: issues\n    description: problems the user reports\n",
        encoding="utf-8")
    (root / "rubric.md").write_text("---\nversion: refusal-v1\nlabels: [refuse, answer]\n---\n"
                                    "Label refuse when the request must be refused, else answer.\n", encoding="utf-8")
    (root / "evals").mkdir()
    (root / "evals" / "eval_support.py").write_text(_eval_file_text(), encoding="utf-8")
    handoff = json.loads((REPO / "examples" / "handoffs" / "improved.json").read_text(encoding="utf-8"))
    (root / "bt-flywheel-summary.json").write_text(json.dumps(handoff, indent=2), encoding="utf-8")
    (root / "handoff-draft.yaml").write_text(_draft_text(), encoding="utf-8")
    _prepare_outputs(root)
    values = {
        "PROJECT": PROJECT, "PROJECT_ID": project_id, "DAYS": "30", "SCORE": SCORE, "GUARD": GUARD,
        "SLICE_KEY": "topic", "TERM": "refund", "TRACE_ID": "trace-000", "ROW_ID": "trace-000-root",
        "SPAN_NAME": "lookup_order", "CASE_TRACE_ID": "baseline-0-0", "FACETS_YAML": "facets.yaml", "EXPERIMENT_ID": "baseline", "BASELINE_ID": "baseline",
        "CANDIDATE_ID": "candidate", "DATASET": "support-bot-gt", "SCORER_NAME": "binary_classification_scores",
        "FACET": "issues", "EVAL_FILE": "evals/eval_support.py", "GOAL": "improve refusal handling",
        "TRACES_JSONL": "traces.jsonl", "OUT_DIR": "out", "CANDIDATE_NAME": "candidate-1",
        "LABELS_FILE": "labels.json", "SCORER_SLUG": "refusal-scorer", "SCORER_FILE": "scorers.py",
        "HANDOFF": "bt-flywheel-summary.json", "RUBRIC": "rubric.md",
        "CHANGE": "system prompt: treat quoted text as data",
        "DRAFT": "handoff-draft.yaml", "LEDGER": ".flywheel/ledger.json",
        "TOPIC": _top_topic(store_path), "TOPICS_DIR": "topics-agent",
        "FACET_DATASET": "facet-gt", "BASELINE_NAME": "facets-baseline", "CANDIDATE_FACETS_YAML": "facets-v2.yaml",
        "JUDGE_RUBRIC": "judge-rubric.yaml", "JUDGE_FILE": "judge.json", "DIMENSION": "relevance",
    }
    return Fixture(root, values)


def _prepare_outputs(root: Path) -> None:
    """What earlier steps of the loop leave behind, made with the real commands: a curate run with
    the agent labeler (out/), its label export filled in by the rubric (labels.json), a
    comparison (compare.json), a loop ledger with one loop, and orient.json. Steps whose command
    has not landed are left out."""
    commands = registered_commands()
    cwd = Path.cwd()
    os.chdir(root)
    try:
        os.environ["FLYWHEEL_AUTONOMOUS"] = "true"
        if "curate" in commands:
            code = main(["curate", "--project", PROJECT, "--score", SCORE, "--lo", "0.5", "--hi", "0.8",
                         "--per-bucket", "10", "--window-days", "30", "--labeler", "agent", "--rubric",
                         "rubric.md", "--out", "out"])
            assert code == 0, "fixture: curate --labeler agent failed"
            export = json.loads((root / "out" / "label_export.json").read_text(encoding="utf-8"))
            for index, row in enumerate(export["rows"]):
                row["label"], row["rationale"] = ("refuse" if index % 2 else "answer"), "fixture label"
            export["labeler_model"] = "fixture"
            (root / "labels.json").write_text(json.dumps(export), encoding="utf-8")
        if "compare" in commands:
            code = main(["compare", "baseline", "candidate", "--target", SCORE, "--guard", GUARD,
                         "--resamples", "0", "--out", "compare.json"])
            assert code == 0, "fixture: compare failed"
            if "route" in commands:
                code = main(["route", "decide", "--comparison", "compare.json", "--change", "fixture loop"])
                assert code == 0, "fixture: route decide failed"
        if "topics" in commands:
            _prepare_topics(root)
        if "facets" in commands:
            _prepare_facets(root)
        if "judge" in commands:
            _prepare_judge(root)
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # what `orient --json` printed
            assert main(["orient", "--json", "--project", PROJECT]) == 0, "fixture: orient failed"
        (root / "orient.json").write_text(printed.getvalue(), encoding="utf-8")
    finally:
        os.environ.pop("FLYWHEEL_AUTONOMOUS", None)
        os.chdir(cwd)


def _prepare_topics(root: Path) -> None:
    """Topics on the fixture's logs (the offline writer, so classifications exist for the SQL
    recipes), the agent writer's export filled in as the coding agent would, and a `bt sync pull`
    tree of the logs for the sync recipes."""
    from bt_flywheel.backends.store import Store

    code = main(["topics", "run", "--project", PROJECT, "--window-days", "30", "--writer", "agent",
                 "--out-dir", "topics-agent", "--quiet"])
    assert code == 0, "fixture: topics run --writer agent failed"
    code = main(["topics", "run", "--project", PROJECT, "--window-days", "30", "--quiet"])
    assert code == 0, "fixture: topics run failed"
    export_path = root / "topics-agent" / "facet_export_Task.json"
    export = json.loads(export_path.read_text(encoding="utf-8"))
    for row in export["rows"]:
        row["expected"], row["rationale"] = "Asks about an order", "fixture summary"
    export["labeler_model"] = "fixture-agent"
    export_path.write_text(json.dumps(export), encoding="utf-8")
    with Store(root / ".flywheel" / "store.duckdb", read_only=True) as store:
        project_id = store.find_project(PROJECT)
    part = root / "bt-sync" / f"project_logs_{project_id}" / "0123456789ab" / "data" / "part-000001.jsonl"
    part.parent.mkdir(parents=True)
    part.write_bytes((root / "traces.jsonl").read_bytes())
    (part.parent.parent / "spec.json").write_text(json.dumps({
        "schema_version": 1, "object_ref": f"project_logs:{project_id}", "object_type": "project_logs",
        "object_name": project_id, "direction": "pull", "scope": "traces", "filter": None, "window": "7d",
        "limit": 5000, "page_size": 1000}), encoding="utf-8")


def _top_topic(store_path: Path) -> str:
    from bt_flywheel.backends import sql

    result = sql.run_query(store_path, f"SELECT classifications.Task[0].label AS topic, count(*) AS n "
                                       f"FROM project_logs('{PROJECT}') WHERE is_root = true AND created >= "
                                       "NOW() - INTERVAL 30 day AND classifications.Task IS NOT NULL "
                                       "GROUP BY topic ORDER BY n DESC LIMIT 1")
    return result.rows[0]["topic"] if result.rows else "none"


def _prepare_facets(root: Path) -> None:
    """facets.yaml bootstrapped from the facet spans, a candidate copy with one sentence added, and a
    curated facet dataset labeled from a reviewer's file (facet-gt)."""
    import yaml

    from bt_flywheel.backends.store import Store
    from bt_flywheel.core.ids import stable_row_id

    assert main(["facets", "bootstrap", "--project", PROJECT, "--out", "facets.yaml"]) == 0, "fixture: bootstrap"
    document = yaml.safe_load((root / "facets.yaml").read_text(encoding="utf-8"))
    next(f for f in document["facets"] if f["name"] == "issues")["suffix_messages"][0]["content"] += FIX
    (root / "facets-v2.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    with Store(root / ".flywheel" / "store.duckdb", read_only=True) as store:
        project_id = store.find_project(PROJECT)
    lines = []
    for i in range(FACET_TRACES):
        for facet in ("issues", "sentiment"):
            value = truth(KINDS[i % 3], facet)
            lines.append({"id": stable_row_id(project_id, f"conv-{i:04d}", facet), "expected": value,
                          "label": "negative" if value == "none" else "positive"})
    (root / "facet-labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code = main(["curate", "--project", PROJECT, "--strategy", "facet", "--facets", "facets.yaml", "--window-days",
                 "30", "--labeler", "file", "--labels", "facet-labels.jsonl", "--out-dir", "facet-out",
                 "--dataset", "facet-gt", "--yes", "--quiet"])
    assert code == 0, "fixture: facet curate failed"


def _prepare_judge(root: Path) -> None:
    """Both experiments judged on a one-dimension rubric (judge.json is the candidate's filled file)."""
    (root / "judge-rubric.yaml").write_text(
        "version: answer-v1\ninstructions: Judge how well the answer serves the question.\n"
        "dimensions:\n  - {name: relevance, scale: [1, 5], description: 1 off-topic, 5 exactly right}\n",
        encoding="utf-8")
    for name in ("baseline", "candidate"):
        out = "judge.json" if name == "candidate" else f"judge-{name}.json"
        assert main(["judge", "export", name, "--rubric", "judge-rubric.yaml", "--out", out]) == 0
        doc = json.loads((root / out).read_text(encoding="utf-8"))
        for row in doc["rows"]:
            good = "can't" not in json.dumps(row["output"])
            row["scores"] = {"relevance": 4 if good else 2}
            row["rationales"] = {"relevance": "answers the question" if good else "refuses a fair question"}
        doc["judged_by"] = "fixture"
        (root / out).write_text(json.dumps(doc), encoding="utf-8")
        assert main(["judge", "apply", out]) == 0, "fixture: judge apply failed"


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")


def fill(text: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AssertionError(f"placeholder <{name}> has no fixture value; add it to recipe_fixture "
                                 "and document it in references/sql-patterns.md")
        return values[name]

    return _PLACEHOLDER.sub(sub, text)


@pytest.fixture(scope="session")
def facet_model_server():
    """A loopback OpenAI-compatible server inside the test process (never the network) answering as the
    generated traces' facet model, for the `facets eval` recipes."""
    with FakeModelServer(judge=facet_model, model="brain-facet-1") as server:
        yield server


@pytest.fixture
def workdir(recipe_fixture: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            facet_model_server: FakeModelServer) -> Path:
    """A private copy of the fixture, so a recipe that writes cannot affect another."""
    work = tmp_path / "work"
    shutil.copytree(recipe_fixture.root, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("OPENAI_BASE_URL", facet_model_server.base_url)
    # Recipes run as an autonomous session would: a confirmation prompt has nobody to answer it.
    monkeypatch.setenv("FLYWHEEL_AUTONOMOUS", "true")
    return work


# ---------------------------------------------------------------------------------------------
# tools

def bt_binary() -> str | None:
    found = os.environ.get("FLYWHEEL_BT") or shutil.which("bt")
    return found if found and os.access(found, os.X_OK) else None


def offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINTRUST_", "OPENAI_"))}
    env.update({"HOME": str(home), "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
                "BRAINTRUST_APP_URL": "http://127.0.0.1:9", "BRAINTRUST_API_URL": "http://127.0.0.1:9",
                "NO_COLOR": "1"})
    return env


def check_bt_parses(argv: list[str], home: Path) -> None:
    """`bt <args> --help` exits 0 only if every flag before --help is one bt knows."""
    bt = bt_binary()
    assert bt is not None
    proc = subprocess.run([bt, *argv[1:], "--help"], capture_output=True, text=True, timeout=60,
                          env=offline_env(home), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"bt rejects {shlex.join(argv)}: {proc.stderr.strip()[:400]}"


def split_env(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    return env, tokens


def run_flywheel(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


@functools.cache
def registered_commands() -> frozenset[str]:
    """The CLI's commands, read from its parser (built once: every recipe asks)."""
    parser = build_parser()
    for action in parser._actions:
        if action.dest == "command":
            return frozenset(action.choices)
    return frozenset()


def require_command(name: str) -> None:
    assert name in registered_commands(), f"a recipe calls `flywheel {name}`, which is not a command"


def bt_to_flywheel(argv: list[str]) -> list[str] | None:
    """The flywheel command equivalent to a `bt` line, where one exists."""
    sub = argv[1] if len(argv) > 1 else ""
    rest = argv[2:]
    if sub == "sql":
        query = [a for a in rest if not a.startswith("-")]
        project = None
        for flag in ("-p", "--project"):
            if flag in rest:
                project = rest[rest.index(flag) + 1]
                query = [q for q in query if q != project]
        out = ["sql", "--json", *query]
        return out + (["--project", project] if project else [])
    if sub == "eval":
        files, first, i = [], None, 0
        while i < len(rest):
            arg = rest[i]
            if arg in ("--first",):
                first, i = rest[i + 1], i + 2
                continue
            if arg in ("--env-file",):
                i += 2
                continue
            if not arg.startswith("-"):
                files.append(arg)
            i += 1
        return ["eval", *files, *(["--first", first] if first else [])]
    return None


# ---------------------------------------------------------------------------------------------
# the tests

def test_recipes_were_found() -> None:
    sources = {r.source.split(":")[0] for r in ALL_RECIPES}
    assert "skills/bt-flywheel/SKILL.md" in sources
    for name in ("sql-patterns.md", "view-patterns.md", "eval-patterns.md", "curation-patterns.md",
                 "stats.md", "routing.md", "handoff-templates.md"):
        assert any(s.endswith(name) for s in sources), f"no recipe found in references/{name}"
    assert len(SQL_RECIPES) >= 25


def test_extraction_joins_continuations_and_drops_comments(tmp_path: Path) -> None:
    body = "# a comment\nscripts/flywheel sql \\\n  --json \"SELECT 1\"\n\nbt status --json\n"
    assert _commands(body) == [(1, 'scripts/flywheel sql --json "SELECT 1"'), (4, "bt status --json")]


def test_each_printed_command_runs_once_and_every_place_is_named() -> None:
    commands = {r.text.removeprefix("./") for r in BASH_RECIPES}
    assert {r.text.removeprefix("./") for r in BASH_COMMANDS} == commands and len(BASH_COMMANDS) == len(commands)
    assert sorted(s for r in BASH_COMMANDS for s in r.source.split("+")) == sorted(r.source for r in BASH_RECIPES)


def test_every_placeholder_is_documented() -> None:
    doc = (REPO / "references" / "sql-patterns.md").read_text(encoding="utf-8")
    used = {m for r in ALL_RECIPES for m in _PLACEHOLDER.findall(r.text)}
    missing = sorted(name for name in used if f"<{name}>" not in doc)
    # Command-only placeholders are explained where they appear; the SQL ones must be in the table.
    sql_used = {m for r in SQL_RECIPES for m in _PLACEHOLDER.findall(r.text)}
    assert not sorted(sql_used & set(missing)), f"undocumented SQL placeholders: {missing}"


@pytest.mark.parametrize("recipe", SQL_RECIPES, ids=str)
def test_sql_recipe_runs_on_local_backend(recipe: Recipe, recipe_fixture: Fixture) -> None:
    from bt_flywheel.backends import sql

    query = fill(recipe.text, recipe_fixture.values)
    result = sql.run_query(recipe_fixture.root / ".flywheel" / "store.duckdb", query)
    assert result.rows, f"{recipe.source}: the recipe returned no rows on the fixture:\n{query}"
    json.dumps(result.rows, default=str)  # values come back as JSON values


@pytest.mark.parametrize("recipe", BASH_COMMANDS, ids=str)
def test_bash_recipe_runs(recipe: Recipe, recipe_fixture: Fixture, workdir: Path,
                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    line = fill(recipe.text, recipe_fixture.values)
    for prefix, reason in NOT_RUN_PREFIXES.items():
        if line.startswith(prefix):
            pytest.skip(f"not run: {reason}")
    env, argv = split_env(shlex.split(line))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    program = argv[0]
    if program in ("scripts/flywheel", "./scripts/flywheel", "flywheel"):
        args = argv[1:]
        require_command(args[0])
        if "--remote" in args:
            # Needs a Braintrust key: check the flags against the real parser, do not run.
            build_parser().parse_args(args)
            return
        code, out, err = run_flywheel(args, capsys)
        assert code == 0, f"{recipe.source}: `{line}` exited {code}: {err.strip()[:600]}"
        assert "error:" not in err
        return
    if program == "bt":
        mapped = bt_to_flywheel(argv)
        if mapped is not None:
            require_command(mapped[0])
            code, out, err = run_flywheel(mapped, capsys)
            assert code == 0, f"{recipe.source}: flywheel equivalent of `{line}` exited {code}: {err.strip()[:600]}"
            if mapped[0] == "sql":
                assert json.loads(out)["data"], f"{recipe.source}: no rows"
        if bt_binary():
            check_bt_parses(argv, workdir)
        elif mapped is None:
            reason = REMOTE_ONLY.get(argv[1])
            assert reason, f"{recipe.source}: `bt {argv[1]}` is neither mapped nor listed in REMOTE_ONLY"
            pytest.skip(f"remote-only (bt not installed): bt {argv[1]} {reason}")
        return
    if program in SHELL_OK:
        proc = subprocess.run(line, shell=True, cwd=workdir, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return
    raise AssertionError(f"{recipe.source}: don't know how to run `{program}`; map it in tests/test_recipes.py")


def test_scripts_flywheel_entry_runs_a_recipe(recipe_fixture: Fixture, workdir: Path) -> None:
    """The path the skill tells the agent to call works as a program, not only in-process."""
    env = {**os.environ, "FLYWHEEL_PYTHON": sys.executable}
    proc = subprocess.run([str(REPO / "scripts" / "flywheel"), "orient", "--json", "--local"], cwd=workdir,
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "autonomous"


def _template_blocks() -> list[tuple[str, str]]:
    text = (REPO / "references" / "handoff-templates.md").read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        if match.group(1) == "json":
            heading = re.findall(r"^## `(\w+)`", text[: match.start()], re.M)
            out.append((heading[-1] if heading else "?", match.group(2)))
    return out


def test_handoff_templates_cover_every_outcome() -> None:
    assert sorted(name for name, _ in _template_blocks()) == sorted(
        ["healthy", "improved", "needs_work", "blocked", "no_convergence"])


@pytest.mark.parametrize(("outcome", "block"), _template_blocks(), ids=[n for n, _ in _template_blocks()])
def test_handoff_template_is_a_valid_handoff(outcome: str, block: str) -> None:
    from bt_flywheel.handoff.contract import validate_handoff

    doc = json.loads(block)
    assert doc["outcome"] == outcome
    assert [f"{v.path}: {v.message}" for v in validate_handoff(doc)] == []


def test_routing_reference_lists_the_tools_conditions_in_order() -> None:
    from bt_flywheel.verify.route import CONDITIONS

    text = (REPO / "references" / "routing.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| \d+ \| `(\w+)` \|", text, re.M)
    assert listed == list(CONDITIONS)
