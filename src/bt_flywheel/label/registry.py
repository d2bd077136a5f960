"""The labeler registry: every labeler by name, behind one typed Protocol (DESIGN.md §7).

    from bt_flywheel.label.registry import LabelerOptions, labeler_names, make_labeler
    labeler = make_labeler("file", LabelerOptions(labels_path="labels.csv"))
    run = labeler.label(rows)

The names here are the only list of labelers: the CLI's `--labeler` choices come from
`labeler_names()`, curation asks a labeler (not its name) what it can reuse and whether it
waits for the lazy judge, and a test checks that the enum in
schemas/dataset-row.schema.json (`metadata.label.labeler`) names exactly these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bt_flywheel.core.errors import InputError
from bt_flywheel.label.agent import AgentLabeler
from bt_flywheel.label.base import FileLabeler, LabelRun, Rubric, ScoreLabeler
from bt_flywheel.label.llm import DEFAULT_BASE_URL, DEFAULT_MODEL, ChatClient, LLMLabeler


@runtime_checkable
class Labeler(Protocol):
    """What curation needs from a labeler."""

    name: str

    def label(self, rows: list[dict[str, Any]], *, progress: Any = None) -> LabelRun:
        """Label rows; what it cannot label goes to `failed` (why) or `pending` (waiting for a judge)."""
        ...

    def reuses(self, stored: Mapping[str, Any]) -> bool:
        """True when a stored label (metadata.label) is one this labeler would give again."""
        ...


@dataclass
class LabelerOptions:
    """Everything any labeler can be configured with; each kind reads what it needs."""

    rubric: Rubric | None = None
    model: str | None = None
    fallback_model: str | None = None
    concurrency: int = 8
    cache_path: str | Path | None = None
    labels_path: str | Path | None = None
    label_field: str = "label"
    score: str | None = None
    threshold: float = 0.5
    pass_label: str = "pass"
    fail_label: str = "fail"
    base_url: str | None = None
    api_key: str | None = None
    max_retries: int = 4
    facet_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelerSpec:
    """A registered labeler: how to build it and what a user should know about it."""

    name: str
    build: Callable[[LabelerOptions], Labeler]
    summary: str
    weak: bool = False          # a verdict on the old output, not ground truth for a new one
    calls_model: bool = False   # shows progress; a run where every call failed is a backend error


def _score(options: LabelerOptions) -> Labeler:
    if not options.score:
        raise InputError("--labeler score needs --label-score NAME (the score to threshold)")
    return ScoreLabeler(options.score, options.threshold, options.pass_label, options.fail_label)


def _file(options: LabelerOptions) -> Labeler:
    if not options.labels_path:
        raise InputError("--labeler file needs --labels FILE (CSV or JSONL keyed by id or root_span_id)")
    return FileLabeler(str(options.labels_path), options.rubric, options.label_field)


def _needs_rubric(options: LabelerOptions, kind: str) -> Rubric:
    if options.rubric is None:
        raise InputError(f"--labeler {kind} needs --rubric FILE (a versioned rubric)")
    return options.rubric


def _agent(options: LabelerOptions) -> Labeler:
    return AgentLabeler(_needs_rubric(options, AgentLabeler.name))


def _llm(options: LabelerOptions) -> Labeler:
    rubric = _needs_rubric(options, LLMLabeler.name)
    client = ChatClient(base_url=options.base_url or DEFAULT_BASE_URL, api_key=options.api_key,
                        max_retries=options.max_retries)
    return LLMLabeler(rubric, model=options.model or DEFAULT_MODEL, client=client, cache_path=options.cache_path,
                      concurrency=options.concurrency, fallback_model=options.fallback_model,
                      facet_context=dict(options.facet_context))


# Order is the order a user should consider them in: real ground truth first, the weak label last.
REGISTRY: dict[str, LabelerSpec] = {spec.name: spec for spec in (
    LabelerSpec(LLMLabeler.name, _llm, "an OpenAI-compatible model with a versioned rubric", calls_model=True),
    LabelerSpec(AgentLabeler.name, _agent, "the lazy judge: a coding agent fills an export by the rubric"),
    LabelerSpec(FileLabeler.name, _file, "labels a person wrote, CSV/JSONL keyed by row id or trace id"),
    LabelerSpec(ScoreLabeler.name, _score, "WEAK: a threshold on the production score (a verdict on the old "
                "output, not ground truth for a new one)", weak=True),
)}


def labeler_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def spec_of(name: str) -> LabelerSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"--labeler: expected one of {', '.join(REGISTRY)}, got {name!r}") from None


def make_labeler(kind: str, options: LabelerOptions | None = None, **fields: Any) -> Labeler:
    """A labeler by registered name; options as a LabelerOptions or as its keyword fields."""
    spec = spec_of(kind)
    if options is None:
        options = LabelerOptions(**fields)
    elif fields:
        raise TypeError("give either options or keyword fields, not both")
    return spec.build(options)


def weak_labelers() -> frozenset[str]:
    return frozenset(name for name, spec in REGISTRY.items() if spec.weak)
