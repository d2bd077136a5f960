"""`flywheel label export|apply`: the lazy judge (agent labeler) around a dataset_rows.jsonl."""

from __future__ import annotations

import argparse
import sys

from bt_flywheel.commands._options import add_output_args, report_apply, wants_json
from bt_flywheel.core.output import print_json, print_line


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("label", help="lazy-judge labeling: export pending rows, apply filled labels",
                            description="The agent labeler (DESIGN.md §7): export rows still without a label "
                                        "plus the rubric; a coding agent fills the labels; apply validates "
                                        "them (schemas/labels.schema.json) and merges them.")
    actions = parser.add_subparsers(dest="label_command", metavar="ACTION")
    actions.required = True
    export = actions.add_parser("export", help="write pending rows + rubric + rubric version to a JSON file")
    export.add_argument("--dataset-rows", required=True, help="dataset_rows.jsonl from flywheel curate")
    export.add_argument("--rubric", required=True, help="versioned rubric file")
    export.add_argument("--out", required=True, metavar="FILE", help="export file to write (e.g. export.json)")
    export.add_argument("--all", action="store_true", help="export labeled rows too (to review them)")
    add_output_args(export, json_help="print the result as JSON")
    export.set_defaults(handler=run_export)
    apply = actions.add_parser("apply", help="validate a filled export (or labels file) and merge it")
    apply.add_argument("labels", help="the filled export.json, or a kind=labels file")
    apply.add_argument("--dataset-rows", required=True, help="dataset_rows.jsonl to merge into")
    apply.add_argument("--rubric", help="rubric file (required for a kind=labels file)")
    apply.add_argument("--skip-bad", action="store_true", help="apply the good rows even when some are bad")
    add_output_args(apply, json_help="print the result as JSON")
    apply.set_defaults(handler=run_apply)


def run_export(args: argparse.Namespace) -> int:
    from bt_flywheel.label.agent import export_pending
    from bt_flywheel.label.base import load_rubric

    info = export_pending(args.dataset_rows, load_rubric(args.rubric), args.out, include_labeled=args.all)
    if wants_json(args):
        print_json(info)
    else:
        print_line(f"exported {info['exported']} pending rows (rubric {info['rubric_version']}) to {info['out']}; "
              f"{info['already_labeled']} already labeled")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from bt_flywheel.label.agent import apply_labels_file
    from bt_flywheel.label.base import load_rubric

    rubric = load_rubric(args.rubric) if args.rubric else None
    result = apply_labels_file(args.labels, args.dataset_rows, rubric=rubric, skip_bad=args.skip_bad)
    code = report_apply(args, result, args.labels, lambda: (
        f"applied {result.applied}, relabeled {result.relabeled}, unchanged {result.unchanged}; "
        f"{len(result.left)} row(s) still without a label"))
    sys.stdout.flush()
    return code
