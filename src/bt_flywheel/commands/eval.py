"""`flywheel eval FILE_OR_CONFIG`: run a Braintrust Eval file (or an eval config) and store the
experiment locally (or send it to Braintrust with --remote)."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="run a Braintrust Eval file or eval config and store the experiment",
        description="Run a standard Braintrust Eval file (Eval('project', data=..., task=..., scores=[...])) "
        "with the braintrust SDK, or an eval config (schemas/eval-config.schema.json). Locally nothing "
        "is sent and no key is needed; the experiment lands in the local store in Braintrust's span "
        "shape. Exits 1 if any task or scorer raised (the rows that succeeded are still stored).")
    parser.add_argument("source", metavar="FILE_OR_CONFIG", help="an Eval .py file, or an eval config .yaml/.json")
    parser.add_argument("--split", choices=["train", "validation"], help="keep rows whose metadata.split is this")
    parser.add_argument("--first", type=int, metavar="N", help="keep the first N rows (smoke mode)")
    parser.add_argument("--trials", type=int, metavar="K", help="trials per row (overrides trial_count)")
    parser.add_argument("--max-concurrency", type=int, metavar="C",
                        help="concurrent (row, trial) tasks (default: the Eval's, else 16)")
    parser.add_argument("--name", help="experiment name (a suffix is added if it exists)")
    parser.add_argument("--eval", dest="eval_name", metavar="EVAL", help="run only this Eval of a file with several")
    parser.add_argument("--candidate-file", action="append", default=[], metavar="FILE",
                        help="a file that is part of the candidate though git does not show it changed; repeatable "
                             "(the candidate is otherwise the tracked files changed against HEAD)")
    add_output_args(parser, json_help="print the result as JSON")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.core.output import print_json, print_table, status
    from bt_flywheel.evals.runner import run_evals

    settings = settings_from_args(args)
    remote = getattr(args, "backend", None) == "remote"
    results = run_evals(
        args.source, split=args.split, first=args.first, trials=args.trials,
        max_concurrency=args.max_concurrency, name=args.name, project=args.project,
        store=settings.store, remote=remote, settings=settings, eval_name=args.eval_name, silent=args.quiet,
        candidate_files=args.candidate_file,
    )
    from bt_flywheel.verify.looks import record_eval_looks

    for message in record_eval_looks(results, settings, split=args.split):
        status(message)
    if wants_json(args):
        print_json(results[0].as_dict() if len(results) == 1 else [r.as_dict() for r in results])
    else:
        for result in results:
            errors = len(result.errors)
            print(f"experiment: {result.experiment_name} ({result.experiment_id})")
            print(f"project: {result.project}  backend: {result.backend}  store: {result.store}")
            if result.experiment_url:
                print(f"url: {result.experiment_url}")
            print(f"rows: {result.rows}  trials: {result.trials}  runs: {result.roots}  errors: {errors}  "
                  f"time: {result.duration_s:.1f}s")
            print_table([{"score": k, "mean": None if v is None else round(v, 4), "n": result.score_counts[k]}
                         for k, v in result.scores.items()], ["score", "mean", "n"])
    code = 0
    for result in results:
        for error in result.errors[:5]:
            status(f"error: {error.describe()}")
        if len(result.errors) > 5:
            status(f"error: ... and {len(result.errors) - 5} more (see --json)")
        if result.errors:
            code = 1
    return code
