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
    parser.add_argument("--session", metavar="FILE",
                        help="where to save the session later commands inherit (default .flywheel/session.json, "
                             "env FLYWHEEL_SESSION)")
    parser.add_argument("--no-session", action="store_true", help="print only; save no session")
    parser.add_argument("--new-session", action="store_true",
                        help="start over: ignore the saved session (default: continue it, keeping its start "
                             "time, and its goal and mode unless given again)")
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.core.session_file import session_path
    from bt_flywheel.session.orient import orient, save_session

    settings = settings_from_args(args, window_days=args.window_days, session=not args.new_session)
    info = orient(settings, goal=args.goal, mode_flag=args.mode)
    if not args.no_session:
        path = args.session or session_path()
        info["session"] = str(save_session(info, path, store=settings.store, ledger=settings.ledger))
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
        print_line(f"window: {window['start']} .. {window['end']} ({window['days']} days, {window['source']})")
        if info.get("session"):
            print_line(f"session: {info['session']} (later commands inherit project, store, window, mode, goal)")
        for hint in info["hints"]:
            print_line(f"hint: {hint}")
    return 0
