"""`flywheel facets bootstrap`: facet_definitions.yaml from the facet LLM spans production logged.

A production facet call is one chat completion: fixed wrapper messages, then the conversation
being classified, then the facet prompt (suffix messages); the span logs them all as `input`,
the model under `metadata.model`, the response format under `metadata.response_format`, and the
facet's name under `metadata.facet_name` (or `--name-path`). Per facet we read its latest spans,
take the messages every span starts with as the wrapper and the messages every span ends with
as the suffix (what varies in between is the conversation), and write one entry per facet with
the span filter and value path `flywheel curate --strategy facet` needs and the `captured`
counts a facet eval cuts conversations with.

With one span only there is nothing to compare: leading system messages are the wrapper and the
last message is the suffix when it is not the assistant's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import InputError
from bt_flywheel.core.fileio import atomic_write_text
from bt_flywheel.core.sqltext import sql_string
from bt_flywheel.dataset.facets import FacetDefinition, FacetDefinitions, sql_path

Runner = Callable[[str], list[dict[str, Any]]]
DEFAULT_NAME_PATH = "metadata.facet_name"
LLM_FILTER = "span_attributes.type = 'llm'"


def facet_spans_query(project: str, *, name_path: str = DEFAULT_NAME_PATH, window_days: int = 30,
                      where: str | None = None, limit: int = 5000) -> str:
    """The SQL that finds facet LLM spans (latest first)."""
    name = sql_path(name_path)
    conditions = [LLM_FILTER, f"{name} IS NOT NULL", f"created >= NOW() - INTERVAL {int(window_days)} DAY"]
    if where:
        conditions.append(f"({where})")
    return (f"SELECT span_id, created, input, metadata, {name} AS facet_name FROM project_logs({sql_string(project)}) "
            f"WHERE {' AND '.join(conditions)} ORDER BY created DESC LIMIT {int(limit)}")


def messages_of(value: Any) -> list[dict[str, Any]] | None:
    """A chat call's message list from a span input (a list of messages, or {messages: [...]})."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    return None


def _common_prefix(calls: Sequence[list[dict[str, Any]]]) -> int:
    n = 0
    while all(len(c) > n for c in calls) and all(c[n] == calls[0][n] for c in calls):
        n += 1
    return n


def _common_suffix(calls: Sequence[list[dict[str, Any]]], prefix: int) -> int:
    n = 0
    while all(len(c) - prefix > n + 1 for c in calls) and all(c[-1 - n] == calls[0][-1 - n] for c in calls):
        n += 1
    return n


def split_calls(calls: Sequence[list[dict[str, Any]]]) -> tuple[int, int]:
    """(wrapper messages, suffix messages) every call shares; at least one message is conversation."""
    if len(calls) == 1:
        call = calls[0]
        prefix = 0
        while prefix < len(call) - 1 and call[prefix].get("role") == "system":
            prefix += 1
        suffix = 1 if len(call) - prefix > 1 and call[-1].get("role") != "assistant" else 0
        return prefix, suffix
    prefix = _common_prefix(calls)
    if all(len(c) == prefix for c in calls):  # identical calls: keep the last message as the conversation
        prefix -= 1
    return prefix, _common_suffix(calls, prefix)


def _prompt_text(messages: Sequence[dict[str, Any]]) -> str:
    parts = [m.get("content") for m in messages]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p.strip())


def facet_entry(name: str, spans: Sequence[dict[str, Any]], *, name_path: str, project: str) -> FacetDefinition:
    """One facet_definitions.yaml entry from that facet's spans (latest first)."""
    calls = [m for m in (messages_of(s.get("input")) for s in spans) if m]
    if not calls:
        raise InputError(f"facet {name!r}: none of its {len(spans)} llm span(s) has chat messages as input",
                         hint="a facet span's input must be the message list sent to the model")
    prefix, suffix = split_calls(calls)
    latest = calls[0]
    metadata = [s.get("metadata") or {} for s in spans]
    models = Counter(str(m["model"]) for m in metadata if m.get("model"))
    formats = [m.get("response_format") for m in metadata if isinstance(m.get("response_format"), dict)]
    created = sorted(str(s["created"]) for s in spans if s.get("created"))
    suffix_messages = latest[len(latest) - suffix:] if suffix else []
    return FacetDefinition(
        name=name, description=f"captured from {len(calls)} production span(s)",
        prompt=_prompt_text(suffix_messages) or _prompt_text(latest[:prefix]),
        messages=latest[:prefix], suffix_messages=suffix_messages,
        span_filter=f"{LLM_FILTER} AND {sql_path(name_path)} = {sql_string(name)}", value_path="output",
        input_from="span",
        captured={"spans": len(calls), "prefix_messages": prefix, "suffix_messages": suffix,
                  "first_seen": created[0] if created else None,
                  "last_seen": created[-1] if created else None, "project": project},
        model=models.most_common(1)[0][0] if models else "", output_schema=formats[0] if formats else None)


def bootstrap_facets(run: Runner, *, project: str, name_path: str = DEFAULT_NAME_PATH, window_days: int = 30,
                     where: str | None = None, sample: int = 50) -> FacetDefinitions:
    """The facet definitions document: one entry per facet name seen, in name order."""
    if sample < 1:
        raise InputError(f"--sample: expected a positive integer, got {sample}")
    by_facet: dict[str, list[dict[str, Any]]] = {}
    for span in run(facet_spans_query(project, name_path=name_path, window_days=window_days, where=where)):
        name = span.get("facet_name")
        if isinstance(name, str) and name.strip():
            group = by_facet.setdefault(name.strip(), [])
            if len(group) < sample:
                group.append(span)
    if not by_facet:
        raise InputError(f"project {project!r}: no llm span with {name_path} in the last {window_days} days",
                         hint="widen --window-days, or point --name-path at where the facet name is logged")
    return FacetDefinitions(version=1, facets=tuple(facet_entry(name, spans, name_path=name_path, project=project)
                                                    for name, spans in sorted(by_facet.items())))


def write_facet_definitions(document: FacetDefinitions, out: str | Path) -> Path:
    """Validate against schemas/facet-definitions.schema.json and write YAML atomically."""
    import yaml

    data = document.to_dict()
    try:
        FacetDefinitions.from_dict(data, source=str(out))
    except InputError as exc:
        raise InputError(f"{out}: the bootstrapped definitions do not validate: "
                         f"{exc.message.removeprefix(f'{out}: ')}") from None
    header = ("# Written by `flywheel facets bootstrap` from captured production facet calls.\n"
              "# Edit a facet's suffix_messages (its prompt) on train; measure on validation once per edit.\n")
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    path = Path(out)
    atomic_write_text(path, text)
    return path
