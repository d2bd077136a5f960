"""The facet eval (seed 000): run one version of the facet prompts on curated facet rows.

    result = run_facet_eval(FacetEvalOptions(facets_path="facet_definitions.yaml", dataset="facet-gt",
                                             project="support", split="validation", name="issues-v2"))

Each curated facet row holds the captured production call (`input.input`: wrapper messages, the
conversation, the facet prompt). The task cuts the conversation out of it with the counts
`flywheel facets bootstrap` recorded (`captured.prefix_messages` / `suffix_messages`), sends the
CURRENT file's `messages` + conversation + `suffix_messages` to an OpenAI-compatible model
(the llm labeler's ChatClient: retries, backoff, Retry-After) with the captured
`output_schema` as `response_format`, and returns the model's answer. Answers are cached by
(row, trial, prompt version, model) in the same resumable JSONL cache the labeler uses, so a
killed run resumes without paying twice. The scorer is `binary_classification_scores` (decision
match, positive recall, negative specificity, with the one definition of "none").

The run goes through the braintrust SDK like any `flywheel eval`; the experiment records
`params.model` and `params.prompt_version`, so `flywheel leaderboard --by
metadata.model,metadata.prompt_version` ranks (model, prompt) cells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.ids import content_hash
from bt_flywheel.dataset.facet_bootstrap import messages_of
from bt_flywheel.dataset.facets import FacetDefinition, load_facet_definitions
from bt_flywheel.label.base import Rubric
from bt_flywheel.label.llm import DEFAULT_BASE_URL, ChatClient, LabelCache

CACHE_FILE = "facet_eval_cache.jsonl"


@dataclass
class FacetEvalOptions:
    facets_path: str | Path
    dataset: str                      # a local dataset name/id, or a dataset_rows.jsonl path
    project: str
    store: str | Path = ".flywheel/store.duckdb"
    split: str | None = None
    first: int | None = None
    trials: int = 1
    facet: str | None = None          # only this facet's rows
    model: str | None = None          # default: each facet's captured model
    prompt_version: str | None = None  # default: sha256 of the prompts
    name: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    max_retries: int = 4
    max_concurrency: int | None = None
    cache_path: str | Path | None = None
    silent: bool = False


def prompt_fingerprint(facets: list[FacetDefinition]) -> str:
    """A version for the prompts of a facets file: what is sent, never the file's comments."""
    sent = [[f.name, f.messages, f.suffix_messages, f.output_schema, f.model] for f in facets]
    return "sha256:" + content_hash(json.dumps(sent, sort_keys=True, ensure_ascii=False), 12)


def conversation_of(facet: FacetDefinition, captured: Any) -> list[dict[str, Any]]:
    """The conversation inside a row's captured facet call (what is classified)."""
    call = messages_of(captured)
    if call is None:  # a root-input facet: the input itself is the data
        text = captured if isinstance(captured, str) else json.dumps(captured, ensure_ascii=False)
        return [{"role": "user", "content": text}]
    prefix = int(facet.captured.get("prefix_messages", len(facet.messages)))
    suffix = int(facet.captured.get("suffix_messages", len(facet.suffix_messages)))
    return call[prefix: len(call) - suffix if suffix else None]


def facet_messages(facet: FacetDefinition, captured: Any) -> list[dict[str, Any]]:
    return [*facet.messages, *conversation_of(facet, captured), *facet.suffix_messages]


def parse_output(content: str) -> Any:
    """The model's answer: parsed JSON when it is JSON, else the trimmed text."""
    text = content.strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def _facet_of(metadata: dict[str, Any] | None) -> str | None:
    """A facet row's facet: `metadata.facet_name`, the one place the dataset-row schema names it."""
    return (metadata or {}).get("facet_name")


class _Task:
    """The eval task: one model call per (row, trial), cached."""

    def __init__(self, facets: dict[str, FacetDefinition], options: FacetEvalOptions, version: str,
                 cache_path: Path) -> None:
        self.facets = facets
        self.options = options
        self.client = ChatClient(base_url=options.base_url or DEFAULT_BASE_URL, api_key=options.api_key,
                                 max_retries=options.max_retries)
        self.cache = LabelCache(cache_path, rubric=Rubric(version=version, text=version))

    def model_for(self, facet: FacetDefinition) -> str:
        model = self.options.model or facet.model
        if not model:
            raise InputError(f"facet {facet.name!r}: no model (give --model, or bootstrap the facet file)")
        return model

    def __call__(self, input: Any, hooks: Any) -> Any:  # noqa: A002 (the SDK's name)
        facet = self.facets[input["facet_name"]]
        model = self.model_for(facet)
        key = f"{hooks.metadata.get('dataset_row_id')}#{hooks.trial_index}"
        hit = self.cache.get(key, model)
        if hit is not None:
            return hit["output"]
        params: dict[str, Any] = {"temperature": 0}
        if facet.output_schema:
            params["response_format"] = facet.output_schema
        response = self.client.complete(model, facet_messages(facet, input.get("input")), **params)
        output = parse_output(response.content)
        self.cache.put({"row_id": key, "rubric_version": self.cache.rubric.version,
                        "rubric_sha256": self.cache.rubric.sha256, "model": model,
                        "labeler_model": response.model, "output": output})
        return output


def facet_cases(options: FacetEvalOptions, facets: dict[str, FacetDefinition]) -> list[Any]:
    """The dataset's rows of the facets in the file (and --facet), as EvalCases with input.facet_name."""
    from braintrust import EvalCase

    from bt_flywheel.evals.data import local_dataset

    cases = []
    for case in local_dataset(options.dataset, project=options.project, store=options.store):
        name = _facet_of(case.metadata)
        if name not in facets or (options.facet and name != options.facet):
            continue
        captured = case.input.get("input") if isinstance(case.input, dict) else case.input
        cases.append(EvalCase(input={"facet_name": name, "input": captured}, expected=case.expected,
                              metadata={**(case.metadata or {}), "facet_name": name}, tags=case.tags,
                              id=case.id, origin=case.origin))
    if not cases:
        wanted = options.facet or ", ".join(sorted(facets))
        raise InputError(f"dataset {options.dataset!r}: no rows of facet(s) {wanted}",
                         hint="curate them first: flywheel curate --strategy facet --facets FILE")
    return cases


def run_facet_eval(options: FacetEvalOptions) -> Any:
    """Run the facet prompts of `options.facets_path` on the curated rows; returns the EvalRunResult."""
    from bt_flywheel.evals.runner import build_evaluator, run_evaluator_once
    from bt_flywheel.evals.scorers import binary_classification_scores

    definitions = load_facet_definitions(options.facets_path)
    facets = {f.name: f for f in definitions}
    if options.facet and options.facet not in facets:
        raise InputError(f"--facet {options.facet!r}: not in {options.facets_path} ({', '.join(facets)})")
    fingerprint = prompt_fingerprint(definitions)
    version = options.prompt_version or fingerprint
    cases = facet_cases(options, facets)
    cache_path = Path(options.cache_path or Path(options.store).parent / CACHE_FILE)
    task = _Task(facets, options, fingerprint, cache_path)  # cached by what is sent, not by its name
    models = sorted({task.model_for(facets[c.input["facet_name"]]) for c in cases})
    params = {"model": ", ".join(models), "prompt_version": version, "prompt_sha256": fingerprint,
              "facets_file": str(options.facets_path), "runner": "flywheel facets eval"}
    evaluator = build_evaluator(options.project, data=cases, task=task, scores=[binary_classification_scores],
                                name=options.name, trials=options.trials, params=params,
                                max_concurrency=options.max_concurrency,
                                description=f"facet prompts {version} on {options.dataset}")
    return run_evaluator_once(evaluator, source=options.facets_path, split=options.split, first=options.first,
                              name=options.name or f"facets-{version.split(':')[-1]}-{options.split or 'all'}",
                              project=options.project, store=options.store, silent=options.silent)
