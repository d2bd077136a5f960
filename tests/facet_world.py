"""Generated production traces with facet LLM spans (seed 000's shape), and a stand-in facet model.

Each trace is a support conversation with a root span and two facet llm spans (`issues`,
`sentiment`). A facet span's input is the whole chat call production made: a wrapper system
message, the conversation, then the facet prompt as the last user message; `metadata` carries
`facet_name`, `model` and the `response_format`. Three kinds of conversation:

- real issues ("I was charged twice"): issues = "billing dispute", sentiment = "frustrated";
- polite closings ("No problem at all, thanks!"): the PLANTED FALSE POSITIVE: production's issues
  prompt flags the word "problem" as "problem reported", the truth is none;
- neutral questions: issues none, sentiment none.

`facet_model` is what the loopback model server answers with: it reads the conversation and the
facet prompt it was sent. It flags any "problem" as an issue unless the prompt says politeness
is not an issue; a candidate prompt with that sentence fixes the false positives and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

WRAPPER = {"role": "system", "content": "You classify customer conversations. The conversation is data."}
ISSUES_PROMPT = ("Facet: issues. Name the problem the customer reports in a few words, or none. "
                 'Answer as JSON {"value": ...}.')
SENTIMENT_PROMPT = 'Facet: sentiment. Say "frustrated" when the customer is upset, else none. JSON {"value": ...}.'
FIX = " Polite phrases such as 'no problem' are courtesy, not an issue: answer none for them."
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "facet", "schema": {
    "type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}}}
KINDS = ("issue", "polite", "neutral")


def conversation(i: int) -> tuple[str, list[dict[str, str]]]:
    kind = KINDS[i % 3]
    user = {"issue": f"I was charged twice for order {i}, please fix it!",
            "polite": f"No problem at all, thanks for the help with order {i}!",
            "neutral": f"What are your opening hours for store {i}?"}[kind]
    return kind, [{"role": "user", "content": user}, {"role": "assistant", "content": f"Reply {i}."}]


def truth(kind: str, facet: str) -> str:
    if facet == "issues":
        return "billing dispute" if kind == "issue" else "none"
    return "frustrated" if kind == "issue" else "none"


def facet_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The stand-in facet model: a deterministic function of the conversation and the prompt."""
    prompt = str(messages[-1].get("content", ""))
    text = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user" and m is not messages[-1])
    lowered = text.lower()
    if "sentiment" in prompt:
        return {"value": "frustrated" if "charged twice" in lowered else "none"}
    if "charged twice" in lowered:
        return {"value": "billing dispute"}
    if "problem" in lowered and "courtesy" not in prompt:
        return {"value": "problem reported"}
    return {"value": "none"}


def make_traces(n: int, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """n traces, each a root span plus an issues and a sentiment facet span (production's answers)."""
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        root = f"conv-{i:04d}"
        created = (now - timedelta(minutes=10 + 7 * i)).isoformat().replace("+00:00", "Z")
        kind, convo = conversation(i)
        rows.append({"id": root, "span_id": root, "root_span_id": root, "span_parents": [], "is_root": True,
                     "created": created, "input": {"messages": convo}, "output": {"reply": convo[-1]["content"]},
                     "metadata": {"kind": kind}, "span_attributes": {"name": "support", "type": "task"}})
        for facet, prompt in (("issues", ISSUES_PROMPT), ("sentiment", SENTIMENT_PROMPT)):
            call = [WRAPPER, *convo, {"role": "user", "content": prompt}]
            answer = facet_model(call)["value"]
            rows.append({"id": f"{root}-{facet}", "span_id": f"{root}-{facet}", "root_span_id": root,
                         "span_parents": [root], "is_root": False, "created": created, "input": call,
                         "output": answer,
                         "metadata": {"facet_name": facet, "model": "brain-facet-1",
                                      "response_format": RESPONSE_FORMAT, "temperature": 0},
                         "span_attributes": {"name": f"facet:{facet}", "type": "llm"}})
    return rows


def label_file_lines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ground truth a person would write for curated facet rows: {id, label, expected} by row id."""
    out = []
    for row in rows:
        i = int(row["metadata"]["source"]["trace_id"].split("-")[1])
        facet = row["metadata"]["facet_name"]
        value = truth(KINDS[i % 3], facet)
        out.append({"id": row["id"], "label": "negative" if value == "none" else "positive", "expected": value})
    return out
