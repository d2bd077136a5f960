"""`flywheel skill export DIR` and `flywheel skill validate DIR`."""

from __future__ import annotations

import argparse
import sys

from bt_flywheel.commands._options import add_output_args, wants_json
from bt_flywheel.core.output import print_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("skill", help="export the skill as a self-contained Agent Skills folder, or check one",
                            description="Package the bt-flywheel skill for clients that install only a skill "
                            "folder (Codex, any Agent Skills client).")
    actions = parser.add_subparsers(dest="skill_command", metavar="ACTION")
    actions.required = True
    export = actions.add_parser(
        "export", help="write a self-contained skill folder",
        description="Write DIR/bt-flywheel (or DIR itself when it is named bt-flywheel): SKILL.md with its "
        "links rewritten, references/, schemas/, agents/openai.yaml and scripts/flywheel with the package "
        "bundled. The folder is validated before it is moved into place.")
    export.add_argument("dir", metavar="DIR", help="where to write the skill folder")
    export.add_argument("--force", action="store_true", help="replace an existing non-empty folder")
    add_output_args(export, json_help="print the result as JSON")
    export.set_defaults(handler=run_export)
    validate = actions.add_parser(
        "validate", help="check a skill folder against the Agent Skills rules",
        description="Check frontmatter keys, name = folder, lengths, agents/openai.yaml, and that every "
        "file SKILL.md and references/ mention exists (case-sensitive). Exit 0 valid, 1 not.")
    validate.add_argument("dir", metavar="DIR", help="the skill folder (the one holding SKILL.md)")
    add_output_args(validate, json_help="print the problems as JSON")
    validate.set_defaults(handler=run_validate)


def run_export(args: argparse.Namespace) -> int:
    from bt_flywheel.skill.export import export_skill

    result = export_skill(args.dir, force=args.force)
    if wants_json(args):
        print_json(result.as_dict())
    else:
        print(result.path)
        sys.stderr.write(f"exported {len(result.files)} files; the skill folder passes validation\n")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bt_flywheel.skill.export import validate_skill_dir

    folder = Path(args.dir)
    problems = validate_skill_dir(folder)
    if wants_json(args):
        print_json({"path": str(folder), "valid": not problems, "problems": problems})
    else:
        for problem in problems:
            print(problem)
        sys.stderr.write(f"{folder}: {'valid' if not problems else f'{len(problems)} problem(s)'}\n")
    return 1 if problems else 0
