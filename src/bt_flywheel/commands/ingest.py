"""`flywheel ingest` (load spans into the local store) and `flywheel synth` (generate traces)."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json
from bt_flywheel.core.output import print_json, print_line, status


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ingest", help="load span rows (JSONL, .jsonl.gz, bt sync pull output) into the local store",
        description="Load Braintrust span rows into the local store, idempotently by row id. PATH is a "
        "JSONL file, a gzip JSONL file, a directory of them, or a `bt sync pull` output tree "
        "(bt-sync/<type>_<id>/<hash>/spec.json + data/part-*.jsonl). One transaction per run: a bad "
        "row stops the run and nothing is stored, unless --skip-bad.")
    parser.add_argument("path", metavar="PATH", help="FILE.jsonl, FILE.jsonl.gz or DIR")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip bad rows, keep the good ones")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--experiment", metavar="NAME", help="load plain files as this experiment")
    target.add_argument("--dataset", metavar="NAME", help="load plain files as this dataset")
    add_output_args(parser, json_help="print the counts as JSON")
    add_settings_args(parser, backend=False)
    parser.set_defaults(handler=run_ingest)

    synth = sub.add_parser(
        "synth", help="write realistic synthetic production traces (JSONL) for demos and benchmarks",
        description="Generate root + llm/tool/score spans with facets, scores, errors, 30 days of "
        "`created` and planted failure patterns. Deterministic for a given --seed and --now.")
    synth.add_argument("--spans", type=int, default=2000, help="number of span rows (default 2000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--days", type=int, default=30, help="spread `created` over this many days (default 30)")
    synth.add_argument("--now", help="ISO timestamp the data ends at (default: the current UTC hour)")
    synth.add_argument("--out", required=True, metavar="FILE", help="output file (.jsonl or .jsonl.gz)")
    add_output_args(synth, json_help="print {file, spans} instead of the line")
    synth.set_defaults(handler=run_synth)


def run_ingest(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.ingest import ingest
    from bt_flywheel.backends.store import Store
    from bt_flywheel.core.errors import InputError

    settings = settings_from_args(args)
    if not settings.project:
        raise InputError("--project: required (the project these spans belong to)",
                         hint="pass --project NAME or set FLYWHEEL_PROJECT")
    seen = [0]

    def progress(n: int) -> None:  # called once per file with its row count
        seen[0] += n
        if not args.quiet and n:
            status(f"ingest: {seen[0]} rows read")

    with Store(settings.store) as store:
        result = ingest(store, args.path, project=settings.project, skip_bad=args.skip_bad,
                        experiment=args.experiment, dataset=args.dataset,
                        on_bad=None if wants_json(args) else (lambda m: status(f"skipped: {m}")),
                        on_progress=progress)
    from bt_flywheel.session.orient import refresh_session

    session = refresh_session(settings.session_path, settings) if settings.session_path else None
    if wants_json(args):
        print_json({**result.as_dict(), **({"session": {"path": settings.session_path,
                                                        "data_window": session["data_window"]}} if session else {})})
    else:
        if session:
            window = session["data_window"]
            status(f"session {settings.session_path}: window {window['days']} days ({window['source']})")
        print_line(f"ingested {result.rows} rows from {result.files} file(s) into {settings.store}: "
              f"inserted {result.inserted}, updated {result.updated}, unchanged {result.unchanged}, "
              f"skipped {result.skipped}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from bt_flywheel.backends.synth import write_jsonl
    from bt_flywheel.core.errors import InputError

    now = None
    if args.now:
        try:
            now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"--now: not an ISO 8601 timestamp: {args.now!r}") from None
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if args.spans < 0:
        raise InputError("--spans: must be >= 0")
    count = write_jsonl(args.out, args.spans, seed=args.seed, now=now, days=args.days)
    if wants_json(args):
        print_json({"file": args.out, "spans": count})
    else:
        print_line(f"wrote {count} spans to {args.out}")
    return 0
