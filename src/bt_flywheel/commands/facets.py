"""`flywheel facets bootstrap|eval`: the facet optimizer's definitions and its eval (seed 000)."""

from __future__ import annotations

import argparse

from bt_flywheel.commands._options import add_output_args, add_settings_args, settings_from_args, wants_json
from bt_flywheel.core.output import print_json, print_line, print_table, status


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("facets", help="bootstrap facet_definitions.yaml from production; run a facet eval",
                            description="The facet optimizer loop: `bootstrap` writes facet_definitions.yaml "
                                        "from the facet LLM spans in the logs; `eval` runs one version of "
                                        "the facet prompts on curated facet rows through an OpenAI-compatible "
                                        "model and scores it with binary_classification_scores.")
    actions = parser.add_subparsers(dest="facets_command", metavar="ACTION")
    actions.required = True
    boot = actions.add_parser("bootstrap", help="facet_definitions.yaml from captured facet LLM spans",
                              description="One entry per facet name seen on llm spans: wrapper messages, "
                                          "suffix (the facet prompt), model, output schema, span filter.")
    boot.add_argument("--out", required=True, metavar="FILE", help="facet_definitions.yaml to write")
    boot.add_argument("--name-path", default="metadata.facet_name",
                      help="where a facet span logs its facet's name (default metadata.facet_name)")
    boot.add_argument("--window-days", type=int, default=30, help="look back this many days (default 30)")
    boot.add_argument("--where", help="extra Braintrust SQL condition on the spans, e.g. \"metadata.model = 'x'\"")
    boot.add_argument("--sample", type=int, default=50, help="latest spans compared per facet (default 50)")
    add_output_args(boot, json_help="print the definitions as JSON")
    add_settings_args(boot)
    boot.set_defaults(handler=run_bootstrap)

    ev = actions.add_parser("eval", help="run a facet prompt version on curated rows (binary classification scores)",
                            description="Runs the facet file's messages + each row's conversation + "
                                        "suffix_messages through OPENAI_BASE_URL (retries, a resumable "
                                        "answer cache) and stores the experiment like `flywheel eval`. "
                                        "Compare two versions with `flywheel compare A B --optimize fp|fn|balanced`.")
    ev.add_argument("facets_file", metavar="FACETS_YAML", help="the facet definitions (this prompt version)")
    ev.add_argument("--dataset", required=True, help="curated facet dataset (local name/id or dataset_rows.jsonl)")
    ev.add_argument("--split", choices=["train", "validation"], help="only rows of this split")
    ev.add_argument("--first", type=int, metavar="N", help="only the first N rows (smoke)")
    ev.add_argument("--trials", type=int, default=1, metavar="K", help="trials per row (default 1)")
    ev.add_argument("--facet", help="only this facet's rows")
    ev.add_argument("--model", help="model for every facet (default: each facet's captured model)")
    ev.add_argument("--prompt-version", help="a name for this prompt version (default sha256 of the prompts)")
    ev.add_argument("--name", help="experiment name")
    ev.add_argument("--max-retries", type=int, default=4, help="retries per model call (default 4)")
    ev.add_argument("--max-concurrency", type=int, metavar="C", help="concurrent calls (default 16)")
    add_output_args(ev, json_help="print the result as JSON")
    add_settings_args(ev, backend=False)
    ev.set_defaults(handler=run_eval)


def run_bootstrap(args: argparse.Namespace) -> int:
    from bt_flywheel.backends.runners import project_runner
    from bt_flywheel.core.errors import UsageError
    from bt_flywheel.dataset.facet_bootstrap import bootstrap_facets, write_facet_definitions

    settings = settings_from_args(args)
    if not settings.project:
        raise UsageError("--project is required (or FLYWHEEL_PROJECT)")
    document = bootstrap_facets(project_runner(settings), project=settings.project, name_path=args.name_path,
                                window_days=args.window_days, where=args.where, sample=args.sample)
    path = write_facet_definitions(document, args.out)
    if wants_json(args):
        print_json(document.to_dict())
    else:
        print_table([{"facet": f.name, "spans": f.captured["spans"], "model": f.model or None,
                      "wrapper": len(f.messages), "suffix": len(f.suffix_messages),
                      "output_schema": "yes" if f.output_schema else "no"} for f in document.facets])
        print_line(f"wrote {path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from bt_flywheel.core.errors import UsageError
    from bt_flywheel.evals.facet_eval import FacetEvalOptions, run_facet_eval

    settings = settings_from_args(args)
    if not settings.project:
        raise UsageError("--project is required (or FLYWHEEL_PROJECT)")
    result = run_facet_eval(FacetEvalOptions(
        facets_path=args.facets_file, dataset=args.dataset, project=settings.project, store=settings.store,
        split=args.split, first=args.first, trials=args.trials, facet=args.facet, model=args.model,
        prompt_version=args.prompt_version, name=args.name, base_url=settings.openai_base_url,
        api_key=settings.openai_api_key, max_retries=args.max_retries, max_concurrency=args.max_concurrency,
        silent=args.quiet))
    from bt_flywheel.verify.looks import record_eval_looks

    for message in record_eval_looks([result], settings, split=args.split):
        status(message)
    if wants_json(args):
        print_json(result.as_dict())
    else:
        print_line(f"experiment: {result.experiment_name} ({result.experiment_id})  prompt version: "
                   f"{result.metadata['params']['prompt_version']}  model: {result.metadata['params']['model']}")
        print_table([{"score": k, "mean": None if v is None else round(v, 4), "n": result.score_counts[k]}
                     for k, v in result.scores.items()], ["score", "mean", "n"])
    for error in result.errors[:5]:
        status(f"error: {error.describe()}")
    return 1 if result.errors else 0
