"""`flywheel topics run`: Braintrust's Topics pipeline on the local store, or Braintrust's own via `bt`."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import (
    add_out_dir,
    add_output_args,
    add_settings_args,
    settings_from_args,
    wants_json,
)
from bt_flywheel.core.output import print_json, print_line


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topics", help="cluster traces into topics and classify them (Braintrust Topics)",
                            description="Topics: facet summaries per trace, clustered into named topics; every "
                                        "trace in the window is classified to its nearest topic. Results land in "
                                        "facets.<Facet> and classifications.<Facet> for SQL.")
    actions = parser.add_subparsers(dest="topics_command", metavar="ACTION")
    actions.required = True
    run = actions.add_parser(
        "run", help="preprocess, summarise, cluster and classify the window's traces",
        description="Local: the four steps on the local store (see references/topics-patterns.md). New traces are "
                    "classified against the existing topics and no classification moves; --rebuild reclusters. "
                    "No model endpoint configured (OPENAI_BASE_URL / OPENAI_API_KEY): nothing leaves the machine; "
                    "the summaries are the users' request texts (writer fallback) and vectors are TF-IDF. Remote "
                    "(a Braintrust key): queues Braintrust's own Topics with `bt topics poke` (or `rewind` with "
                    "--rebuild) and reports `bt topics status`.")
    run.add_argument("--window-days", type=int, help="traces whose root was created in the last D days (default 7)")
    run.add_argument("--facet", action="append", default=[], metavar="NAME",
                     help="Task, Sentiment, Issues or a custom facet name; repeatable (default Task)")
    run.add_argument("--rebuild", action="store_true", help="recluster the window and reclassify its traces")
    run.add_argument("--writer", choices=["auto", "llm", "agent", "fallback"], default="auto",
                     help="who writes facet summaries: llm (the model endpoint), agent (label export/apply), "
                          "fallback (the request text); auto = llm when an endpoint is configured, else fallback")
    run.add_argument("--model", default="gpt-4o-mini", help="chat model for summaries and topic names")
    run.add_argument("--embedding-model", default="text-embedding-3-small",
                     help="embedding model at the endpoint (default text-embedding-3-small)")
    run.add_argument("--vectors", choices=["auto", "tfidf", "embedding"], default="auto",
                     help="auto = embeddings when an endpoint is configured, else TF-IDF")
    run.add_argument("--concurrency", type=int, default=8, help="parallel model requests (default 8)")
    run.add_argument("--max-retries", type=int, default=4, help="retries per model request (default 4)")
    run.add_argument("--seed", type=int, default=0, help="clustering seed (default 0)")
    run.add_argument("--min-summaries", type=int, default=100, help="summaries needed before topics (default 100)")
    run.add_argument("--max-topics", type=int, default=12, help="largest k tried (default 12)")
    run.add_argument("--min-topic-size", type=int, default=5, help="smaller clusters are dissolved (default 5)")
    add_out_dir(run, "llm facet cache and agent export files (default .flywheel/topics/<project id>)")
    add_output_args(run, json_help="print the report as JSON")
    add_settings_args(run)
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from bt_flywheel.core.errors import UsageError

    settings = settings_from_args(args)
    project = settings.project
    if not project:
        raise UsageError("topics run: no project", hint="pass --project NAME (or set FLYWHEEL_PROJECT)")
    window = args.window_days or int(settings.get("window_days"))
    if settings.backend_resolved == "remote":
        from bt_flywheel.topics.remote import run_remote_topics

        report = run_remote_topics(project, rebuild=args.rebuild, window_days=window)
        print_json(report) if wants_json(args) else print_line(
            f"queued Braintrust Topics for {project} ({'rewind ' + str(window) + 'd' if args.rebuild else 'poke'}); "
            "read results with SQL on classifications.<Facet>[0].label")
        return 0
    from bt_flywheel.topics.model import Endpoint
    from bt_flywheel.topics.run import TopicsOptions, run_topics

    endpoint = None
    if settings.openai_base_url or settings.openai_api_key:
        endpoint = Endpoint(base_url=settings.openai_base_url or "https://api.openai.com/v1",
                            api_key=settings.openai_api_key, chat_model=args.model,
                            embedding_model=None if args.vectors == "tfidf" else args.embedding_model,
                            concurrency=args.concurrency, max_retries=args.max_retries)
    report = run_topics(TopicsOptions(
        project=project, store_path=settings.store, window_days=window, facets=args.facet or ["Task"],
        rebuild=args.rebuild, writer=args.writer, endpoint=endpoint, vectors=args.vectors, seed=args.seed,
        min_summaries=args.min_summaries, max_topics=args.max_topics, min_topic_size=args.min_topic_size,
        out_dir=args.out_dir, quiet=args.quiet))
    if wants_json(args):
        print_json(report)
        return 0
    for facet in report["facets"]:
        line = f"{facet['facet']}: {facet['status']}, writer {facet['facet_writer']}"
        if facet.get("topics") is not None:
            names = ", ".join(f"{t['name']} ({t['size']})" for t in facet["topics"])
            line += (f", {len(facet['topics'])} topics [{names}]; classified {facet['classified']} "
                     f"({facet['unassigned']} unassigned), kept {facet['kept']}")
        else:
            line += f": {facet.get('reason', '')}"
        print_line(line)
    return 0
