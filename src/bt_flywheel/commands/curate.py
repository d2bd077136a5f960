"""`flywheel curate`: select candidates, label, split, write artifacts, upsert by stable id."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bt_flywheel.commands._options import (
    add_out_dir,
    add_output_args,
    add_settings_args,
    settings_from_args,
    wants_json,
)
from bt_flywheel.core.output import format_table, print_json, print_line, status
from bt_flywheel.label.registry import REGISTRY, labeler_names


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curate", help="build a labeled, split dataset from production traces",
        description="Select candidate traces (score-balanced or per-facet weak buckets), label them "
                    f"({' | '.join(labeler_names())}), split train/validation by stable id, write "
                    "dataset_rows.jsonl + summary.json (+ parsed_calls.jsonl) to --out, and upsert to "
                    "--dataset by stable id. A rerun changes nothing. DESIGN.md §4, §7.")
    sel = parser.add_argument_group("selection")
    sel.add_argument("--strategy", choices=["score-balanced", "facet"],
                     help="score-balanced (needs --score) or facet (needs --facets); inferred when omitted")
    sel.add_argument("--score", help="score name for score-balanced, e.g. resolution")
    sel.add_argument("--lo", type=float, default=0.0, help="failing bucket: score <= LO (default 0)")
    sel.add_argument("--hi", type=float, default=1.0, help="passing bucket: score >= HI (default 1)")
    sel.add_argument("--facets", help="facet_definitions.yaml (schemas/facet-definitions.schema.json)")
    sel.add_argument("--per-bucket", type=int, default=100, help="rows per bucket (default 100)")
    sel.add_argument("--window-days", type=int, help="only traces created in the last D days (default: settings, 7)")
    sel.add_argument("--where", help="extra Braintrust SQL condition, e.g. \"metadata.channel = 'email'\"")
    sel.add_argument("--trace-id", action="append", default=[], metavar="ID",
                     help="also include this trace (root_span_id); repeatable")
    sel.add_argument("--seed", default="flywheel-v1", help="sampling and split seed (default flywheel-v1)")
    sel.add_argument("--validation-fraction", type=float, default=0.2, help="validation share per stratum (default 0.2)")
    sel.add_argument("--from-rows", help="skip selection: split and upsert this dataset_rows.jsonl (after label apply)")
    lab = parser.add_argument_group("labeling")
    lab.add_argument("--labeler", choices=labeler_names(),
                     help="where ground truth comes from: " + "; ".join(f"{n}: {s.summary}" for n, s in REGISTRY.items()))
    lab.add_argument("--rubric", help="versioned rubric file (llm, agent; optional for file)")
    lab.add_argument("--model", help="llm: model name (default gpt-4o-mini)")
    lab.add_argument("--fallback-model", help="llm: model to try when the first fails")
    lab.add_argument("--concurrency", type=int, default=8, help="llm: parallel requests (default 8)")
    lab.add_argument("--max-retries", type=int, default=4, help="llm: retries per request (default 4)")
    lab.add_argument("--labels", help="file: CSV/JSONL of labels keyed by id or root_span_id")
    lab.add_argument("--label-field", default="label", help="file: column holding the class label (default label)")
    lab.add_argument("--label-score", help="score: the score to threshold (default --score)")
    lab.add_argument("--threshold", type=float, default=0.5, help="score: pass when score >= T (default 0.5)")
    out = parser.add_argument_group("output")
    add_out_dir(out, "directory for dataset_rows.jsonl, summary.json, ...", required=True)
    out.add_argument("--dataset", help="upsert labeled rows into this dataset (by stable id)")
    out.add_argument("--dataset-project", help="project of the dataset (default --project)")
    out.add_argument("--dry-run", action="store_true", help="print the plan (insert/update/unchanged), write no dataset")
    out.add_argument("--relabel", action="store_true",
                     help="let this labeler replace stored labels from a stronger one (agent/file > llm > score); "
                          "without it those labels are kept and the plan says so")
    out.add_argument("--yes", "-y", action="store_true", help="do not ask before writing the dataset")
    out.add_argument("--mode", choices=["autonomous", "interactive"], help="force a mode (DESIGN.md §6)")
    add_output_args(out, json_help="print the summary as JSON")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.core.errors import UsageError
    from bt_flywheel.core.mode import resolve_mode
    from bt_flywheel.core.output import Progress
    from bt_flywheel.curate.pipeline import CACHE_FILE, CurateOptions, curate
    from bt_flywheel.dataset.facets import load_facet_definitions
    from bt_flywheel.label.base import load_rubric
    from bt_flywheel.label.registry import make_labeler

    settings = settings_from_args(args, window_days=args.window_days)
    if not settings.project:
        raise UsageError("--project is required (or FLYWHEEL_PROJECT)")
    strategy = "rows" if args.from_rows else args.strategy or (
        "facet" if args.facets else "score-balanced" if args.score else None)
    if strategy is None:
        raise UsageError("say what to select: --score NAME (score-balanced), --facets FILE (facet), or --from-rows FILE")
    if strategy != "rows" and not args.labeler:
        raise UsageError(f"--labeler is required: {' | '.join(labeler_names())}")
    rubric = load_rubric(args.rubric) if args.rubric else None
    facet_context: dict[str, str] = {}
    if args.facets:
        facet_context = {f.name: "\n".join(x for x in (f.description, f.prompt) if x)
                         for f in load_facet_definitions(args.facets)}
    labeler: Any = None
    if args.labeler:
        labeler = make_labeler(
            args.labeler, rubric=rubric, model=args.model, fallback_model=args.fallback_model,
            concurrency=args.concurrency, cache_path=f"{args.out_dir}/{CACHE_FILE}", labels_path=args.labels,
            label_field=args.label_field, score=args.label_score or args.score, threshold=args.threshold,
            base_url=settings.openai_base_url, api_key=settings.openai_api_key, max_retries=args.max_retries,
            facet_context=facet_context)
    options = CurateOptions(
        project=settings.project, out_dir=args.out_dir, strategy=strategy, store_path=settings.store,
        score=args.score, lo=args.lo, hi=args.hi, facets_path=args.facets, per_bucket=args.per_bucket,
        window_days=settings.window_days, where=args.where, trace_ids=args.trace_id, seed=args.seed,
        validation_fraction=args.validation_fraction, from_rows=args.from_rows, dataset=args.dataset,
        dataset_project=args.dataset_project, dry_run=args.dry_run, relabel=args.relabel)
    mode = resolve_mode(flag=args.mode, goal=settings.goal, session=settings.session)
    confirm = None if (args.yes or mode.autonomous) else _ask
    progress = Progress("labeling") if args.labeler and REGISTRY[args.labeler].calls_model else None
    summary = curate(options, labeler=labeler, backend=backend_from_settings(settings), confirm=confirm,
                     progress=progress)
    if wants_json(args):
        print_json(summary)
    else:
        _print_summary(summary)
    labeling = summary["labeling"]
    if args.labeler and REGISTRY[args.labeler].calls_model and summary["unlabeled"] and not (labeling["labeled"] or labeling["reused"]
                                                               or labeling["cached"]):
        from bt_flywheel.core.errors import BackendError

        first = summary["unlabeled"][0]
        raise BackendError(f"--labeler {args.labeler}: no row could be labeled ({len(summary['unlabeled'])} failed after "
                           f"retries; row {first['id']}: {first.get('why')})",
                           hint="check OPENAI_BASE_URL and the provider; a rerun resumes from the label cache")
    dataset = summary.get("dataset") or {}
    return 1 if dataset.get("declined") else 0


def _ask(rows: list[dict[str, Any]], plan: Any) -> bool:
    sample = [{"id": r["id"][:8], "bucket": r["metadata"]["curation"]["bucket"],
               "facet": r["metadata"]["curation"].get("facet"), "label": r["metadata"]["label"]["value"],
               "expected": _clip(r.get("expected")), "split": r["metadata"]["split"], "input": _clip(r.get("input"))}
              for r in rows[:8]]
    status("A sample of the labels (interactive mode asks before writing the dataset):")
    status(format_table(sample))
    counts = plan.as_dict()
    changes = "".join(f"; {n} label(s) {change}" for change, n in counts["label_changes"].items())
    question = (f"Write to the dataset: insert {counts['insert']}, update {counts['update']}{changes}, "
                f"unchanged {counts['unchanged']}? [y/N] ")
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = input()
    except EOFError:
        answer = ""
    if answer.strip().lower() not in {"y", "yes"}:
        status("not written (declined; rerun with --yes once the labels look right)")
        return False
    return True


def _clip(value: Any, width: int = 40) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_summary(summary: dict[str, Any]) -> None:
    print_line(f"rows: {summary['rows']}  by split: {summary['by_split']}  by label: {summary['by_label']}")
    print_line(f"by bucket: {summary['by_bucket']}  by facet: {summary['by_facet']}  by labeler: {summary['by_labeler']}")
    for short in summary["shortfalls"]:
        facet = f"{short['facet']}/" if short.get("facet") else ""
        print_line(f"shortfall: {facet}{short['bucket']}: asked {short['asked']}, got {short['got']}")
    for trace_id in summary["missing_trace_ids"]:
        print_line(f"not found: trace {trace_id}")
    labeling = summary["labeling"]
    print_line(f"labeling: {labeling['labeled']} labeled, {labeling['reused']} reused, {labeling['cached']} cached, "
          f"{labeling['model_calls']} model calls, {len(summary['unlabeled'])} unlabeled")
    dataset = summary.get("dataset")
    if dataset:
        plan = dataset["plan"]
        verb = "would" if dataset["dry_run"] else ("declined:" if dataset.get("declined") else "did")
        print_line(f"dataset {dataset['name']!r} ({dataset['backend']}): {verb} insert {plan['insert']}, "
              f"update {plan['update']}, unchanged {plan['unchanged']}; pending (not uploaded) "
              f"{plan['not_uploaded_pending']}")
        for change, count in plan.get("label_changes", {}).items():
            print_line(f"  {count} label(s) change labeler: {change}")
        for labeler, count in plan.get("kept_stronger_labels", {}).items():
            print_line(f"  kept {count} stronger {labeler} label(s) (--relabel replaces them)")
    for name, path in summary["files"].items():
        print_line(f"{name}: {path}")
    if summary.get("next"):
        print_line(f"next: {summary['next']}")
