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
            handle = stack.enter_context(gzip.GzipFile(filename=target.name, mode="wb", fileobj=raw))
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


def _trace(rng: random.Random, start: datetime) -> list[dict[str, Any]]:
    topic = rng.choice(TOPICS)
    tier = rng.choice(TIERS)
    language = rng.choice(LANGUAGES)
    model = rng.choice(MODELS)
    international = rng.random() < 0.2
    order = f"A{rng.randrange(10000, 99999)}"
    question = rng.choice(QUESTIONS[topic]).format(order=order)
    answer = ANSWERS[topic].format(order=order, detail="Refunds take 5-10 days." if "refund" in question else "")
    root_id = _uuid(rng)
    issue = "none"
    error: Any = None
    factuality = min(1.0, max(0.0, rng.gauss(0.85, 0.1)))
    helpfulness = 1.0 if rng.random() < 0.9 else 0.0

    # planted patterns
    lowered = question.lower()
    if model == "gpt-4o-mini" and topic == "billing" and ("cancel" in lowered or "refund" in lowered) \
            and rng.random() < 0.7:
        answer, helpfulness, issue = REFUSAL, 0.0, "refusal"
    tools: list[tuple[str, Any, Any]] = []
    if topic in ("shipping", "returns"):
        tool_error = None
        if international and rng.random() < 0.6:
            tool_error = f"lookup_order: upstream timeout for international order {order}"
            error = tool_error
            factuality = min(factuality, rng.uniform(0.0, 0.4))
            issue = "tool_error"
            answer = "I could not find that order. It may not exist."
        tools.append(("lookup_order", {"order_id": order, "international": international},
                      None if tool_error else {"status": "in_transit", "eta_days": rng.randint(1, 6)}))
        if tool_error:
            tools[-1] = (*tools[-1][:2], {"error": tool_error})
    if topic == "product" and rng.random() < 0.5:
        tools.append(("search_docs", {"query": question}, {"hits": rng.randint(0, 5)}))
    if language == "de":
        factuality = max(0.0, factuality - rng.uniform(0.15, 0.35))
    factuality = round(factuality, 3)
    sentiment = "negative" if issue != "none" or "broken" in lowered or "charged twice" in lowered else (
        "positive" if rng.random() < 0.3 else "neutral")

    t = start
    prompt_tokens = rng.randint(80, 900)
    completion_tokens = rng.randint(20, 300)
    latency = round(rng.uniform(0.4, 6.0), 3)
    metadata = {"topic": topic, "user_tier": tier, "language": language, "model": model,
                "international": international,
                "facets": {"sentiment": sentiment, "issues": issue, "topic": topic}}
    root = {
        "id": root_id, "span_id": root_id, "root_span_id": root_id, "span_parents": None, "is_root": True,
        "created": _iso(t),
        "input": {"messages": [{"role": "user", "content": question}]},
        "output": {"role": "assistant", "content": answer},
        "expected": None,
        "metadata": metadata,
        "scores": {"Factuality": factuality, "helpfulness": helpfulness},
        "metrics": {"start": t.timestamp(), "end": t.timestamp() + latency, "tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                    "estimated_cost": round((prompt_tokens * 0.15 + completion_tokens * 0.6) / 1e6, 8)},
        "span_attributes": {"name": "support-bot", "type": "task"},
        "tags": ["prod", topic] + (["international"] if international else []),
        "error": error,
    }
    rows = [root]
    for name, tool_input, tool_output in tools:
        t += timedelta(milliseconds=rng.randint(50, 400))
        span_id = _uuid(rng)
        rows.append(_child(span_id, root_id, t, {"name": name, "type": "tool"}, tool_input, tool_output,
                           {"tool": name}, None, tool_output.get("error") if isinstance(tool_output, dict) else None))
    t += timedelta(milliseconds=rng.randint(50, 400))
    llm_id = _uuid(rng)
    rows.append(_child(llm_id, root_id, t, {"name": "chat.completions", "type": "llm"},
                       [{"role": "system", "content": "You are a helpful support agent."},
                        {"role": "user", "content": question}],
                       [{"role": "assistant", "content": answer}],
                       {"model": model, "temperature": 0.2, "provider": "openai"}, None, None,
                       metrics={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                "tokens": prompt_tokens + completion_tokens}))
    for scorer, value in (("Factuality", factuality), ("helpfulness", helpfulness)):
        t += timedelta(milliseconds=rng.randint(20, 200))
        rows.append(_child(_uuid(rng), root_id, t, {"name": scorer, "type": "score", "purpose": "scorer"},
                           {"input": question, "output": answer}, {"score": value},
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
