"""Step 1, preprocessing: one readable, bounded narrative per trace.

The root span comes first, then its descendants in time order; each span contributes a header
(`[type name]`) and its input, output and error, rendered as chat turns when they are messages
(OpenAI-style role/content, as Braintrust's Thread preprocessor reads them) and as compact JSON
otherwise. Every part and the whole text have a length bound, and the text is redacted here, so
nothing that leaves the machine later (facet prompts, embedding requests) carries a secret.

`request_text` is the user's request alone: the deterministic facet fallback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bt_flywheel.core.redact import redact_obj

DEFAULT_MAX_CHARS = 4000
PART_CHARS = 600
_REQUEST_KEYS = ("question", "query", "message", "prompt", "request", "user_input", "input", "text", "content")
_MESSAGE_WRAPPERS = ("messages", "prompt", "input", "output", "choices", "result", "response", "message")


@dataclass(frozen=True)
class Narrative:
    trace_id: str            # root_span_id
    row_id: str              # the root span's row id (where facets and classifications are stored)
    created: str | None
    text: str                # bounded and redacted
    request: str             # the user's request text (bounded and redacted), "" when none


def build_narrative(spans: list[dict[str, Any]], *, max_chars: int = DEFAULT_MAX_CHARS) -> Narrative:
    """One trace's spans (any order; exactly one root expected) -> its narrative."""
    root = next((s for s in spans if s.get("is_root") or not s.get("span_parents")), spans[0])
    others = sorted((s for s in spans if s is not root), key=lambda s: (str(s.get("created") or ""), s["id"]))
    headers: list[str] = []
    fields: list[tuple[int, str]] = []   # (span index, "label: text")
    for span in [root, *others]:
        attrs = span.get("span_attributes") or {}
        if attrs.get("type") == "score":
            continue  # scorer spans judge the trace; they are not part of what happened
        headers.append(f"[{attrs.get('type') or 'span'} {attrs.get('name') or ''}]".replace(" ]", "]"))
        for label in ("input", "output", "error"):
            text = render(span.get(label), limit=4 * PART_CHARS)
            if text:
                fields.append((len(headers) - 1, f"{label}: {text}"))
    # Redact first (one pass per trace), clip after: a clip never leaves half a key unrecognised.
    # Texts were cut at 4 x PART_CHARS before redaction; no key spans that far into the kept part.
    redacted = redact_obj([text for _, text in fields] + [request_text(root, others)[: 4 * PART_CHARS]])
    parts: dict[int, list[str]] = {}
    for (index, _), text in zip(fields, redacted, strict=False):
        parts.setdefault(index, []).append(_clip(text, PART_CHARS))
    body = "\n\n".join(headers[i] + "\n" + "\n".join(lines) for i, lines in parts.items())
    return Narrative(trace_id=str(root.get("root_span_id") or root["id"]), row_id=root["id"],
                     created=root.get("created"), text=_clip(body, max_chars), request=_clip(redacted[-1], PART_CHARS))


def build_narratives(spans: Iterable[dict[str, Any]], *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Narrative]:
    """Group spans by root_span_id and build each trace's narrative (traces without a root are skipped)."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(str(span.get("root_span_id") or span["id"]), []).append(span)
    out = []
    for members in traces.values():
        if any(s.get("is_root") for s in members):
            out.append(build_narrative(members, max_chars=max_chars))
    return out


def render(value: Any, limit: int = PART_CHARS) -> str:
    """A span field as text (not yet redacted): chat turns for message lists, the string itself,
    else compact JSON."""
    if value is None or value == "" or value == [] or value == {}:
        return ""
    turns = _messages(value)
    if turns:
        text = " | ".join(f"{role}: {content}" for role, content in turns)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return _clip(" ".join(text.split()), limit)


def request_text(root: dict[str, Any], others: list[dict[str, Any]] | None = None) -> str:
    """The user's request: the last user turn of the root input (or of the first llm span), else the
    first string under a usual key (question, query, message, prompt, ...), else the root input."""
    for span in [root, *(others or [])]:
        turns = [content for role, content in _messages(span.get("input")) if role == "user"]
        if turns:
            return " ".join(turns[-1].split())
    value = root.get("input")
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):
        for key in _REQUEST_KEYS:
            if isinstance(value.get(key), str) and value[key].strip():
                return " ".join(value[key].split())
    return render(value)


def _messages(value: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(role, content) pairs of an OpenAI-style message list, also under the usual wrapper keys."""
    if depth > 3:
        return []
    if isinstance(value, dict):
        if isinstance(value.get("role"), str) and "content" in value:
            return [(value["role"], _content_text(value["content"]))]
        for key in _MESSAGE_WRAPPERS:
            if key in value:
                found = _messages(value[key], depth + 1)
                if found:
                    return found
        return []
    if isinstance(value, list) and value:
        pairs: list[tuple[str, str]] = []
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("role"), str):
                pairs.append((item["role"], _content_text(item.get("content"))))
            elif isinstance(item, dict) and "message" in item:  # choices[i].message
                pairs += _messages(item["message"], depth + 1)
        return [(r, c) for r, c in pairs if c]
    return []


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text")) for p in content if isinstance(p, dict) and p.get("text"))
    return "" if content is None else json.dumps(content, ensure_ascii=False, default=str)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
