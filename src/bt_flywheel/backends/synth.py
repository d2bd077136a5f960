"""Realistic synthetic production traces in Braintrust's log row shape (DESIGN.md §4).

Each trace is a root `task` span (the support bot answering one user message) with children:
one `llm` span, zero to two `tool` spans and one `score` span per online scorer. The root
carries the conversation, facets in `metadata` and the rolled-up `scores`.

Planted failure patterns (what Discover should find):
- refusal: billing questions about *cancel*/*refund* on the `gpt-4o-mini` model are often refused
  ("I can't help with that"), so `helpfulness` is 0 and the `issues` facet says "refusal";
- tool errors: `lookup_order` fails for international orders (`error` set on the tool span and
  the root), `Factuality` drops;
- language: German (`de`) conversations score lower on `Factuality`.

Deterministic: the same (seed, now, spans) gives byte-identical output. `now` defaults to the
current UTC hour so data sits in the last 30 days whenever it is generated.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bt_flywheel.core.fileio import atomic_output

SCORERS = ("Factuality", "helpfulness")
TOPICS = ("billing", "shipping", "account", "product", "returns")
TIERS = ("free", "pro", "enterprise")
LANGUAGES = ("en", "en", "en", "en", "es", "de", "fr")
MODELS = ("gpt-4o", "gpt-4o-mini")
QUESTIONS: dict[str, tuple[str, ...]] = {
    "billing": ("How do I cancel my subscription?", "Can I get a refund for last month?",
                "Why was I charged twice?", "How do I update my card?"),
    "shipping": ("Where is my order {order}?", "Can you ship to Canada?", "My package {order} is late"),
    "account": ("I forgot my password", "How do I delete my account?", "Change my email address"),
    "product": ("Does the pro plan include API access?", "Is there a dark mode?", "What is the storage limit?"),
    "returns": ("How do I return order {order}?", "The item arrived broken", "Exchange for a larger size"),
}
ANSWERS: dict[str, str] = {
    "billing": "You can manage billing under Settings > Billing. {detail}",
    "shipping": "Order {order} is in transit and should arrive within 3 business days.",
    "account": "Use the 'Forgot password' link on the sign-in page to reset it.",
    "product": "Yes, the pro plan includes API access with 10k requests per day.",
    "returns": "Start a return from Orders > Return item; refunds post within 5 days.",
}
REFUSAL = "I'm sorry, but I can't help with that request."


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def default_now() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def generate_traces(traces: int, *, seed: int = 0, now: datetime | None = None, days: int = 30
                    ) -> Iterator[list[dict[str, Any]]]:
    """Yield one list of span rows per trace (root first)."""
    rng = random.Random(seed)
    now = now or default_now()
    span_seconds = days * 86400
    for _ in range(traces):
        start = now - timedelta(seconds=rng.random() * span_seconds)
        yield _trace(rng, start)


def generate_spans(spans: int, *, seed: int = 0, now: datetime | None = None, days: int = 30
                   ) -> Iterator[dict[str, Any]]:
    """Yield exactly `spans` rows (the last trace may be cut short)."""
    left = spans
    for trace in generate_traces(spans, seed=seed, now=now, days=days):
        for row in trace:
            if left <= 0:
                return
            yield row
            left -= 1


def write_jsonl(path: str | Path, spans: int, *, seed: int = 0, now: datetime | None = None,
                days: int = 30) -> int:
    """Stream `spans` rows to a JSONL file (gzip when the name ends in .gz); returns the count."""
    target = Path(path)
    count = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    # atomic: an interrupted run leaves any previous file as it was, never a truncated one
    with atomic_output(target) as raw, ExitStack() as stack:
        handle = raw
        if target.name.endswith(".gz"):  # closing the GzipFile writes its trailer, not closing `raw`
            handle = stack.enter_context(gzip.GzipFile(filename=target.name, mode="wb", fileobj=raw, mtime=0))
        buffer: list[str] = []
        for row in generate_spans(spans, seed=seed, now=now, days=days):
            buffer.append(dumps(row))
            count += 1
            if len(buffer) >= 5000:
                handle.write(("\n".join(buffer) + "\n").encode("utf-8"))
                buffer.clear()
        if buffer:
            handle.write(("\n".join(buffer) + "\n").encode("utf-8"))
    return count


@dataclass
class _Facts:
    """What one trace is about; the planted patterns below adjust it before the spans are built."""

    topic: str
    tier: str
    language: str
    model: str
    international: bool
    order: str
    question: str
    answer: str
    root_id: str
    factuality: float
    helpfulness: float
    issue: str = "none"
    error: Any = None
    tools: list[tuple[str, Any, Any]] = field(default_factory=list)
    sentiment: str = "neutral"


# Every step draws from the one seeded rng, so the steps' order (and the order of draws inside
# each) is part of the output: changing it changes every trace after the first.
def _trace(rng: random.Random, start: datetime) -> list[dict[str, Any]]:
    facts = _draw_facts(rng)
    _plant_refusal(rng, facts)
    _plant_tool_calls(rng, facts)
    _plant_language_gap(rng, facts)
    facts.factuality = round(facts.factuality, 3)
    facts.sentiment = _sentiment(rng, facts)
    prompt_tokens, completion_tokens = rng.randint(80, 900), rng.randint(20, 300)
    root = _root_span(facts, start, prompt_tokens, completion_tokens, latency=round(rng.uniform(0.4, 6.0), 3))
    return [root, *_child_spans(rng, facts, start, prompt_tokens, completion_tokens)]


def _draw_facts(rng: random.Random) -> _Facts:
    topic = rng.choice(TOPICS)
    tier = rng.choice(TIERS)
    language = rng.choice(LANGUAGES)
    model = rng.choice(MODELS)
    international = rng.random() < 0.2
    order = f"A{rng.randrange(10000, 99999)}"
    question = rng.choice(QUESTIONS[topic]).format(order=order)
    answer = ANSWERS[topic].format(order=order, detail="Refunds take 5-10 days." if "refund" in question else "")
    return _Facts(topic=topic, tier=tier, language=language, model=model, international=international,
                  order=order, question=question, answer=answer, root_id=_uuid(rng),
                  factuality=min(1.0, max(0.0, rng.gauss(0.85, 0.1))),
                  helpfulness=1.0 if rng.random() < 0.9 else 0.0)


def _plant_refusal(rng: random.Random, f: _Facts) -> None:
    lowered = f.question.lower()
    if f.model == "gpt-4o-mini" and f.topic == "billing" and ("cancel" in lowered or "refund" in lowered) \
            and rng.random() < 0.7:
        f.answer, f.helpfulness, f.issue = REFUSAL, 0.0, "refusal"


def _plant_tool_calls(rng: random.Random, f: _Facts) -> None:
    """`lookup_order` for shipping/returns (failing on most international orders), `search_docs`
    on half the product questions."""
    if f.topic in ("shipping", "returns"):
        tool_error = None
        if f.international and rng.random() < 0.6:
            tool_error = f"lookup_order: upstream timeout for international order {f.order}"
            f.error = tool_error
            f.factuality = min(f.factuality, rng.uniform(0.0, 0.4))
            f.issue = "tool_error"
            f.answer = "I could not find that order. It may not exist."
        output = {"error": tool_error} if tool_error else {"status": "in_transit", "eta_days": rng.randint(1, 6)}
        f.tools.append(("lookup_order", {"order_id": f.order, "international": f.international}, output))
    if f.topic == "product" and rng.random() < 0.5:
        f.tools.append(("search_docs", {"query": f.question}, {"hits": rng.randint(0, 5)}))


def _plant_language_gap(rng: random.Random, f: _Facts) -> None:
    if f.language == "de":
        f.factuality = max(0.0, f.factuality - rng.uniform(0.15, 0.35))


def _sentiment(rng: random.Random, f: _Facts) -> str:
    lowered = f.question.lower()
    if f.issue != "none" or "broken" in lowered or "charged twice" in lowered:
        return "negative"
    return "positive" if rng.random() < 0.3 else "neutral"


def _root_span(f: _Facts, t: datetime, prompt_tokens: int, completion_tokens: int, *,
               latency: float) -> dict[str, Any]:
    metadata = {"topic": f.topic, "user_tier": f.tier, "language": f.language, "model": f.model,
                "international": f.international,
                "facets": {"sentiment": f.sentiment, "issues": f.issue, "topic": f.topic}}
    return {
        "id": f.root_id, "span_id": f.root_id, "root_span_id": f.root_id, "span_parents": None, "is_root": True,
        "created": _iso(t),
        "input": {"messages": [{"role": "user", "content": f.question}]},
        "output": {"role": "assistant", "content": f.answer},
        "expected": None,
        "metadata": metadata,
        "scores": {"Factuality": f.factuality, "helpfulness": f.helpfulness},
        "metrics": {"start": t.timestamp(), "end": t.timestamp() + latency, "tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                    "estimated_cost": round((prompt_tokens * 0.15 + completion_tokens * 0.6) / 1e6, 8)},
        "span_attributes": {"name": "support-bot", "type": "task"},
        "tags": ["prod", f.topic] + (["international"] if f.international else []),
        "error": f.error,
    }


def _child_spans(rng: random.Random, f: _Facts, t: datetime, prompt_tokens: int,
                 completion_tokens: int) -> list[dict[str, Any]]:
    """Tool spans, then the LLM call, then one span per online scorer, each a little later."""
    rows = []
    for name, tool_input, tool_output in f.tools:
        t += timedelta(milliseconds=rng.randint(50, 400))
        rows.append(_child(_uuid(rng), f.root_id, t, {"name": name, "type": "tool"}, tool_input, tool_output,
                           {"tool": name}, None, tool_output.get("error")))
    t += timedelta(milliseconds=rng.randint(50, 400))
    rows.append(_child(_uuid(rng), f.root_id, t, {"name": "chat.completions", "type": "llm"},
                       [{"role": "system", "content": "You are a helpful support agent."},
                        {"role": "user", "content": f.question}],
                       [{"role": "assistant", "content": f.answer}],
                       {"model": f.model, "temperature": 0.2, "provider": "openai"}, None, None,
                       metrics={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                "tokens": prompt_tokens + completion_tokens}))
    for scorer, value in (("Factuality", f.factuality), ("helpfulness", f.helpfulness)):
        t += timedelta(milliseconds=rng.randint(20, 200))
        rows.append(_child(_uuid(rng), f.root_id, t, {"name": scorer, "type": "score", "purpose": "scorer"},
                           {"input": f.question, "output": f.answer}, {"score": value},
                           {"scorer": scorer}, {scorer: value}, None))
    return rows


def _child(span_id: str, root_id: str, t: datetime, attrs: dict[str, Any], input_: Any, output: Any,
           metadata: dict[str, Any], scores: dict[str, Any] | None, error: Any, *,
           metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": span_id, "span_id": span_id, "root_span_id": root_id, "span_parents": [root_id], "is_root": False,
        "created": _iso(t), "input": input_, "output": output, "expected": None, "metadata": metadata,
        "scores": scores, "metrics": {"start": t.timestamp(), **(metrics or {})}, "span_attributes": attrs,
        "tags": None, "error": error,
    }
