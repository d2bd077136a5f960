"""`flywheel leaderboard`: mean ± CI per (model, prompt) cell, ranks tied where tests cannot separate."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "leaderboard", help="rank (model, prompt) cells: mean ± CI, ties where Holm-corrected tests cannot separate",
        description="Group the experiments' root rows into cells by metadata keys, average trials per "
                    "dataset row, and rank cells; cells that no Holm-corrected paired comparison separates "
                    "share a rank. Reads the local store, or Braintrust with --remote (automatic when "
                    "BRAINTRUST_API_KEY is set).")
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT", help="experiment names or ids")
    parser.add_argument("--by", default="experiment",
                        help="comma-separated keys that define a cell, e.g. metadata.model,metadata.prompt_version "
                             "(looked up on each root row, then the experiment's metadata and params; "
                             "default: experiment)")
    parser.add_argument("--score", help="the score to rank by (required when the experiments carry several)")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate for the Holm step (0.05)")
    add_output_args(parser, json_help="print the leaderboard as JSON")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.core.errors import UsageError
    from bt_flywheel.core.output import print_json, print_table
    from bt_flywheel.report.leaderboard import leaderboard_from_store

    by = [k.strip() for k in args.by.split(",") if k.strip()]
    if not by:
        raise UsageError("--by: give at least one key, e.g. metadata.model")
    settings = settings_from_args(args)
    board = leaderboard_from_store(backend_from_settings(settings), args.experiments, score=args.score, by=by,
                                   alpha=args.alpha, project=settings.project)
    if wants_json(args):
        print_json(board.to_dict())
    else:
        print_table(board.table_rows(), ["rank", "cell", "n", "mean", "ci", "tied_with"])
    return 0
