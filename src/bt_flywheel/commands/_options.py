"""Flags shared by several commands, and turning them into library inputs."""

from __future__ import annotations

import argparse
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


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    flags = {
        "project": getattr(args, "project", None),
        "store": getattr(args, "store", None),
        "backend": getattr(args, "backend", None),
        **extra,
    }
    return load_settings(flags, env_file=getattr(args, "env_file", None))


def add_output_args(parser: argparse.ArgumentParser, *, csv: bool = True, jsonl: bool = True) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", dest="output", action="store_const", const="json", help="print JSON")
    if jsonl:
        group.add_argument("--jsonl", dest="output", action="store_const", const="jsonl", help="print JSON lines")
    if csv:
        group.add_argument("--csv", dest="output", action="store_const", const="csv", help="print CSV")
    parser.set_defaults(output="table")


def emit_rows(args: argparse.Namespace, rows: list[dict[str, Any]], *, document: Any = None,
              columns: list[str] | None = None) -> None:
    """Print rows in the chosen format; `document` is what --json prints (default: the rows)."""
    output = getattr(args, "output", "table")
    if output == "json":
        print_json(rows if document is None else document)
    elif output == "jsonl":
        print_jsonl(rows)
    elif output == "csv":
        print_csv(rows, columns)
    else:
        print_table(rows, columns)
