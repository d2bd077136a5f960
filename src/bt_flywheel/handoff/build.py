"""`flywheel handoff build`: a valid handoff from a small draft holding only the judgement.

The agent writes a draft (YAML or JSON, `schemas/handoff-draft.schema.json`): outcome,
severity, blocking, confidence, summary, findings, changes, next steps (no idempotency keys),
artifacts (path + kind, no hashes), links, `x-` extensions, and optionally goal and project.
`build_from_draft` fills everything computable with `handoff.HandoffBuilder`:

- contract_version, run_id (the ledger's), started_at (when Orient ran: ORIENT.json, else the
  saved session; else the ledger's `created_at`; else now), finished_at (now);
- mode + reason and goal/project from ORIENT.json (`flywheel orient --json`), else the session
  Orient saved, else resolved now; the draft's goal/project win over orient's;
- verification from COMPARE.json (`flywheel compare --json` / `--out`) via `set_verification`;
- loops from the ledger (`Ledger.handoff_entries()`, count, max);
- artifact sha256 and size (paths relative to the draft's folder, else the working directory);
  the comparison and ledger files are listed too (kinds `comparison`, `ledger`); a file under
  a path CI cannot read (`.flywheel/`, or ignored by git) is copied next to the handoff and
  listed there;
- warnings (handoff.checks): a figure in the draft's summary or confidence text that no score
  in the comparison has, and a candidate with repeated validation looks;
- idempotency keys (the builder computes them);
- with a Braintrust key, links to the findings' traces, the compared experiments and their
  dataset on the org's Braintrust pages (`handoff.links`); without one, no links are added.

With a comparison it also writes `forest.svg` next to the narrative (kind `forest_plot`, which
the narrative embeds) and, when both experiments can be read (from `--store`, else the settings'
backend: the local store, or Braintrust with a key), the HTML report `bt-flywheel-report.html`
(kind `report`). Nothing is written unless the draft and the
assembled handoff are valid; `HandoffInvalid.violations` lists every problem with its JSON path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.handoff.contract import (
    HandoffBuilder,
    HandoffPaths,
    Violation,
    format_time,
    is_rfc3339,
    parse_time,
    validate_handoff,
    write_handoff,
)
from bt_flywheel.handoff.draft_model import SCHEMA_NAME as DRAFT_SCHEMA
from bt_flywheel.handoff.draft_model import HandoffDraft, HandoffInvalid, load_draft, validate_draft
from bt_flywheel.verify.comparison_model import ComparisonDoc, as_comparison, load_comparison

__all__ = ["BuildResult", "HandoffDraft", "HandoffInvalid", "build_from_draft", "load_draft", "validate_draft"]

FOREST_FILENAME = "forest.svg"
REPORT_FILENAME = "bt-flywheel-report.html"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class BuildResult:
    """What `build_from_draft` wrote: the handoff, its two files, and the extra files (plot, report)."""

    handoff: dict[str, Any]
    paths: HandoffPaths
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": str(self.paths.summary), "narrative": str(self.paths.narrative),
                "written": [str(p) for p in self.written], "outcome": self.handoff["outcome"],
                "verification_status": self.handoff["verification"]["status"],
                "artifacts": self.handoff["artifacts"], "notes": self.notes, "warnings": self.warnings}


# ---------------------------------------------------------------------------- the draft

def draft_schema_path() -> Path:
    from bt_flywheel.core.schemas import schema_path

    return schema_path(DRAFT_SCHEMA)


# ---------------------------------------------------------------------------- the other inputs

def load_orient(path: str | os.PathLike[str]) -> dict[str, Any]:
    from bt_flywheel.core.fileio import read_json_file

    doc = read_json_file(path)
    if not isinstance(doc, dict) or doc.get("mode") not in ("interactive", "autonomous"):
        raise InputError(f"{path}: not an orient result (expected the output of `flywheel orient --json`)")
    return doc


def _orient_time(orient: Mapping[str, Any] | None) -> str | None:
    if not orient:
        return None
    for value in (orient.get("started_at"), orient.get("time"), (orient.get("data_window") or {}).get("end")):
        if is_rfc3339(value):
            return value
    return None


def _resolve_artifact(raw: str, where: str, bases: list[Path]) -> Path:
    candidate = Path(raw)
    if candidate.is_absolute():
        if candidate.is_file():
            return candidate
    else:
        for base in bases:
            if (base / candidate).is_file():
                return base / candidate
    looked = "" if candidate.is_absolute() else " (looked in " + ", ".join(str(b) for b in bases) + ")"
    raise InputError(f"{where}: artifact file {raw!r} not found{looked}")


def _display_path(file: Path, out: Path) -> str:
    resolved = file.resolve()
    for base in (out.resolve(), Path.cwd().resolve()):
        try:
            return resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return resolved.as_posix()


def _report_backend(store: str | os.PathLike[str] | None, settings: Any,
                    comparison: ComparisonDoc) -> tuple[Any, str | None]:
    """Where the report reads the compared experiments: the store given, else the settings'
    backend (the local store, or Braintrust with a key). Returns (backend, None), or (None, why
    the report is skipped)."""
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.backends.local import LocalBackend
    from bt_flywheel.core.errors import FlywheelError

    if store is None and settings is None:
        return None, "no local store given"
    if store is not None or getattr(settings, "backend_resolved", "local") == "local":
        path = store if store is not None else settings.store
        if not path:
            return None, "no local store given"
        if not Path(path).is_file():
            return None, f"no local store at {path}"
        backend: Any = LocalBackend(path)
    else:
        backend = backend_from_settings(settings)
    for side in ("baseline", "candidate"):
        name = getattr(comparison, side)
        try:
            if not name:
                raise InputError(f"the comparison names no {side} experiment")
            backend.experiment(str(name))
        except FlywheelError as exc:
            where = "Braintrust" if backend.name == "remote" else str(getattr(backend, "store_path", ""))
            return None, f"the {side} experiment {name!r} is not readable from {where} ({exc.one_line()})"
    return backend, None


# ---------------------------------------------------------------------------- build

@dataclass
class _Inputs:
    """The draft and everything it is built with, loaded and checked."""

    doc: HandoffDraft
    source: str
    base: Path
    orient: dict[str, Any]
    comparison: ComparisonDoc | None
    comparison_file: Path | None
    ledger: Any  # verify.ledger.Ledger | None
    ledger_file: Path | None


def _load_inputs(draft: str | os.PathLike[str] | Mapping[str, Any], orient: Any, comparison: Any,
                 ledger: str | os.PathLike[str] | None, settings: Any) -> _Inputs:
    """Read and validate the draft, ORIENT.json (else the saved session), COMPARE.json and the
    ledger (else the session's ledger when it exists)."""
    from bt_flywheel.verify.ledger import Ledger

    if isinstance(draft, Mapping):
        source, base = "draft", Path.cwd()
        doc = HandoffDraft.from_dict(draft, source=source)
    else:
        source, base = str(draft), Path(draft).resolve().parent
        doc = load_draft(draft)
    session = getattr(settings, "session", None)
    if orient is None and session:
        orient = session
    orient_doc = load_orient(orient) if orient is not None and not isinstance(orient, Mapping) else dict(orient or {})
    comp = None
    if comparison is not None:
        comp = (as_comparison(comparison) if isinstance(comparison, Mapping | ComparisonDoc)
                else load_comparison(comparison))
    if ledger is None and session and getattr(settings, "ledger", None) and Path(settings.ledger).is_file():
        ledger = settings.ledger
    book = Ledger.open(ledger, create=False) if ledger is not None else None
    return _Inputs(doc, source, base, orient_doc, comp,
                   Path(comparison) if comparison is not None and not isinstance(comparison, Mapping | ComparisonDoc)
                   else None,
                   book, Path(ledger) if ledger is not None else None)


def _start_builder(inputs: _Inputs, settings: Any, env: Mapping[str, str], finished: str) -> HandoffBuilder:
    """Who, what, when: goal, project, mode and the run's times. started_at is when Orient ran
    (ORIENT.json or the session); the ledger only supplies the run id."""
    doc, orient_doc, book = inputs.doc, inputs.orient, inputs.ledger
    goal = doc.goal or orient_doc.get("goal")
    if not goal:
        from bt_flywheel.session.orient import resolve_goal

        goal = resolve_goal(None, env)
    project = doc.project or orient_doc.get("project") or getattr(settings, "project", None)
    if not project:
        raise InputError(f"{inputs.source}: project: not in the draft, ORIENT.json or the settings; "
                         "add `project: <name>` to the draft")
    if orient_doc:
        mode_name, reason = orient_doc["mode"], orient_doc.get("mode_reason") or "from orient"
    else:
        from bt_flywheel.core.mode import resolve_mode

        mode = resolve_mode(goal=goal, environ=env)
        mode_name, reason = mode.name, mode.reason
    project_id = None
    if orient_doc.get("project") == project:
        store_state = orient_doc.get("store")
        project_id = orient_doc.get("project_id") or (store_state.get("project_id")
                                                      if isinstance(store_state, Mapping) else None)
    started = _orient_time(orient_doc) or (book.doc.created_at if book else None)
    if started and is_rfc3339(started) and parse_time(started) > parse_time(finished):
        started = finished
    run_id = book.doc.run_id if book else None
    return HandoffBuilder(goal=goal, project=project, mode=mode_name, mode_reason=reason,
                          project_id=project_id, run_id=run_id if run_id and _RUN_ID.match(run_id) else None,
                          started_at=started or finished)


def _add_judgement(builder: HandoffBuilder, doc: HandoffDraft) -> None:
    """The agent's part: outcome, confidence, summary, findings, changes, next steps, links, x-."""
    builder.set_outcome(doc.outcome, severity=doc.severity, confidence=doc.confidence_level,
                        why=doc.confidence_why, summary=doc.summary, blocking=doc.blocking)
    for i, finding in enumerate(doc.findings):
        ev = finding.evidence
        builder.add_finding(finding.title, plane=finding.plane, severity=finding.severity,
                            route=finding.route, evidence=ev.summary, queries=ev.queries,
                            links=[link.to_dict() for link in ev.links], trace_ids=ev.trace_ids,
                            id=finding.id or f"F{i + 1}")
    for change in doc.changes:
        builder.add_change(change.artifact, change.files, description=change.description, why_safe=change.why_safe)
    for step in doc.next_steps:
        builder.add_next_step(step.intent, step.title, step.body, priority=step.priority, destination=step.destination)
    for link in doc.links:
        builder.add_link(link.title, link.url, kind=link.kind)
    for key, value in doc.extensions.items():
        builder.extend(key, value)


def _add_numbers(builder: HandoffBuilder, inputs: _Inputs, out: Path) -> list[tuple[Path, Path]]:
    """Verification, loops and artifacts. Returns the copies to make: artifacts under a path the
    repository ignores (e.g. .flywheel/) are listed at their copy next to the handoff."""
    if inputs.comparison is not None:
        builder.set_verification(inputs.comparison)
    book = inputs.ledger
    if book is not None:
        entries = [{k: v for k, v in e.items() if not (k == "note" and not v)} for e in book.handoff_entries()]
        builder.set_loops(book.loop_count, max_loops=book.max_loops, ledger=entries)
    bases = [inputs.base] if inputs.base.resolve() == Path.cwd().resolve() else [inputs.base, Path.cwd()]
    listed = [(_resolve_artifact(item.path, f"{inputs.source}: artifacts[{i}].path", bases), item.kind)
              for i, item in enumerate(inputs.doc.artifacts)]
    for file, kind in ((inputs.comparison_file, "comparison"), (inputs.ledger_file, "ledger")):
        if file is not None and file.resolve() not in {f.resolve() for f, _ in listed}:
            listed.append((file, kind))
    copies = plan_copies([f for f, _ in listed], out)
    for file, kind in listed:
        target = copies.get(file.resolve())
        builder.add_artifact(file, kind)["path"] = _display_path(target or file, out)
    return [(src, dst) for src, dst in copies.items()]


def _add_links(builder: HandoffBuilder, inputs: _Inputs, settings: Any) -> list[str]:
    """With a key: links to the findings' traces, the experiments and their dataset in Braintrust."""
    if settings is None:
        return []
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.handoff.links import add_braintrust_links

    return add_braintrust_links(builder, backend_from_settings(settings), builder.project["name"], inputs.comparison)


def _write_plots(builder: HandoffBuilder, inputs: _Inputs, out: Path, store: Any,
                 settings: Any) -> tuple[list[Path], list[str]]:
    """forest.svg and, when both experiments can be read (`_report_backend`), the HTML report."""
    comp = inputs.comparison
    if comp is None:
        return [], []
    from bt_flywheel.core.fileio import atomic_write_text
    from bt_flywheel.report.html import write_forest_svg

    notes: list[str] = []
    written: list[Path] = []
    report_text = None
    source, skip = _report_backend(store, settings, comp)
    if skip is None:
        from bt_flywheel.report.data import build_report_inputs
        from bt_flywheel.report.html import render_report

        book = inputs.ledger
        report = build_report_inputs(source, comp.baseline, comp.candidate, comparison=comp,
                                     ledger=book.to_dict() if book is not None else None)
        report_text = render_report(report.pop("comparison"), **report)
    else:
        notes.append(f"no HTML report: {skip}")
    written.append(write_forest_svg(comp, out / FOREST_FILENAME))
    builder.add_artifact(written[-1], "forest_plot", base_dir=out)
    if report_text is not None:
        written.append(atomic_write_text(out / REPORT_FILENAME, report_text))
        builder.add_artifact(written[-1], "report", base_dir=out)
    return written, notes


def build_from_draft(draft: str | os.PathLike[str] | Mapping[str, Any], *,
                     orient: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                     comparison: str | os.PathLike[str] | Mapping[str, Any] | ComparisonDoc | None = None,
                     ledger: str | os.PathLike[str] | None = None,
                     store: str | os.PathLike[str] | None = None,
                     out_dir: str | os.PathLike[str] = ".",
                     settings: Any = None,
                     environ: Mapping[str, str] | None = None,
                     now: datetime | str | None = None,
                     strict: bool = False) -> BuildResult:
    """Build, validate and write the handoff (and forest plot + report) from a draft.

    `draft` is a file path (YAML/JSON) or an already-loaded mapping (validated either way).
    `settings` (config.Settings) supplies the project when neither draft nor orient names one,
    and the saved session and ledger when ORIENT.json and the ledger are not given. Figures in
    the draft's text that contradict the comparison, and repeated validation looks, are
    warnings (in the result and the handoff's `x-build-warnings`); `strict` makes them errors.
    Raises HandoffInvalid (every violation) or InputError (one line naming the file) before
    anything is written.
    """
    from bt_flywheel.handoff.checks import look_warnings, number_warnings

    inputs = _load_inputs(draft, orient, comparison, ledger, settings)
    out = Path(out_dir)
    finished = format_time(now)
    builder = _start_builder(inputs, settings, os.environ if environ is None else environ, finished)
    _add_judgement(builder, inputs.doc)
    copies = _add_numbers(builder, inputs, out)
    link_notes = _add_links(builder, inputs, settings)
    warnings = number_warnings(inputs.doc, inputs.comparison) + look_warnings(
        {"loops": {"ledger": inputs.ledger.handoff_entries()}} if inputs.ledger is not None else {},
        inputs.ledger.doc if inputs.ledger is not None else None)
    if warnings and strict:
        raise HandoffInvalid(inputs.source, [Violation("$.summary", w) for w in warnings],
                             "the draft's numbers or the ledger's looks do not hold up (--strict)")
    if warnings:
        builder.extend("x-build-warnings", warnings)
    violations = validate_handoff(builder.assemble(finished_at=finished))
    if violations:  # every problem at once, before anything is written
        raise HandoffInvalid(inputs.source, violations, "the handoff built from this draft is invalid")
    written = [copy_artifact(src, dst) for src, dst in copies]
    plots, notes = _write_plots(builder, inputs, out, store, settings)
    handoff = builder.build(finished_at=finished)
    paths = write_handoff(handoff, out)
    return BuildResult(handoff=handoff, paths=paths, written=written + plots, notes=link_notes + notes,
                       warnings=warnings)


# ---------------------------------------------------------------------------- artifacts under ignored paths

def is_ignored(path: Path) -> bool:
    """True when CI would not have this file: under a `.flywheel` folder, or ignored by git."""
    resolved = path.resolve()
    if ".flywheel" in resolved.parts:
        return True
    import subprocess

    try:
        proc = subprocess.run(["git", "-C", str(resolved.parent), "check-ignore", "-q", str(resolved)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def plan_copies(files: list[Path], out: Path) -> dict[Path, Path]:
    """source -> destination next to the handoff, for each file under an ignored path. Refuses
    (InputError) when two files would land on one name, or the destination is ignored too."""
    plan: dict[Path, Path] = {}
    for file in files:
        if not is_ignored(file):
            continue
        target = out / file.name
        if target.resolve() in {t.resolve() for t in plan.values()}:
            raise InputError(f"{file}: two artifacts under ignored paths are both named {file.name!r}",
                             hint="rename one, or list a copy outside .flywheel/")
        if is_ignored(target):
            raise InputError(f"{file}: under an ignored path, and so is --out {out}: CI could not read the artifact",
                             hint="write the handoff outside .flywheel/ (e.g. --out .)")
        if target.exists() and target.resolve() != file.resolve() and target.read_bytes() != file.read_bytes():
            raise InputError(f"{file}: is under an ignored path and {target} already exists with other content",
                             hint="move or remove it, then build again")
        plan[file.resolve()] = target
    return plan


def copy_artifact(source: Path, target: Path) -> Path:
    from bt_flywheel.core.fileio import atomic_write_bytes

    return atomic_write_bytes(target, source.read_bytes())
