"""`flywheel judge export|fill|apply|agreement`: the lazy judge of candidate outputs (seed 001)."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import (
    add_output_args,
    add_settings_args,
    report_apply,
    settings_from_args,
    wants_json,
)
from bt_flywheel.core.output import print_json, print_line, print_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("judge", help="lazy judge of an experiment's outputs: export, fill, apply, agreement",
                            description="Score candidate outputs on a multi-dimension, versioned rubric: export "
                                        "the pending (row, trial) outputs of an experiment, let the flywheel-judge "
                                        "subagent (or `fill` with a model) score every dimension with a rationale, "
                                        "apply the scores into the experiment (compare, report and leaderboard "
                                        "read them like any score), and check where the automatic scorer and "
                                        "the judge disagree.")
    actions = parser.add_subparsers(dest="judge_command", metavar="ACTION")
    actions.required = True
    export = actions.add_parser("export", help="write an experiment's unjudged (row, trial) outputs + the rubric")
    export.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    export.add_argument("--rubric", required=True, help="judge rubric (version, instructions, dimensions)")
    export.add_argument("--out", required=True, metavar="FILE", help="judge file to write (e.g. judge.json)")
    export.add_argument("--all", action="store_true", help="export judged rows too (to rejudge them)")
    add_output_args(export, json_help="print the result as JSON")
    add_settings_args(export, backend=False)
    export.set_defaults(handler=run_export)

    fill = actions.add_parser("fill", help="fill a judge file with an OpenAI-compatible model (the llm judge)")
    fill.add_argument("file", metavar="FILE", help="the judge file from `judge export`")
    fill.add_argument("--model", default="gpt-4o-mini", help="judge model (default gpt-4o-mini)")
    fill.add_argument("--max-retries", type=int, default=4, help="retries per call (default 4)")
    add_output_args(fill, json_help="print the result as JSON")
    add_settings_args(fill, backend=False)
    fill.set_defaults(handler=run_fill)

    apply = actions.add_parser("apply", help="validate a filled judge file and write its scores into the experiment")
    apply.add_argument("file", metavar="FILE", help="the filled judge file")
    apply.add_argument("--skip-bad", action="store_true", help="apply the good rows even when some are bad")
    add_output_args(apply, json_help="print the result as JSON")
    add_settings_args(apply)
    apply.set_defaults(handler=run_apply)

    agree = actions.add_parser("agreement", help="Cohen's kappa and mean |delta| between automatic scores and the judge")
    agree.add_argument("experiment", metavar="EXPERIMENT", help="experiment name or id")
    agree.add_argument("--pair", action="append", default=[], metavar="AUTO=JUDGED", required=True,
                       help="an automatic score and the judged dimension it should agree with; repeatable")
    agree.add_argument("--delta", type=float, default=0.25,
                       help="list rows whose scores differ by more than this, on [0, 1] (default 0.25)")
    agree.add_argument("--levels", type=int, help="categories for kappa (default: the judged dimension's scale)")
    add_output_args(agree, json_help="print the report as JSON")
    add_settings_args(agree, backend=False)
    agree.set_defaults(handler=run_agreement)


def run_export(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.store import Store
    from bt_flywheel.label.judge import export_judging, load_judge_rubric

    settings = settings_from_args(args)
    rubric = load_judge_rubric(args.rubric)
    with Store(settings.store, read_only=True) as store:
        info = export_judging(store, args.experiment, rubric, args.out, project=settings.project,
                              include_judged=args.all)
    if wants_json(args):
        print_json(info)
    else:
        print_line(f"exported {info['exported']} (row, trial) outputs of {info['experiment']} (rubric "
                   f"{info['rubric_version']}) to {info['out']}; {info['already_judged']} already judged")
    return 0


def run_fill(args: argparse.Namespace) -> int:
    from bt_flywheel.label.judge import fill_with_llm
    from bt_flywheel.label.llm import DEFAULT_BASE_URL, ChatClient

    settings = settings_from_args(args)
    client = ChatClient(base_url=settings.openai_base_url or DEFAULT_BASE_URL, api_key=settings.openai_api_key,
                        max_retries=args.max_retries)
    info = fill_with_llm(args.file, client, args.model)
    if wants_json(args):
        print_json(info)
    else:
        print_line(f"filled {info['filled']} row(s) with {args.model}; {info['failed']} left unfilled")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.store import Store
    from bt_flywheel.label.judge import apply_judging, remote_sender_for

    settings = settings_from_args(args)
    with Store(settings.store) as store:
        result = apply_judging(args.file, store, project=settings.project, skip_bad=args.skip_bad,
                               remote=remote_sender_for(settings, args.file, store))
    sent = f"; sent to Braintrust: {result.written['remote']['sent']}" if "remote" in result.written else ""
    return report_apply(args, result, args.file, lambda: (
        f"applied {len(result.applied)} (row, trial) judgements; {len(result.left)} still pending{sent}"))


def run_agreement(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.store import Store
    from bt_flywheel.core.errors import UsageError
    from bt_flywheel.verify.agreement import agreement_from_store

    pairs = []
    for text in args.pair:
        auto, sep, judged = text.partition("=")
        if not sep or not auto.strip() or not judged.strip():
            raise UsageError(f"--pair {text!r}: expected AUTO_SCORE=JUDGED_DIMENSION")
        pairs.append((auto.strip(), judged.strip()))
    settings = settings_from_args(args)
    with Store(settings.store, read_only=True) as store:
        report = agreement_from_store(store, args.experiment, pairs, delta=args.delta, levels=args.levels,
                                      project=settings.project)
    if wants_json(args):
        print_json(report)
        return 0
    print_table([{"auto": p["auto"], "judge": p["judge"], "n": p["n"], "kappa": p["kappa"],
                  "mean |delta|": p["mean_abs_delta"], f"rows over {args.delta:g}": len(p["spot_check"])}
                 for p in report["pairs"]])
    for pair in report["pairs"]:
        if pair["spot_check"]:
            print_line(f"spot-check {pair['auto']} vs {pair['judge']}:")
            print_table([{k: s[k] for k in ("dataset_row_id", "trial", "auto", "judge", "delta")}
                         for s in pair["spot_check"]])
    return 0
