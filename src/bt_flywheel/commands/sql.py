"""`flywheel sql`: Braintrust SQL on the local store or, with --remote, on Braintrust (`POST /btql`)."""

from __future__ import annotations

import argparse
import os

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sql", help="run Braintrust SQL locally (DuckDB store) or remotely (--remote)",
        description="Run the same query text `bt sql` accepts. Local: project_logs()/experiment()/dataset() "
        "by id or name, dotted JSON paths, NOW() - INTERVAL n day, ORDER BY RANDOM(), aggregates, "
        "search('term') and MATCH (case-insensitive whole-token match over input/output/metadata). "
        "A project_logs() query needs a bound on created/_xact_id/_pagination_key or an id/root_span_id "
        "filter unless --force-ignore-linter. --json prints one object {data, schema, cursor} like bt sql --json.")
    parser.add_argument("query", metavar="QUERY", help="one Braintrust SQL SELECT statement")
    parser.add_argument("--force-ignore-linter", action="store_true",
                        help="run a query the linter would block (env BRAINTRUST_SQL_FORCE_IGNORE_LINTER=1)")
    add_output_args(parser, csv=True, jsonl=True)
    add_settings_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.base import backend_from_settings
    from bt_flywheel.core.output import print_csv, print_jsonl, print_table
    from bt_flywheel.core.redact import redact

    settings = settings_from_args(args)
    force = args.force_ignore_linter or os.environ.get("BRAINTRUST_SQL_FORCE_IGNORE_LINTER", "").lower() in ("1", "true")
    result = backend_from_settings(settings).query(args.query, project=settings.project, force_ignore_linter=force)
    if args.output == "json":
        import json
        import sys

        document = result.document()
        # like bt sql --json: one line, object keys sorted inside rows
        ordered = {"data": json.loads(json.dumps(document["data"], sort_keys=True, default=str)),
                   **{k: v for k, v in document.items() if k != "data"}}
        sys.stdout.write(redact(json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, default=str)) + "\n")
    elif args.output == "jsonl":
        print_jsonl(result.rows)
    elif args.output == "csv":
        print_csv(result.rows, result.columns)
    else:
        print_table(result.rows, result.columns)
    return 0
