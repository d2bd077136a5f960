"""`flywheel handoff validate|render`: check and narrate a bt-flywheel-summary.json."""

from __future__ import annotations

import argparse
import sys

from bt_flywheel.commands._options import add_out_dir, add_output_args, add_settings_args, wants_json
from bt_flywheel.core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("handoff", help="validate or render a handoff (bt-flywheel-summary.json)",
                            description="Work with the exit handoff, contract bt-flywheel-handoff/v1 "
                                        "(schemas/handoff.schema.json).")
    actions = parser.add_subparsers(dest="handoff_command", metavar="ACTION")
    actions.required = True

    validate = actions.add_parser(
        "validate", help="check a handoff against the contract",
        description="Check FILE against schemas/handoff.schema.json plus the contract's own rules "
                    "(idempotency keys, time order, unique ids, no secrets). Prints every violation "
                    "with its JSON path. Exit 0 valid, 2 invalid, missing or unparseable.")
    validate.add_argument("file", help="the handoff JSON file")
    add_output_args(validate, json_help="print {file, valid, violations: [{path, message}]} instead of lines")
    validate.add_argument("--env-file", help="also treat secrets in this .env file as forbidden values")
    validate.set_defaults(handler=run_validate)

    render = actions.add_parser(
        "render", help="write the Markdown narrative for a handoff",
        description="Render the narrative (what we looked at, what we found, what we changed, how we "
                    "know, what next) from a valid handoff. Deterministic: same JSON, same bytes.")
    render.add_argument("file", help="the handoff JSON file")
    render.add_argument("--out", metavar="FILE", help="write the narrative here (atomically) instead of stdout")
    render.add_argument("--env-file", help="also redact secrets from this .env file")
    add_output_args(render, json_help="print {file, narrative} (the narrative text, or the path written with --out)")
    render.set_defaults(handler=run_render)

    build = actions.add_parser(
        "build", help="build a valid handoff from a small draft (the judgement only)",
        description="Read DRAFT (YAML or JSON, schemas/handoff-draft.schema.json: outcome, severity, "
                    "blocking, confidence, summary, findings, changes, next_steps, artifacts as path + kind, "
                    "links, x- keys; optionally goal and project) and fill everything computable: run id, "
                    "times, mode, verification from the comparison, loops from the ledger, artifact "
                    "sha256, idempotency keys. With --comparison also writes forest.svg and, when both "
                    "experiments are in the local store, bt-flywheel-report.html next to the narrative. "
                    "Validates before writing bt-flywheel-summary.json and bt-flywheel-narrative.md: "
                    "exit 2 with every violation and its JSON path, nothing written.")
    build.add_argument("draft", metavar="DRAFT", help="the draft file (YAML or JSON)")
    build.add_argument("--orient", metavar="ORIENT.json",
                       help="the output of `flywheel orient --json` (mode, goal, project, start time; default: the "
                            "session orient saved)")
    build.add_argument("--comparison", metavar="COMPARE.json",
                       help="the output of `flywheel compare --json` / --out (the verification numbers)")
    build.add_argument("--ledger", metavar="LEDGER.json",
                       help="the loop ledger (loops and their count; default: the session's ledger if it exists)")
    add_out_dir(build, "where to write the handoff (default: .)", default=".")
    build.add_argument("--strict", action="store_true",
                       help="fail (exit 2, nothing written) when the draft's figures contradict the comparison or a "
                            "candidate had repeated validation looks; default: warn and record x-build-warnings")
    add_output_args(build, json_help="print {summary, narrative, written, outcome, verification_status, artifacts, "
                                     "warnings}")
    add_settings_args(build, backend=False)
    build.set_defaults(handler=run_build)


def register_known_secrets(env_file: str | None) -> None:
    """Load settings only so that secrets from the environment and .env are known to redact()."""
    from bt_flywheel.core.config import load_settings
    from bt_flywheel.core.errors import ConfigError

    try:
        load_settings({}, env_file=env_file)
    except ConfigError:
        if env_file:
            raise


def run_validate(args: argparse.Namespace) -> int:
    from bt_flywheel.core.fileio import read_json_file
    from bt_flywheel.core.output import print_json
    from bt_flywheel.core.redact import redact
    from bt_flywheel.handoff.checks import handoff_look_warnings
    from bt_flywheel.handoff.contract import validate_handoff

    register_known_secrets(args.env_file)
    doc = read_json_file(args.file)
    violations = validate_handoff(doc)
    warnings = handoff_look_warnings(doc, args.file) if not violations else []
    if wants_json(args):
        print_json({"file": args.file, "valid": not violations,
                    "violations": [{"path": v.path, "message": v.message} for v in violations],
                    "warnings": warnings})
    elif not violations:
        print(redact(f"{args.file}: valid {doc['contract_version']} handoff (outcome {doc['outcome']})"))
    else:
        for violation in violations:
            print(redact(f"{args.file}: {violation}"))
    if not wants_json(args):
        for warning in warnings:
            sys.stderr.write(redact(f"warning: {args.file}: {warning}\n"))
    if violations:
        raise InputError(f"{args.file}: invalid handoff: {_count(violations)}")
    return 0


def _count(violations: list) -> str:
    return f"{len(violations)} violation{'s' if len(violations) != 1 else ''}"


def run_render(args: argparse.Namespace) -> int:
    from bt_flywheel.core.fileio import atomic_write_text
    from bt_flywheel.core.output import print_json, status
    from bt_flywheel.core.redact import redact
    from bt_flywheel.handoff.contract import load_handoff
    from bt_flywheel.handoff.narrative import render_narrative

    register_known_secrets(args.env_file)
    text = render_narrative(load_handoff(args.file).raw)
    if args.out:
        atomic_write_text(args.out, text)
        status(f"wrote {args.out}")
    if wants_json(args):
        print_json({"file": args.file, "narrative": args.out or text, "written": bool(args.out)})
    elif not args.out:
        sys.stdout.write(redact(text))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from bt_flywheel.commands._options import settings_from_args
    from bt_flywheel.core.output import print_json, status
    from bt_flywheel.core.redact import redact
    from bt_flywheel.handoff.build import HandoffInvalid, build_from_draft

    settings = settings_from_args(args)
    try:
        result = build_from_draft(args.draft, orient=args.orient, comparison=args.comparison, ledger=args.ledger,
                                  store=args.store, out_dir=args.out_dir, settings=settings, strict=args.strict)
    except HandoffInvalid as exc:
        if wants_json(args):
            print_json({"file": args.draft, "valid": False,
                        "violations": [{"path": v.path, "message": v.message} for v in exc.violations]})
        else:
            for violation in exc.violations:
                status(f"{exc.source}: {violation}")
        raise InputError(f"{exc.source}: {_count(exc.violations)}; nothing written") from None
    for note in result.notes:
        status(note)
    for warning in result.warnings:
        status(f"warning: {warning}")
    if wants_json(args):
        print_json(result.to_dict())
    else:
        for path in (result.paths.summary, result.paths.narrative, *result.written):
            print(redact(str(path)))
    return 0
