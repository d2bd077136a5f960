"""`flywheel report`: one self-contained HTML page for a baseline/candidate comparison."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="write a self-contained HTML report (verdict, forest plot, slices, rows, dataset, ledger)",
        description="Compare BASELINE and CANDIDATE as `flywheel compare` does and write one HTML file with "
                    "no scripts and no network: the verdict, a forest plot of each score's paired effect, "
                    "per-slice effects (BH-corrected), score distributions, per-row regressions and "
                    "improvements, the dataset's split/label balance and the loop ledger. Give more "
                    "experiments after CANDIDATE to add a leaderboard section over all of them. Reads the local "
                    "store, or Braintrust with --remote (automatic when BRAINTRUST_API_KEY is set); there, "
                    "each row links to its trace on the experiment's page.")
    parser.add_argument("baseline", metavar="BASELINE", help="baseline experiment name or id")
    parser.add_argument("candidate", metavar="CANDIDATE", help="candidate experiment name or id")
    parser.add_argument("more", nargs="*", metavar="EXPERIMENT",
                        help="further experiments: adds a leaderboard section over all experiments given")
    parser.add_argument("--target", required=True, help="the score the change should improve")
    parser.add_argument("--guard", action="append", default=[], metavar="SCORE",
                        help="a score that must not regress (non-inferiority); repeatable")
    parser.add_argument("--slice", dest="slice_key", metavar="KEY",
                        help="metadata key to break effects down by, e.g. metadata.facet (BH-corrected)")
    parser.add_argument("--min-effect", type=float, help="minimum effect δ for `improved` (default 0)")
    parser.add_argument("--margin", type=float, help="non-inferiority / equivalence margin (default 0.02)")
    parser.add_argument("--alpha", type=float, help="significance level (default 0.05)")
    parser.add_argument("--threshold", type=float,
                        help="a row regressed/improved if its score moved by more than this (default 0.25)")
    parser.add_argument("--ledger", metavar="FILE", help="the loop ledger JSON file to include")
    parser.add_argument("--dataset-rows", metavar="FILE",
                        help="dataset rows (JSONL) for the split/label balance (default: the dataset the baseline "
                             "experiment recorded, read from the backend)")
    parser.add_argument("--by", default="experiment",
                        help="leaderboard cell keys when several experiments are given (default: experiment)")
    parser.add_argument("--out", required=True, metavar="FILE.html", help="where to write the report")
    add_output_args(parser, json_help="print {report, verdict} instead of nothing")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.core.output import print_json, status
    from bt_flywheel.report.data import build_report_inputs
    from bt_flywheel.report.html import write_report

    settings = settings_from_args(args)
    inputs = build_report_inputs(
        backend_from_settings(settings), args.baseline, args.candidate, project=settings.project,
        more=args.more, target=args.target, guards=args.guard, slice_key=args.slice_key,
        min_effect=args.min_effect, margin=args.margin, alpha=args.alpha, threshold=args.threshold,
        ledger_path=args.ledger, dataset_rows_path=args.dataset_rows,
        leaderboard_by=[k.strip() for k in args.by.split(",") if k.strip()])
    comparison = inputs.pop("comparison")
    path = write_report(comparison, args.out, **inputs)
    status(f"wrote {path}")
    if wants_json(args):
        doc = comparison.to_dict() if hasattr(comparison, "to_dict") else comparison
        print_json({"report": str(path), "decision": doc.get("decision"), "keep": doc.get("keep")})
    return 0
