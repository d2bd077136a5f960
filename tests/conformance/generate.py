"""A small deterministic store for the SQL conformance suite: project logs (root task span, an
llm span, sometimes a tool span per trace) and three experiments, in Braintrust's row shape.

Times are relative to `now` (the current UTC hour) and kept at least an hour away from the
1/7/30-day boundaries the documented queries use, so `now()` moving during a run changes nothing.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

PROJECT = "docs-demo"
EXPERIMENTS = ("exp-a", "exp-b", "exp-c")
USERS = ("user-123", "1234", "50157c3d-edd9-4287-85ee-48c119967099", "a3fe059a-e4f4-4e9f-b3e3-0da04ed1f075",
         "913b6ae1-72aa-4113-964e-e41364933a43", "user-9")
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "gpt-4")
CATEGORIES = ("support", "billing", "sales")
TAGS = ("production", "needs-review", "triage", "triaged")
QUESTIONS = ("hello, where is my order?", "Cancel my plan", "HELLO again: refund please", "What does pro cost?")


def _days_ago(i: int) -> float:
    days = (i * 7919 % 3800) / 100 + 0.3
    for boundary in (1, 7, 30):
        if abs(days - boundary) < 0.06:
            days += 0.12
    return days


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def generate(now: datetime, traces: int = 160, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """{"logs": [...], "exp-a": [...], ...}: rows per object."""
    rng = random.Random(seed)
    logs: list[dict[str, Any]] = []
    for i in range(traces):
        start = now - timedelta(days=_days_ago(i))
        root = f"t{i:04d}"
        model = MODELS[i % len(MODELS)]
        tags = [t for t in TAGS if rng.random() < 0.35]
        env = "production" if i % 3 else "staging"
        input_value: dict[str, Any] = {"question": QUESTIONS[i % len(QUESTIONS)]}
        if i % 11 == 0:
            input_value["type"] = "inferenceTranscript"
        scores = {"Factuality": round(rng.random(), 3), "helpfulness": float(rng.random() < 0.7)}
        if i % 4 == 0:
            scores["Response Quality"] = round(rng.random(), 2)
        error = "tool failed" if i % 9 == 0 else None
        duration = round(0.5 + rng.random() * 3, 3)
        epoch = start.timestamp()
        root_row: dict[str, Any] = {
            "id": f"{root}-root", "span_id": root, "root_span_id": root, "span_parents": [], "is_root": True,
            "created": _iso(start), "input": input_value, "output": f"answer {i}",
            "metadata": {"model": model, "user_id": USERS[i % len(USERS)], "category": CATEGORIES[i % 3],
                         "environment": env, "raw": json.dumps({"env": env, "n": i}), "session_id": f"s{i % 5}"},
            "tags": tags or None, "scores": scores, "error": error,
            "metrics": {"start": epoch, "end": epoch + duration},
            "span_attributes": {"name": "support-bot", "type": "task"},
        }
        if i % 3 == 0:
            root_row["facets"] = {"Task": f"user asks about {CATEGORIES[i % 3]}"}
            root_row["classifications"] = {"Task": [{"id": f"c{i % 2}", "label": ("Billing", "Account")[i % 2],
                                                     "score": round(0.5 + rng.random() / 2, 3)}]}
        prompt, completion = 200 + rng.randrange(1200), 20 + rng.randrange(400)
        llm = {
            "id": f"{root}-llm", "span_id": f"{root}-l", "root_span_id": root, "span_parents": [root],
            "is_root": False, "created": _iso(start + timedelta(seconds=1)), "input": [{"role": "user"}],
            "output": "draft", "metadata": {"model": model},
            "metrics": {"start": epoch + 0.1, "end": epoch + duration - 0.1, "prompt_tokens": prompt,
                        "completion_tokens": completion, "tokens": prompt + completion,
                        "total_tokens": prompt + completion},
            "span_attributes": {"name": "chat", "type": "llm"},
        }
        logs += [root_row, llm]
        if i % 2 == 0:
            logs.append({
                "id": f"{root}-tool", "span_id": f"{root}-t", "root_span_id": root, "span_parents": [root],
                "is_root": False, "created": _iso(start + timedelta(seconds=2)), "input": {"order": i},
                "output": None if error else {"status": "shipped"}, "error": error,
                "metrics": {"start": epoch + 0.2, "end": epoch + 0.4},
                "span_attributes": {"name": "lookup_order", "type": "tool"},
            })
    out: dict[str, list[dict[str, Any]]] = {"logs": logs}
    for e, name in enumerate(EXPERIMENTS):
        rows = []
        for c in range(12):
            ts = now - timedelta(days=3 + e, minutes=c)
            rows.append({"id": f"{name}-{c}", "span_id": f"{name}-{c}", "root_span_id": f"{name}-{c}",
                         "span_parents": [], "is_root": True, "created": _iso(ts), "input": {"case": c},
                         "output": "x", "scores": {"accuracy": round(rng.random(), 3),
                                                    "Factuality": None if c % 5 == 0 else round(rng.random(), 3)},
                         "metrics": {"start": ts.timestamp(), "end": ts.timestamp() + 1 + c / 10,
                                     "tokens": 100 + c},
                         "span_attributes": {"name": "eval", "type": "eval"}})
        out[name] = rows
    return out
