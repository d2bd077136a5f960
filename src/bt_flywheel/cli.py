"""The thin CLI: parse, call the library, print, map errors to exit codes (DESIGN.md §10).

Each area's commands live in `bt_flywheel.commands.<area>` and expose
`register(subparsers)`; every handler takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from bt_flywheel import __version__, commands
from bt_flywheel.core.errors import INTERNAL_ERROR_EXIT, FlywheelError
from bt_flywheel.core.output import set_quiet
from bt_flywheel.core.redact import redact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel",
        description="Helper CLI for the bt-flywheel skill: SQL over traces, curation, labeling, "
        "evals, paired statistics, routing and the handoff.",
    )
    parser.add_argument("--version", action="version", version=f"flywheel {__version__}")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    # --debug is accepted after the subcommand too
    for choice in sub.choices.values():
        _add_debug(choice)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    try:
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show tracebacks for errors")
    except argparse.ArgumentError:
        pass
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_debug(child)


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The parser, built once per process: building it registers every command (a few hundred
    arguments), and parsing never changes it, so in-process callers (tests, notebooks) reuse it.
    Registration therefore reads no environment; commands read it when they run."""
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("FLYWHEEL_DEBUG") == "1"
    was_quiet = set_quiet(getattr(args, "quiet", False))
    try:
        code = args.handler(args)
    except FlywheelError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {redact(exc.one_line())}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # an unexpected bug: one line unless --debug (tests set FLYWHEEL_RAISE_ERRORS)
        if debug or os.environ.get("FLYWHEEL_RAISE_ERRORS") == "1":
            raise
        first = redact(" ".join(str(exc).split()))[:300]
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {first} (rerun with --debug)\n")
        return INTERNAL_ERROR_EXIT
    finally:
        set_quiet(was_quiet)
    return int(code or 0)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
