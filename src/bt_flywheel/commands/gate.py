"""`flywheel gate FILE`: turn a handoff into an exit code for CI."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, wants_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gate", help="exit 0/1 by policy on a handoff (2 when invalid or missing)",
        description="Read a handoff and apply the policy. Default: fail when blocking is true or the "
                    "outcome is needs_work, blocked or no_convergence; any confidence passes. Prints one "
                    "line saying why. Exit 0 pass, 1 fail by policy, 2 invalid or missing handoff, 70 an "
                    "internal error (a bug in flywheel, not a verdict on the handoff).")
    parser.add_argument("file", help="the handoff JSON file (bt-flywheel-summary.json)")
    parser.add_argument("--fail-on", metavar="OUTCOMES", default=None,
                        help="comma-separated outcomes that fail the gate "
                             "(default needs_work,blocked,no_convergence; '' for none)")
    parser.add_argument("--min-confidence", choices=["low", "medium", "high"], default=None,
                        help="fail when the handoff's confidence is below this (default low: any passes)")
    parser.add_argument("--env-file", help="also treat secrets in this .env file as forbidden values")
    add_output_args(parser, json_help="print {passed, exit_code, reason} instead of the line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.core.output import print_json, print_line
    from bt_flywheel.handoff.contract import load_handoff
    from bt_flywheel.handoff.gate import evaluate_gate, parse_fail_on

    from .handoff import register_known_secrets

    fail_on = parse_fail_on(args.fail_on)  # usage errors before reading the file
    register_known_secrets(args.env_file)
    result = evaluate_gate(load_handoff(args.file), fail_on=fail_on, min_confidence=args.min_confidence)
    if wants_json(args):
        print_json({"file": args.file, "passed": result.exit_code == 0, "exit_code": result.exit_code,
                    "reason": result.reason})
    else:
        print_line(f"gate: {result.reason}")
    return result.exit_code
