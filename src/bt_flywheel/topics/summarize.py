"""Step 2, facet summaries: one short text per (trace, facet).

Three writers, recorded in provenance as `writer`:
- `llm`: an OpenAI-compatible model through the llm labeler (label/llm.py): its client's retries
  and backoff, its bounded concurrency and its resumable cache keyed by (trace, facet prompt
  version, model). The facet prompt is a free-text rubric, so the model's `expected` is the
  summary and "none" means the facet does not apply (no classification, as in Braintrust).
- `agent`: the lazy facet writer: pending traces go to a label export (`flywheel label export`'s
  format); the coding agent writes each summary as `expected`; `flywheel label apply` merges it;
  the next `topics run` reads the applied summaries.
- `fallback`: no model and no agent: the summary is the user's request text (step 1's
  `request`), deterministic and offline. It clusters requests, not intents, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import atomic_write_jsonl
from bt_flywheel.dataset.facets import is_none_value
from bt_flywheel.label.base import Rubric, is_labeled, mark_pending
from bt_flywheel.topics.narrative import Narrative

WRITERS = ("llm", "agent", "fallback")
FALLBACK_SOURCE = "fallback:request_text"
BUILTIN_FACETS = {
    "Task": "What is the user trying to accomplish? Answer with the user's intent or goal in a short phrase "
            "(3 to 10 words), e.g. \"Requesting a refund for a damaged order\".",
    "Sentiment": "What is the user's emotional tone? Answer with one word in capitals: POSITIVE, NEUTRAL, "
                 "NEGATIVE, FRUSTRATED or MIXED.",
    "Issues": "What went wrong in the agent's behaviour or response, if anything? Answer with a short phrase "
              "(e.g. \"Tool call failed\", \"Incomplete answer\"), or none when nothing went wrong.",
}
PROMPT_VERSION = "v1"


@dataclass(frozen=True)
class Facet:
    name: str
    instructions: str

    @property
    def rubric(self) -> Rubric:
        text = (f"Facet {self.name}. Read the trace narrative (the row's input) and summarise it through this "
                f"lens only. {self.instructions} Write the summary as `expected`; write none when the trace "
                "says nothing about it.")
        return Rubric(version=f"topics-{self.name}-{PROMPT_VERSION}", text=text)


def facet_named(name: str, instructions: str | None = None) -> Facet:
    """A built-in facet (Task, Sentiment, Issues; case-insensitive) or a custom one."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"--facet: {name!r} is not a facet name (letters, digits, - and _)")
    for builtin, text in BUILTIN_FACETS.items():
        if builtin.lower() == name.lower() and instructions is None:
            return Facet(builtin, text)
    return Facet(name, instructions or f"Describe the trace's {name} in a short phrase (3 to 10 words).")


@dataclass
class Summaries:
    """What step 2 produced for one facet: summaries by trace id, the writer, and what is left."""

    texts: dict[str, str]
    writer: str                      # llm | agent | fallback
    model: str | None = None         # the model that wrote them (llm), or the agent's labeler_model
    pending: list[str] | None = None  # agent: trace ids still without a summary
    export_path: str | None = None
    failed: dict[str, str] | None = None
    calls: int = 0

    @property
    def source(self) -> str:
        if self.writer == "fallback":
            return FALLBACK_SOURCE
        return f"{self.writer}:{self.model}" if self.model else self.writer


def fallback_summaries(narratives: list[Narrative]) -> Summaries:
    return Summaries({n.trace_id: n.request for n in narratives if n.request and not is_none_value(n.request)},
                     "fallback")


def llm_summaries(narratives: list[Narrative], facet: Facet, *, model: str, base_url: str, api_key: str | None,
                  cache_path: str | Path, concurrency: int = 8, max_retries: int = 4,
                  progress: Any = None) -> Summaries:
    from bt_flywheel.label.llm import ChatClient, LLMLabeler

    client = ChatClient(base_url=base_url, api_key=api_key, max_retries=max_retries)
    labeler = LLMLabeler(rubric=facet.rubric, model=model, client=client, cache_path=cache_path,
                         concurrency=concurrency)
    rows = [{"id": n.trace_id, "input": n.text} for n in narratives]
    run = labeler.label(rows, progress=progress)
    texts = {row_id: str(label.expected) for row_id, label in run.labels.items()}
    used = {label.labeler_model for label in run.labels.values() if label.labeler_model}
    return Summaries(texts, "llm", model=sorted(used)[0] if len(used) == 1 else model,
                     failed=dict(run.failed), calls=run.calls)


def agent_summaries(narratives: list[Narrative], facet: Facet, *, out_dir: str | Path) -> Summaries:
    """Read the summaries already applied to this facet's rows file; export the traces still pending."""
    from bt_flywheel.label.agent import export_pending, read_rows

    out = Path(out_dir)
    rows_path = out / f"facet_rows_{facet.name}.jsonl"
    export_path = out / f"facet_export_{facet.name}.json"
    stored = {r["id"]: r for r in read_rows(rows_path)} if rows_path.exists() else {}
    rows = []
    for narrative in narrative_order(narratives):
        row = stored.get(narrative.trace_id)
        if row is None or (row.get("input") != narrative.text and not is_labeled(row)):
            row = mark_pending({"id": narrative.trace_id, "input": narrative.text, "expected": None,
                                "metadata": {"source": {"trace_id": narrative.trace_id},
                                             "curation": {"facet": facet.name}}},
                               rubric_version=facet.rubric.version)
        rows.append(row)
    rows += [r for key, r in stored.items() if key not in {n.trace_id for n in narratives}]
    atomic_write_jsonl(rows_path, rows)
    texts = {r["id"]: str(r.get("expected")) for r in rows if is_labeled(r)}
    pending = [n.trace_id for n in narratives if n.trace_id not in texts]
    models = {((r.get("metadata") or {}).get("label") or {}).get("labeler_model") for r in rows if is_labeled(r)}
    models.discard(None)
    if pending:
        export_pending(rows_path, facet.rubric, export_path)
    return Summaries(texts, "agent", model=sorted(models)[0] if len(models) == 1 else None,
                     pending=pending, export_path=str(export_path) if pending else None)


def narrative_order(narratives: list[Narrative]) -> list[Narrative]:
    return sorted(narratives, key=lambda n: (str(n.created or ""), n.trace_id))


def usable(summaries: Summaries) -> dict[str, str]:
    """Summaries that say something (the "none" ones get no classification)."""
    return {k: v for k, v in summaries.texts.items() if not is_none_value(v)}


SummaryWriter = Callable[[list[Narrative], Facet], Summaries]
