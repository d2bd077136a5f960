"""`flywheel route`: the routing table, the next-loop decision, and the loop ledger.

  flywheel route table [--json]
  flywheel route decide [--ledger FILE] [--comparison compare.json] [--condition NAME ...] ...
  flywheel route status [--ledger FILE]
  flywheel route --comparison compare.json    (no subcommand: same as `decide`)
"""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, wants_json
from bt_flywheel.core.output import print_json, print_table

_DEFAULT_LEDGER = ".flywheel/ledger.json"


def _add_decide_args(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    def arg(*names: str, **kw: object) -> None:
        if not defaults:  # `route decide` keeps the values the bare `route` parser set as defaults
            kw["default"] = argparse.SUPPRESS
        parser.add_argument(*names, **kw)  # type: ignore[arg-type]

    arg("--ledger", default=None, metavar="FILE",
        help=f"the loop ledger (created if missing; default: the session's, FLYWHEEL_LEDGER, else {_DEFAULT_LEDGER})")
    arg("--comparison", metavar="FILE", help="the JSON written by `flywheel compare --json` / --out")
    arg("--condition", action="append", default=[], metavar="NAME",
        help="a condition that holds (see `flywheel route table`); repeatable")
    arg("--candidate", metavar="ID", help="candidate id/label (default: the comparison's candidate)")
    arg("--change", metavar="TEXT", help="what this loop changed, in one line")
    arg("--change-artifact", choices=["agent", "dataset", "measurement", "instrumentation", "none"],
        default="agent", help="the artifact this loop changed (default agent)")
    arg("--note", metavar="TEXT", help="a note stored with the loop")
    arg("--open-finding", action="append", default=[], metavar="TEXT", dest="open_finding",
        help="a finding this loop leaves open; listed in open_findings and next_steps when the run stops; repeatable")
    arg("--max-loops", type=int, metavar="N", help="loops without a kept improvement before no_convergence (default 3)")
    arg("--no-record", action="store_true", help="decide without writing the ledger")
    arg("--json", dest="output", action="store_const", const="json", help="print JSON (what decide prints anyway)")
    arg("--quiet", "-q", "--silent", dest="quiet", action="store_true", help="no progress lines on stderr")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "route", help="routing table, next-loop decision and the loop ledger",
        description="Route the next loop from the routing table (priority order: measurement and "
        "instrumentation before dataset before agent) and record it in the loop ledger, which stops "
        "the run with no_convergence after 3 loops without a kept improvement.")
    _add_decide_args(parser, defaults=True)
    parser.set_defaults(handler=run_decide)
    actions = parser.add_subparsers(dest="route_command", metavar="ACTION")
    table = actions.add_parser("table", help="print the routing table in priority order")
    add_output_args(table, json_help="print JSON")
    table.set_defaults(handler=run_table)
    decide = actions.add_parser("decide", help="decide the next loop and record it in the ledger (prints JSON)")
    _add_decide_args(decide, defaults=False)
    decide.set_defaults(handler=run_decide)
    status = actions.add_parser("status", help="show the ledger: loops, validation looks, stop state")
    status.add_argument("--ledger", default=None, metavar="FILE",
                        help=f"the loop ledger (default: the session's, FLYWHEEL_LEDGER, else {_DEFAULT_LEDGER})")
    add_output_args(status, json_help="print the whole ledger as JSON")
    status.set_defaults(handler=run_status)


def run_table(args: argparse.Namespace) -> int:
    from bt_flywheel.verify.route import routing_table

    rows = routing_table()
    if wants_json(args):
        print_json(rows)
    else:
        print_table([{"priority": r["priority"], "condition": r["condition"], "when": r["when"],
                      "route": r["route"], "next step": r["next_step"]} for r in rows])
    return 0


def _ledger_path(args: argparse.Namespace) -> str:
    if args.ledger:
        return args.ledger
    from bt_flywheel.core.config import load_settings

    return load_settings().ledger or _DEFAULT_LEDGER


def run_decide(args: argparse.Namespace) -> int:
    from bt_flywheel.verify.comparison_model import load_comparison
    from bt_flywheel.verify.ledger import Ledger
    from bt_flywheel.verify.route import decide

    comparison = load_comparison(args.comparison) if args.comparison else None
    ledger = None
    if not args.no_record:
        ledger = Ledger.open(_ledger_path(args), max_loops=args.max_loops,
                             target=comparison.target if comparison else None)
    decision = decide(args.condition, comparison=comparison, ledger=ledger, candidate=args.candidate,
                      change=args.change, change_artifact=args.change_artifact, note=args.note,
                      findings=args.open_finding)
    print_json(decision.to_dict())
    return 0


def run_status(args: argparse.Namespace) -> int:
    from bt_flywheel.verify.ledger import Ledger

    ledger = Ledger.open(_ledger_path(args), create=False)
    doc = ledger.to_dict()
    if wants_json(args):
        print_json(doc)
        return 0
    s = doc["summary"]
    print(f"ledger: {ledger.path}  target: {doc.get('target') or '-'}  max loops: {doc['max_loops']}")
    print(f"loops: {s['loops']}  validation looks: {s['validation_looks']}  kept: {s['kept']}  "
          f"without improvement: {s['consecutive_without_improvement']}  stopped: {s['stopped'] or '-'}")
    print_table([{"loop": e["loop"], "candidate": e["candidate"], "route": e["route"], "verdict": e["verdict"],
                  "kept": e["kept"], "decision": (e.get("decision") or {}).get("action"),
                  "next": (e.get("decision") or {}).get("route") or (e.get("decision") or {}).get("outcome")}
                 for e in doc["loops"]])
    return 0
