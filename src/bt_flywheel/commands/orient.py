"""`flywheel orient`: resolve mode, goal, project, backend, baseline and data window."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json
from bt_flywheel.core.output import print_json, print_line


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("orient", help="resolve mode, goal, project, backend, baseline, data window",
                            description="Resolve the session context (DESIGN.md §6) and print it.")
    parser.add_argument("goal", nargs="?", help="what to improve (default: FLYWHEEL_GOAL, else 'general health check')")
    parser.add_argument("--mode", choices=["autonomous", "interactive"], help="force a mode")
    parser.add_argument("--window-days", type=int, help="discovery window in days (default 7)")
    add_output_args(parser, json_help="print JSON (default is a short summary)")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the JSON to FILE (for `flywheel handoff build --orient FILE`)")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.session.orient import orient

    settings = settings_from_args(args, window_days=args.window_days)
    info = orient(settings, goal=args.goal, mode_flag=args.mode)
    if args.out:
        from bt_flywheel.core.fileio import atomic_write_json

        atomic_write_json(args.out, info)
    if wants_json(args):
        print_json(info)
    else:
        window = info["data_window"]
        print_line(f"mode: {info['mode']} ({info['mode_reason']})")
        print_line(f"goal: {info['goal']}")
        print_line(f"project: {info['project'] or '(not set)'}")
        print_line(f"backend: {info['backend']}")
        print_line(f"baseline: {info['baseline_experiment'] or '(none)'}")
        print_line(f"window: {window['start']} .. {window['end']} ({window['days']} days)")
    return 0
