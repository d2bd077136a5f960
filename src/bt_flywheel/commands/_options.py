"""Flags shared by several commands, and turning them into library inputs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bt_flywheel.core.config import Settings, load_settings
from bt_flywheel.core.output import print_csv, print_json, print_jsonl, print_table


def add_settings_args(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    group = parser.add_argument_group("settings")
    group.add_argument("--project", "-p", help="project name or id (env FLYWHEEL_PROJECT, .bt/config.json)")
    group.add_argument("--store", help="local store file (default .flywheel/store.duckdb, env FLYWHEEL_STORE)")
    group.add_argument("--env-file", help="read settings from this .env file (default ./.env)")
    if backend:
        choice = group.add_mutually_exclusive_group()
        choice.add_argument("--remote", dest="backend", action="store_const", const="remote",
                            help="use Braintrust (needs BRAINTRUST_API_KEY)")
        choice.add_argument("--local", dest="backend", action="store_const", const="local",
                            help="use the embedded local backend")


def settings_from_args(args: argparse.Namespace, *, session: bool = True, **extra: Any) -> Settings:
    """Settings from the shared flags; `session=False` leaves out what Orient saved."""
    flags = {
        "project": getattr(args, "project", None),
        "store": getattr(args, "store", None),
        "backend": getattr(args, "backend", None),
        **extra,
    }
    return load_settings(flags, env_file=getattr(args, "env_file", None), session=session)


def add_output_args(parser: argparse.ArgumentParser, *, csv: bool = False, jsonl: bool = False,
                    json_help: str = "print JSON instead of text") -> None:
    """The output options every command has: `--json` (and, for row output, `--jsonl`/`--csv`) and
    `--quiet` (no progress on stderr; `--silent` is the same flag under its older name).

    `args.json` is true when JSON was asked for; `args.output` is one of text, json, jsonl, csv.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", dest="output", action="store_const", const="json", help=json_help)
    if jsonl:
        group.add_argument("--jsonl", dest="output", action="store_const", const="jsonl", help="print JSON lines")
    if csv:
        group.add_argument("--csv", dest="output", action="store_const", const="csv", help="print CSV")
    parser.add_argument("--quiet", "-q", "--silent", dest="quiet", action="store_true",
                        help="no progress lines on stderr")
    parser.set_defaults(output="text", handler_output=True)


def add_out_dir(parser: argparse.ArgumentParser, help: str, *, required: bool = False,
                default: str | None = None) -> None:
    """`--out-dir DIR`: always a directory. `--out` is still accepted here as its older spelling."""
    parser.add_argument("--out-dir", "--out", dest="out_dir", metavar="DIR", required=required, default=default,
                        help=help)


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", None) == "json"


def emit_rows(args: argparse.Namespace, rows: list[dict[str, Any]], *, document: Any = None,
              columns: list[str] | None = None) -> None:
    """Print rows in the chosen format; `document` is what --json prints (default: the rows)."""
    output = getattr(args, "output", "text")
    if output == "json":
        print_json(rows if document is None else document)
    elif output == "jsonl":
        print_jsonl(rows)
    elif output == "csv":
        print_csv(rows, columns)
    else:
        print_table(rows, columns)


def report_apply(args: argparse.Namespace, result: Any, source: str, summary: Callable[[], str]) -> int:
    """How `label apply` and `judge apply` report: each bad row on stderr, the result as JSON (or the
    one-line `summary`), an error when the file was rejected whole, and exit 2 when any row was bad."""
    from bt_flywheel.core.errors import InputError
    from bt_flywheel.core.output import print_line, status

    for problem in result.problems:
        status(f"bad row: {problem}")
    if wants_json(args):
        print_json(result.as_dict())
    if result.rejected:
        raise InputError(f"{source}: {len(result.problems)} bad row(s); nothing applied",
                         hint="fix them, or --skip-bad to apply the rest")
    if not wants_json(args):
        print_line(summary())
    return 2 if result.problems else 0
