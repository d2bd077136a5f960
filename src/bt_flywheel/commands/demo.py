"""`flywheel demo`: the whole loop, autonomously, on examples/support-bot."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_out_dir, add_output_args, wants_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="run the whole flywheel autonomously on the shipped support-bot example",
        description="Generate ~2,000 production spans for examples/support-bot, then run Orient, Discover, "
                    "Diagnose, Improve, Verify and Decide on the local backend in a fresh store under --out, "
                    "and write bt-flywheel-summary.json + bt-flywheel-narrative.md there. Never prompts; "
                    "no network; deterministic by --seed.")
    parser.add_argument("--seed", type=int, default=7, help="seed for traces, curation and sampling (default 7)")
    add_out_dir(parser, "output directory (default ./flywheel-demo)", default="flywheel-demo")
    parser.add_argument("--variant", choices=["improved", "noop", "healthy"], default="improved",
                        help="improved: fix the top failure pattern (default); noop: edits that change nothing, "
                             "ends no_convergence after 3 loops; healthy: traces without planted failures")
    parser.add_argument("--trials", type=int, default=3, help="trials per validation case (default 3, min 3)")
    parser.add_argument("--spans", type=int, default=2000, help="about how many production spans (default 2000)")
    add_output_args(parser, json_help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.core.output import print_json
    from bt_flywheel.demo.run import run_demo

    result = run_demo(out_dir=args.out_dir, seed=args.seed, variant=args.variant, trials=args.trials,
                      spans=args.spans, say=(lambda _msg: None) if args.quiet else None)
    if wants_json(args):
        print_json({"outcome": result.outcome, "verdict": result.verdict_line, "loops": result.loops,
                    "summary": str(result.summary_path), "narrative": str(result.narrative_path),
                    "seconds": round(result.seconds, 2)})
    else:
        print(f"handoff: {result.summary_path}")
        print(f"narrative: {result.narrative_path}")
        print(result.verdict_line)
    return 0
