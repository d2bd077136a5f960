"""`flywheel demo`: the whole loop, autonomously, on examples/support-bot (DESIGN.md §1).

Phases, each through the library's public APIs, in a fresh local store under the output dir:

  Orient    mode (always autonomous here) and goal via `orient`;
  Discover  generate ~2,000 production spans by running the agent (seeded), ingest them, run the
            SQL recipes of references/sql-patterns.md (failing share by category/action/quoted
            text over 7 and 30 days, errors, per-day trend);
  Diagnose  read the recipes' results into failure patterns, drill into the tool spans for trace
            evidence, and route (`route`);
  Improve   curate balanced failing/passing traces by the target score, label them from the
            reviewer labels file (`file` labeler, no LLM), split, upsert the dataset; write the
            candidate agent config as a copy under the output dir with ONE attributable edit;
  Verify    smoke evals on train (`--first`), then baseline and candidate on validation with
            trials, paired statistics (`compare`), the loop ledger (`ledger`);
  Decide    route the next loop; write the handoff and narrative (`handoff.write_handoff`).

Variants: `improved` (fix the top pattern), `noop` (three loops of edits the model ignores:
ends `no_convergence`), `healthy` (traces without planted failures: nothing actionable).

Determinism: the seed fixes the traces (relative to the current minute), the dataset, the
edits, experiments and so every number in the handoff; `run_id` is derived from seed and
variant. What differs between two runs: `started_at`/`finished_at`, and the sha256 of artifacts
that embed absolute timestamps (the trace file, the dataset rows, the SQL results).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.demo import playbook as pb
from bt_flywheel.evals.data import load_module_from_path
from bt_flywheel.verify.comparison_model import ComparisonDoc

VARIANTS = ("improved", "noop", "healthy")
PROJECT = "support-bot"
DATASET = "support-bot-policy"
TARGET = "policy_compliance"
GUARDS = ("resolution",)
SLICE_KEY = "metadata.curation.bucket"  # failing vs passing production traces: where the effect should land
SMOKE_FIRST = 20
MAX_LOOPS = 3
CURATE_PER_BUCKET = 80
EXAMPLE_ENV = "FLYWHEEL_EXAMPLE_DIR"
# Files written under the output dir that embed absolute timestamps (their sha256 differs by run).
TIME_DEPENDENT_ARTIFACTS = ("bt-flywheel-report.html", "traces/support-bot-logs.jsonl", "dataset/dataset_rows.jsonl", "discover/queries.json",
                            "loops/ledger.json", *(f"loops/loop-{i}/comparison.json" for i in range(1, 4)))


def example_dir() -> Path:
    """examples/support-bot in this checkout (or FLYWHEEL_EXAMPLE_DIR)."""
    configured = os.environ.get(EXAMPLE_ENV)
    candidates = [Path(configured)] if configured else [
        Path(__file__).resolve().parents[3] / "examples" / "support-bot",  # a checkout (editable install)
        Path.cwd() / "examples" / "support-bot",                           # run from the plugin root
    ]
    for path in candidates:
        if (path / "agent_config.yaml").is_file():
            return path
    raise InputError(f"{candidates[0]}: the support-bot example is not here",
                     hint=f"run from a checkout of bt-flywheel, or set {EXAMPLE_ENV}")


@dataclass
class DemoResult:
    outcome: str
    verdict_line: str
    summary_path: Path
    narrative_path: Path
    handoff: dict[str, Any]
    seconds: float
    loops: int
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class _Loops:
    """What the Improve/Verify/Decide loops carry from one loop to the next and into the handoff."""

    ledger: Any
    baseline_smoke: Any
    baseline_valid: Any = None
    comparison: ComparisonDoc | None = None
    decision: Any = None
    kept: tuple[int, pb.Edit, Path, Any] | None = None  # (loop, edit, candidate config, its validation run)


def run_demo(*, out_dir: str | os.PathLike[str], seed: int = 7, variant: str = "improved", trials: int = 3,
             spans: int = 2000, say: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo end to end; never prompts. Progress lines go to `say` (default: stderr)."""
    if variant not in VARIANTS:
        raise InputError(f"--variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    if trials < 3:
        raise InputError(f"--trials: the validation run needs at least 3 trials, got {trials}")
    if spans < 500:
        raise InputError(f"--spans: at least 500 spans are needed to find a pattern, got {spans}")
    from bt_flywheel.core.output import status

    return _Demo(Path(out_dir), seed=seed, variant=variant, trials=trials, spans=spans, say=say or status).run()


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old



class _Demo:
    def __init__(self, out: Path, *, seed: int, variant: str, trials: int, spans: int,
                 say: Callable[[str], None]) -> None:
        self.out = out.resolve()
        self.seed, self.variant, self.trials, self.spans, self.say = seed, variant, trials, spans, say
        self.example = example_dir()
        self.store = self.out / "store.duckdb"
        self.queries: list[dict[str, Any]] = []
        self.reader: Any = None     # a sandboxed store Discover's queries share (one open, not one each)
        self.phases: dict[str, float] = {}
        self.artifacts: list[tuple[Path, str]] = []
        self.started = datetime.now(UTC)
        self.clock = time.monotonic()

    # -- helpers ------------------------------------------------------------------------------

    def phase(self, name: str, message: str) -> None:
        self.phases[name] = round(time.monotonic() - self.clock, 2)
        self.say(f"[{name}] {message}")

    def query(self, recipe: str, purpose: str, **values: Any) -> list[dict[str, Any]]:
        from bt_flywheel.backends.sql import run_query

        text = pb.fill(pb.RECIPES[recipe], PROJECT=PROJECT, **values)
        rows = run_query(self.reader or self.store, text).rows
        self.queries.append({"recipe": recipe, "purpose": purpose, "query": text, "rows": rows})
        return rows

    def artifact(self, path: Path, kind: str) -> Path:
        self.artifacts.append((path, kind))
        return path

    def rel(self, path: Path) -> str:
        return path.resolve().relative_to(self.out).as_posix()

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> DemoResult:
        self._fresh_out()
        builder = self.orient()
        patterns = self.discover_and_diagnose(builder)
        if self.variant == "healthy" or not patterns:
            return self.finish_healthy(builder)
        self.improve_dataset(builder)
        return self.loops(builder, patterns)

    def _fresh_out(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("store.duckdb", "store.duckdb.wal"):
            (self.out / name).unlink(missing_ok=True)
        for sub in ("traces", "discover", "dataset", "loops", "labels"):
            shutil.rmtree(self.out / sub, ignore_errors=True)

    def orient(self) -> Any:
        from bt_flywheel.core.config import load_settings
        from bt_flywheel.core.mode import resolve_mode
        from bt_flywheel.handoff.contract import HandoffBuilder
        from bt_flywheel.session.orient import orient

        goal = (self.example / "goal.txt").read_text(encoding="utf-8").strip()
        settings = load_settings({"project": PROJECT, "store": str(self.store), "backend": "local"},
                                 environ={}, cwd=self.out)
        info = orient(settings, goal=goal, mode_flag="autonomous", environ={})
        mode = resolve_mode(flag="autonomous")
        reason = f"flywheel demo is always autonomous ({mode.reason}): it never prompts"
        self.goal = info["goal"]
        self.run_id = f"fw-demo-{self.variant}-seed{self.seed}"
        builder = HandoffBuilder(goal=self.goal, project=PROJECT, mode=mode.name, mode_reason=reason,
                                 run_id=self.run_id, started_at=self.started)
        self.phase("orient", f"mode {info['mode']}, goal: {self.goal!r}, backend local, store {self.rel(self.store)}")
        return builder

    # -- Discover + Diagnose --------------------------------------------------------------------

    def discover_and_diagnose(self, builder: Any) -> list[pb.Pattern]:
        from bt_flywheel.backends.store import Store

        self.generate_and_ingest()
        with Store(self.store, read_only=True, sandboxed=True) as self.reader:
            try:
                by = self.survey_failing_slices()
                patterns = pb.find_patterns(actions_7d=by[("facets.action", 7)],
                                            actions_30d=by[("facets.action", 30)],
                                            quoted_30d=by[("facets.quoted_text", 30)],
                                            categories_30d=by[("category", 30)])
                self.drill_into(patterns)
            finally:
                self.reader = None
        self.patterns = patterns
        self.record_findings(builder, patterns)
        self.route_diagnosis(patterns)
        return patterns

    def generate_and_ingest(self) -> None:
        """Run the example's trace generator (seeded) and ingest its spans into the local store."""
        from bt_flywheel.backends.ingest import ingest
        from bt_flywheel.backends.store import Store

        gen = load_module_from_path(self.example / "generate_traces.py", "support_bot_generate_traces")
        generated = gen.generate(self.seed, n_spans=self.spans, failures=self.variant != "healthy")
        self.anchor = generated.rows[-1]["created"]
        traces_file = self.artifact(self.out / "traces" / "support-bot-logs.jsonl", "traces")
        gen.write_jsonl(traces_file, generated.rows)
        self.reviewer_labels = generated.labels
        with Store(self.store) as st:
            result = ingest(st, traces_file, project=PROJECT)
            self.project_id = st.find_project(PROJECT)
        self.phase("discover", f"generated {len(generated.rows)} spans ({generated.traces} traces, 30 days, seed "
                               f"{self.seed}{', no planted failures' if self.variant == 'healthy' else ''}); "
                               f"ingested {result.inserted} rows")

    def survey_failing_slices(self) -> dict[tuple[str, int], dict[str, tuple[int, int]]]:
        """The Discover recipes; returns {(slice key, days): {value: (failing, traces)}}."""
        self.query("peek", "schema peek: which scores and metadata keys exist")
        self.query("span_shape", "span types and names (the shape of a trace)", DAYS=30)
        self.query("daily", f"traces and {TARGET} per day", DAYS=30, SCORE=TARGET)  # calendar days: not in the handoff
        errors = self.query("errors", "reliability: errors by span", DAYS=30)
        by = {}
        for key in ("category", "facets.action", "facets.quoted_text"):
            for days in (7, 30):
                rows = self.query("failing_by_slice", f"share failing {TARGET} by metadata.{key}, {days} days",
                                  DAYS=days, SCORE=TARGET, SLICE_KEY=key)
                by[(key, days)] = pb.failing_slices(rows)
        traffic_7 = sum(n for _, n in by[("category", 7)].values())
        traffic_30 = sum(n for _, n in by[("category", 30)].values())
        failing_7 = sum(f for f, _ in by[("category", 7)].values())
        failing_30 = sum(f for f, _ in by[("category", 30)].values())
        self.discover_summary = {"traces_7d": traffic_7, "traces_30d": traffic_30, "failing_7d": failing_7,
                                 "failing_30d": failing_30,
                                 "error_spans_30d": sum(int(r.get("errors") or 0) for r in errors
                                                        if r.get("type") != "task")}
        self.say(f"[discover] {traffic_30} traces in 30 days ({traffic_7} in 7); {TARGET} failing on {failing_30} "
                 f"({failing_7} in the last 7 days); {len(self.queries)} SQL recipes run")
        return by

    def drill_into(self, patterns: list[pb.Pattern]) -> None:
        """Each pattern's tool spans give its evidence queries and up to five trace ids; then every
        query run so far is written out."""
        from bt_flywheel.core.fileio import atomic_write_json

        for pattern in patterns:
            for action in pattern.actions:
                tool = pb.TOOL_FOR_ACTION[action]
                rows = self.query("child_span", f"drill-in: what the {tool} tool was asked to do", DAYS=30,
                                  SPAN_NAME=tool)
                pattern.queries.append(self.queries[-1]["query"])
                for row in rows:
                    if row["root_span_id"] not in pattern.trace_ids and len(pattern.trace_ids) < 5:
                        pattern.trace_ids.append(row["root_span_id"])
        atomic_write_json(self.artifact(self.out / "discover" / "queries.json", "sql_results"), self.queries)

    def record_findings(self, builder: Any, patterns: list[pb.Pattern]) -> None:
        failing_queries = [q["query"] for q in self.queries if q["recipe"] == "failing_by_slice"
                           and "facets.action" in q["query"]]
        for i, pattern in enumerate(patterns):
            builder.add_finding(pattern.title, plane=pattern.plane, severity=pattern.severity, route="agent",
                                evidence=pattern.evidence, queries=[*failing_queries, *pattern.queries],
                                trace_ids=pattern.trace_ids, id=f"F{i + 1}")

    def route_diagnosis(self, patterns: list[pb.Pattern]) -> None:
        from bt_flywheel.verify.route import decide

        # routing: behaviour the agent owns (evidence in traces and scores) -> Improve: agent;
        # nothing failing on the goal's score -> exit healthy
        self.diagnosis = decide(["agent_problem"] if patterns else ["healthy"])
        route = self.diagnosis.route
        if patterns:
            names = "; ".join(f"{p.key} ({p.failing_30d} failing in 30d, {p.failing_7d} in 7d)" for p in patterns)
            self.phase("diagnose", f"{len(patterns)} pattern(s): {names} -> route: {route.route}")
        else:
            self.phase("diagnose", f"no slice fails {TARGET} on >= {pb.MIN_FAILING} traces and "
                                   f">= {pb.MIN_FAILING_SHARE:.0%} of its traffic -> route: {route.route}")

    # -- Improve: the dataset -------------------------------------------------------------------

    def improve_dataset(self, builder: Any) -> dict[str, Any]:
        labels_file = self.artifact(self.out / "labels" / "reviewer_labels.jsonl", "label_file")
        entries = [{"root_span_id": label["root_span_id"], "label": label["expected"]["action"],
                    "expected": label["expected"], "rationale": f"reviewer: {label['kind']} request"}
                   for label in self.reviewer_labels]
        from bt_flywheel.core.fileio import atomic_write_jsonl

        atomic_write_jsonl(labels_file, entries)
        info = curate_label_split(store=self.store, project=PROJECT, dataset=DATASET, score=TARGET,
                                  per_bucket=min(CURATE_PER_BUCKET, self.discover_summary["failing_30d"]),
                                  labels_file=labels_file,
                                  out_dir=self.out / "dataset", seed=f"demo-{self.seed}")
        for path, kind in info.get("files", []):
            self.artifact(Path(path), kind)
        balance = self.query("dataset_balance", "dataset balance by split and bucket", DATASET=DATASET)
        counts = {(r["split"], r["bucket"]): r["n"] for r in balance}
        info["counts"] = counts
        train = sum(n for (s, _), n in counts.items() if s == "train")
        valid = sum(n for (s, _), n in counts.items() if s == "validation")
        info.update(train=train, validation=valid)
        builder.add_change("dataset", [self.rel(p) for p, k in self.artifacts if k in ("dataset_rows", "dataset_summary")],
                           description=f"curated dataset {DATASET!r}: {train + valid} production traces balanced "
                                       f"failing/passing on {TARGET}, labeled from the reviewer file (file labeler, "
                                       f"no LLM), split {train} train / {valid} validation by stable row id",
                           why_safe="local store only; ground truth comes from reviewer labels, never from "
                                    "production output; ids are stable, so a rerun upserts instead of duplicating")
        self.phase("improve", f"dataset {DATASET}: {train} train / {valid} validation rows "
                              f"(labels: file labeler, no LLM)")
        return info

    # -- Improve (edit) + Verify + Decide, up to MAX_LOOPS ---------------------------------------

    def edits(self, patterns: list[pb.Pattern]) -> list[pb.Edit]:
        if self.variant == "noop":
            return list(pb.NOOP_EDITS[:MAX_LOOPS])
        return [p.edit for p in patterns][:MAX_LOOPS]  # worst pattern first; the next only if not kept

    @property
    def shipped_config(self) -> Path:
        return self.example / "agent_config.yaml"

    @property
    def eval_file(self) -> Path:
        return self.example / "eval_support_bot.py"

    def loops(self, builder: Any, patterns: list[pb.Pattern]) -> DemoResult:
        from bt_flywheel.verify.ledger import Ledger
        from bt_flywheel.verify.route import decide

        ledger = Ledger.open(self.out / "loops" / "ledger.json", max_loops=MAX_LOOPS, target=TARGET,
                             run_id=self.run_id)
        state = _Loops(ledger, baseline_smoke=self.run_eval(self.eval_file, self.shipped_config,
                                                            "baseline-train-smoke", split="train",
                                                            first=SMOKE_FIRST, trials=1))
        for loop, edit in enumerate(self.edits(patterns), start=1):
            candidate = self.write_candidate(loop, edit)
            smoke = self.smoke_eval(loop, candidate, state)
            if not _smoke_ok(smoke):
                state.decision = decide(["smoke_failed"], ledger=ledger, candidate=smoke.experiment_id, kept=False,
                                        change=edit.description,
                                        note="smoke eval broken: not measured on validation")
                self.say(f"[decide] {state.decision.reason}")
                if state.decision.stop:
                    break
                continue
            if self.validate(loop, edit, candidate, state) or state.decision.stop:
                break
        builder.set_loops(ledger.loop_count, max_loops=MAX_LOOPS, ledger=ledger.handoff_entries())
        self.artifact(ledger.path, "ledger")
        return self.finish_loops(builder, patterns, state)

    def write_candidate(self, loop: int, edit: pb.Edit) -> Path:
        """A copy of the shipped agent config with the one edit, and its diff, under loops/loop-N/."""
        from bt_flywheel.core.fileio import atomic_write_text

        loop_dir = self.out / "loops" / f"loop-{loop}"
        candidate = loop_dir / "agent_config.yaml"
        shipped_text = self.shipped_config.read_text(encoding="utf-8")
        new_text = pb.apply_edit(shipped_text, edit, source=str(self.shipped_config))
        atomic_write_text(candidate, new_text)
        diff = pb.unified_diff(shipped_text, new_text, old_name="examples/support-bot/agent_config.yaml",
                               new_name=self.rel(candidate))
        atomic_write_text(loop_dir / "agent_config.diff", diff)
        self.artifact(candidate, "agent_config")
        self.artifact(loop_dir / "agent_config.diff", "patch")
        self.say(f"[improve] loop {loop}: one edit to the agent config: {edit.description}")
        return candidate

    def smoke_eval(self, loop: int, candidate: Path, state: _Loops) -> Any:
        smoke = self.run_eval(self.eval_file, candidate, f"candidate-{loop}-train-smoke", split="train",
                              first=SMOKE_FIRST, trials=1)
        self.say(f"[verify] smoke on train (first {SMOKE_FIRST}): baseline {TARGET} "
                 f"{state.baseline_smoke.scores.get(TARGET, 0):.2f}, candidate {smoke.scores.get(TARGET, 0):.2f}"
                 f"{'' if _smoke_ok(smoke) else ' (structurally broken: not measured on validation)'}")
        return smoke

    def validate(self, loop: int, edit: pb.Edit, candidate: Path, state: _Loops) -> bool:
        """Baseline (once) and candidate on validation with trials, paired comparison, the loop's
        decision; True when the candidate is kept."""
        from bt_flywheel.core.fileio import atomic_write_json
        from bt_flywheel.verify.route import decide

        if state.baseline_valid is None:
            state.baseline_valid = self.run_eval(self.eval_file, self.shipped_config, "baseline-validation",
                                                 split="validation", trials=self.trials)
        cand_valid = self.run_eval(self.eval_file, candidate, f"candidate-{loop}-validation", split="validation",
                                   trials=self.trials)
        comparison = compare_experiments(self.store, state.baseline_valid.experiment_id, cand_valid.experiment_id,
                                         target=TARGET, guards=GUARDS, slice_key=SLICE_KEY)
        state.comparison = comparison
        self.last_comparison = (comparison, state.baseline_valid.experiment_id, cand_valid.experiment_id,
                                state.ledger.path)
        atomic_write_json(self.artifact(candidate.parent / "comparison.json", "comparison"), comparison.raw)
        decision = state.decision = decide(comparison=comparison, ledger=state.ledger,
                                           candidate=cand_valid.experiment_id, change=edit.description,
                                           change_artifact="agent", note=edit.description)
        target = comparison.target_score
        self.say(f"[verify] loop {loop} validation ({target.n} rows x {self.trials} trials): {TARGET} "
                 f"{target.effect:+.3f} [{_fmt(target.ci.low)}, {_fmt(target.ci.high)}] "
                 f"p={_fmt(target.p)} -> {target.verdict}; guard "
                 + ", ".join(f"{s.name} {s.verdict}" for s in comparison.guard_scores)
                 + f" -> {'kept' if decision.kept else 'not kept'}")
        self.say(f"[decide] loop {loop}: conditions {', '.join(decision.conditions)}; {decision.reason}"
                 + (f" -> exit {decision.outcome}" if decision.stop else ""))
        if decision.kept:
            state.kept = (loop, edit, candidate, cand_valid)
        return bool(decision.kept)

    def run_eval(self, eval_file: Path, config: Path, name: str, *, split: str, trials: int,
                 first: int | None = None) -> Any:
        from bt_flywheel.evals.runner import run_eval

        with _env(SUPPORT_BOT_CONFIG=str(config), SUPPORT_BOT_DATASET=DATASET):
            result = run_eval(eval_file, split=split, first=first, trials=trials, name=name, project=PROJECT,
                              store=self.store, silent=True)
        if result.task_errors:
            raise InputError(f"{eval_file}: {result.task_errors[0].describe()}")
        return result

    # -- handoff --------------------------------------------------------------------------------

    def finish_loops(self, builder: Any, patterns: list[pb.Pattern], state: _Loops) -> DemoResult:
        suggested = state.decision.next_steps() if state.decision is not None else []
        if state.kept:
            self.handoff_kept(builder, patterns, state, suggested)
            return self.write(builder, "improved")
        return self.write(builder, self.handoff_not_kept(builder, patterns, state, suggested))

    def handoff_kept(self, builder: Any, patterns: list[pb.Pattern], state: _Loops,
                     suggested: list[dict[str, Any]]) -> None:
        top, rest = patterns[0], patterns[1:]
        loop, edit, candidate, cand_valid = state.kept
        comparison = state.comparison
        target = comparison.target_score
        builder.add_change("agent", [self.rel(candidate), self.rel(candidate.with_suffix(".diff"))],
                           description=f"one edit to the support bot's config: {edit.description}",
                           why_safe=f"written as a copy under the demo output; the shipped example is "
                                    f"untouched. Validation ({target.n} rows x {self.trials} trials): "
                                    f"{TARGET} {target.effect:+.3f}, guard "
                                    f"{', '.join(GUARDS)} non-inferior")
        builder.set_verification(comparison, baseline=state.baseline_valid.experiment_id,
                                 candidate=cand_valid.experiment_id, split="validation")
        summary = (f"{top.title}: {top.failing_30d} production traces in 30 days ({top.failing_7d} in the last "
                   f"7). One config edit ({edit.knob}) raised {TARGET} on validation by {target.effect:+.3f} "
                   f"(95% CI {_fmt(target.ci.low)} to {_fmt(target.ci.high)}, p={_fmt(target.p)}, "
                   f"{target.n} rows x {self.trials} trials) with no guard regression.")
        if rest:
            summary += " Still open: " + "; ".join(p.title for p in rest) + "."
        severity = rest[0].severity if rest else "low"
        severity = {"critical": "high"}.get(severity, severity)
        builder.set_outcome("improved", severity=severity, confidence="high" if target.ci.low > 0.05 else "medium",
                            why=f"validation CI lower bound {_fmt(target.ci.low)} > 0 on {target.n} held-out "
                                f"rows with {self.trials} trials; measured once per candidate",
                            summary=summary)
        step = suggested[0] if suggested else {"intent": "review_change", "priority": "p1",
                                                "title": "Review and merge the verified change"}
        builder.add_next_step(step["intent"], f"{step['title']}: {edit.knob}",
                              f"Apply {self.rel(candidate.with_suffix('.diff'))} to "
                              "examples/support-bot/agent_config.yaml after review.", priority=step["priority"],
                              destination="code_review")
        for pattern in rest:
            builder.add_next_step("rerun", f"Run the flywheel again for: {pattern.title}",
                                  f"{pattern.evidence} Candidate edit: {pattern.edit.description}.",
                                  priority="p1" if pattern.severity in ("high", "critical") else "p2",
                                  destination="scheduler")

    def handoff_not_kept(self, builder: Any, patterns: list[pb.Pattern], state: _Loops,
                         suggested: list[dict[str, Any]]) -> str:
        """The handoff of loops that kept nothing; returns the outcome."""
        top, ledger, decision = patterns[0], state.ledger, state.decision
        if state.comparison:
            builder.set_verification(state.comparison, split="validation",
                                     baseline=state.baseline_valid.experiment_id if state.baseline_valid else None)
        stopped = decision is not None and decision.stop and decision.outcome
        outcome = decision.outcome if stopped else "needs_work"
        tried = ", ".join(f"{e.knob} ({e.key})" for e in self.edits(patterns)[:ledger.loop_count])
        summary = (f"{top.title}: {top.failing_30d} production traces in 30 days. {ledger.loop_count} loop(s) of "
                   f"single config edits ({tried}) did not improve {TARGET} on validation"
                   + (f"; stopped after {MAX_LOOPS} loops without a kept improvement." if
                      outcome == "no_convergence" else "; no further candidate edit to try."))
        builder.set_outcome(outcome, severity=top.severity if top.severity != "critical" else "high",
                            confidence="high" if outcome == "no_convergence" else "medium",
                            why=f"{ledger.validation_looks} validation look(s), none kept; "
                                f"{decision.reason if decision else 'no decision'}", summary=summary)
        for step in suggested:
            builder.add_next_step(step["intent"], step["title"], step["body"], priority=step["priority"],
                                  destination="issue_tracker")
        builder.add_next_step("investigate", f"Find an agent change that moves {TARGET}: {top.title}",
                              f"{top.evidence} The edits tried did not move it; the rule that decides this "
                              f"behaviour is {top.edit.knob}.", priority="p1", destination="issue_tracker")
        return outcome

    def finish_healthy(self, builder: Any) -> DemoResult:
        s = self.discover_summary
        builder.set_outcome("healthy", severity="none", confidence="medium",
                            why=f"{s['traces_30d']} traces over 30 days; no slice of category, action or quoted "
                                f"text fails {TARGET} on >= {pb.MIN_FAILING} traces", summary=
                            f"Production is healthy for the goal: {s['failing_30d']} of {s['traces_30d']} traces "
                            f"fail {TARGET} in 30 days and no category, action or quoted-text slice stands out; "
                            "nothing to change, verification not run.")
        for step in self.diagnosis.next_steps():
            builder.add_next_step(step["intent"], step["title"],
                                  f"Refusal and prompt-injection handling look healthy ({step['body']}); rerun on the "
                                  "next scheduled window.", priority=step["priority"], destination="local_summary")
        return self.write(builder, "healthy")

    def write_report(self) -> None:
        """The HTML report and the forest plot, next to the narrative (verification runs only)."""
        if not getattr(self, "last_comparison", None):
            return
        from bt_flywheel.report.data import build_report_inputs
        from bt_flywheel.report.html import write_forest_svg, write_report

        comparison, baseline, candidate, ledger_path = self.last_comparison
        inputs = build_report_inputs(self.store, baseline, candidate, comparison=comparison, project=PROJECT,
                                     ledger_path=ledger_path,
                                     dataset_rows_path=self.out / "dataset" / "dataset_rows.jsonl")
        self.artifact(write_report(inputs.pop("comparison"), self.out / "bt-flywheel-report.html", **inputs),
                      "report")
        self.artifact(write_forest_svg(comparison, self.out / "forest.svg"), "forest_plot")

    def write(self, builder: Any, outcome: str) -> DemoResult:
        from bt_flywheel.handoff.contract import write_handoff

        self.write_report()
        for path, kind in self.artifacts:
            if path.is_file():
                builder.add_artifact(path, kind, base_dir=self.out)
        builder.extend("x-demo", {"seed": self.seed, "variant": self.variant, "trials": self.trials,
                                  "spans": self.spans, "discover": self.discover_summary,
                                  "time_dependent_artifacts": list(TIME_DEPENDENT_ARTIFACTS)})
        handoff = builder.build()
        paths = write_handoff(handoff, self.out)
        seconds = time.monotonic() - self.clock
        self.phase("decide", f"outcome {outcome}; handoff written")
        line = verdict_line(handoff)
        return DemoResult(outcome=outcome, verdict_line=line, summary_path=paths.summary,
                          narrative_path=paths.narrative, handoff=handoff, seconds=seconds,
                          loops=handoff["loops"]["count"], phases=self.phases)


# --- small pure helpers ------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _smoke_ok(result: Any) -> bool:
    """Structurally sound: no task errors and the scores are not all ~zero."""
    values = [v for v in result.scores.values() if v is not None]
    return not result.task_errors and bool(values) and max(values) > 0.05


def verdict_line(handoff: dict[str, Any]) -> str:
    v = handoff["verification"]
    target = next((s for s in v.get("scores", []) if s.get("role") == "target"), None)
    text = f"verdict: {handoff['outcome']} (severity {handoff['severity']}, confidence {handoff['confidence']['level']})"
    if target:
        ci = target.get("ci") or [None, None]
        text += (f"; {target['name']} {target['effect']:+.3f} [{_fmt(ci[0])}, {_fmt(ci[1])}] "
                 f"n={target['n']} -> {target['verdict']}")
    else:
        text += f"; verification {v['status']}"
    return text + f"; loops {handoff['loops']['count']}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- thin adapters over other modules' APIs ----------------------------------------------------

def curate_label_split(*, store: Path, project: str, dataset: str, score: str, per_bucket: int,
                       labels_file: Path, out_dir: Path, seed: str) -> dict[str, Any]:
    """`flywheel curate --strategy score-balanced --labeler file`: failing (<= 0.5) and passing
    (>= 0.8) roots by `score` over 30 days, labeled from the reviewer file, split, written to
    out_dir and upserted into the local dataset."""
    from bt_flywheel.curate.pipeline import CurateOptions, curate, make_labeler

    options = CurateOptions(project=project, out_dir=out_dir, strategy="score-balanced", store_path=store,
                            score=score, lo=0.5, hi=0.8, per_bucket=per_bucket, window_days=30, seed=seed,
                            dataset=dataset)
    summary = curate(options, labeler=make_labeler("file", labels_path=labels_file))
    return {"summary": summary, "files": [(out_dir / "dataset_rows.jsonl", "dataset_rows"),
                                          (out_dir / "summary.json", "dataset_summary")]}


def compare_experiments(store: Path, baseline: str, candidate: str, *, target: str,
                        guards: tuple[str, ...], slice_key: str | None = None) -> ComparisonDoc:
    """`flywheel compare` on two experiments, as the document its --json writes (degenerate-data
    warnings are already in the result's notes, so they are not printed)."""
    import warnings

    from bt_flywheel.verify.compare import compare_experiments as compare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare(store, baseline, candidate, target=target, guards=list(guards), slice_key=slice_key,
                         project=PROJECT)
    return ComparisonDoc.from_dict(result.to_dict())


