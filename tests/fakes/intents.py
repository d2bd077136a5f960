"""Generated support traces with three planted user intents plus noise (issue 16), and a
stand-in summariser/embedder for the loopback model server.

Intents: `refund` (the planted failing one: Factuality is low on most of its traces),
`password` and `shipping`; `noise` traces ask one-off unrelated things. Users phrase each
intent many ways (different verbs, products, order numbers, politeness), in the Braintrust row
shape: a root task span with chat messages, an llm child span and a tool child span. A few
traces carry a key-shaped secret in the user's text, so tests can check it never reaches the
model server.
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

INTENTS = ("refund", "password", "shipping")
SECRET = "sk-live-9f8e7d6c5b4a39281706f5e4"
PRODUCTS = ("blender", "headphones", "desk lamp", "coffee maker", "backpack", "phone case", "kettle", "monitor")
_PHRASES = {
    "refund": ["I want a refund for my {p}, order {o}.", "Can I get my money back for the {p}? It arrived broken.",
               "Please refund order {o}, the {p} is damaged.", "How do I return the {p} and get a refund?",
               "I was charged for a {p} I never received, I need a refund.",
               "The {p} stopped working after a day, refund please (order {o})."],
    "password": ["I can't log in to my account, please reset my password.", "Password reset email never arrived.",
                 "I forgot my password and I'm locked out of my account.",
                 "How do I change my password? Login keeps failing.",
                 "My account is locked after too many login attempts, help me reset the password."],
    "shipping": ["Where is my package? Order {o} with the {p} has not shipped.",
                 "Tracking for order {o} has not updated in a week, where is my delivery?",
                 "When will my {p} be delivered? The shipping estimate passed.",
                 "My package with the {p} shows delivered but I never got it.",
                 "Can you check the shipping status of order {o}?"],
}
_NOISE = ["What's the weather like in Lisbon tomorrow?", "Tell me a joke about penguins.",
          "Translate good morning into Italian.", "Who won the chess world championship in 1972?",
          "Write a haiku about autumn leaves.", "What is the capital of Australia?",
          "Recommend a science fiction novel.", "How many ounces are in a kilogram?",
          "Is it better to run in the morning or evening?", "Suggest a name for my goldfish.",
          "Explain how rainbows form.", "What rhymes with orange?"]
_SUMMARIES = {
    "refund": ["User wants a refund for a damaged {p}", "Requesting money back for a broken {p}",
               "Customer asks for a refund on a {p} order"],
    "password": ["User cannot log in on {d} and needs a password reset", "Resetting a forgotten {d} password",
                 "Locked out of the {d} account, asks for password reset"],
    "shipping": ["User asks where their {p} package is", "Checking shipping status of a {p} order",
                 "{p} delivery is late, asks about tracking"],
}
_KEYWORDS = {"refund": ("refund", "money back"), "password": ("password", "log in", "locked out"),
             "shipping": ("package", "tracking", "shipping", "delivered", "delivery")}


def planted_traces(n: int, *, seed: int = 7, start: datetime | None = None, days: float = 6.0, noise: float = 0.1,
                   secrets: int = 3, prefix: str = "t") -> tuple[list[dict[str, Any]], dict[str, str]]:
    """`n` traces (3 spans each) created over `days` before `start`; returns (rows, trace id -> intent)."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    planted: dict[str, str] = {}
    for i in range(n):
        intent = "noise" if rng.random() < noise else INTENTS[rng.randrange(3)]
        text = rng.choice(_NOISE) if intent == "noise" else rng.choice(_PHRASES[intent]).format(
            p=rng.choice(PRODUCTS), o=rng.randrange(10_000, 99_999))
        if i < secrets:
            text += f" My api key is {SECRET} if you need it."
        failing = rng.random() < (0.7 if intent == "refund" else 0.1)
        answer = "I'm not able to help with that." if failing else f"Sure, here is how we handle that: {intent} steps."
        root = f"{prefix}{seed}-{i:06d}"
        created = start - timedelta(seconds=days * 86400 * (i + 0.5) / n)
        planted[root] = intent
        messages = [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": text}]
        base = {"root_span_id": root, "created": created.isoformat()}
        rows.append({**base, "id": f"{root}-r", "span_id": root, "span_parents": [], "is_root": True,
                     "input": {"messages": messages}, "output": {"role": "assistant", "content": answer},
                     "metadata": {"channel": rng.choice(["chat", "email"])},
                     "scores": {"Factuality": 0.1 if failing else 0.9},
                     "span_attributes": {"name": "support-agent", "type": "task"}})
        rows.append({**base, "id": f"{root}-l", "span_id": f"{root}-l", "span_parents": [root], "is_root": False,
                     "input": messages, "output": [{"role": "assistant", "content": answer}],
                     "span_attributes": {"name": "chat", "type": "llm"}})
        rows.append({**base, "id": f"{root}-t", "span_id": f"{root}-t", "span_parents": [root], "is_root": False,
                     "input": {"customer": f"c{rng.randrange(1000)}"}, "output": {"orders": rng.randrange(1, 9)},
                     "span_attributes": {"name": "lookup_customer", "type": "tool"}})
    return rows, planted


def intent_of(text: str) -> str:
    """What the stand-in model reads the user's intent to be (keywords of the user turn)."""
    lowered = text.lower()
    user = lowered.split("user:", 1)[-1].split("assistant:", 1)[0]
    for intent, words in _KEYWORDS.items():
        if any(w in user for w in words):
            return intent
    return "noise"


def summarise(narrative: str) -> str:
    """The stand-in model's Task summary: one of a few paraphrases for a planted intent, and a
    one-off description for noise (a real model would describe each unrelated request)."""
    intent = intent_of(narrative)
    digest = int(hashlib.sha256(narrative.encode()).hexdigest(), 16)
    if intent == "noise":
        user = narrative.lower().split("user:", 1)[-1].split("assistant:", 1)[0]
        return "Asks: " + " ".join(re.findall(r"[a-z]+", user)[:6])
    options = _SUMMARIES[intent]
    product = next((p for p in PRODUCTS if p in narrative.lower()), "item")
    device = ("web", "mobile app", "tablet", "desktop app", "smart TV")[(digest >> 8) % 5]
    return options[digest % len(options)].format(p=product, d=device)


_SUMMARY_KEYWORDS = {"refund": ("refund", "money back"), "password": ("password", "log in", "locked out"),
                     "shipping": ("package", "shipping", "delivery", "tracking")}


def embed(text: str, dims: int = 32) -> list[float]:
    """The stand-in embedding model: what makes an embedding useful is that paraphrases of one intent
    land close together. Summaries of a planted intent get that intent's axis plus a little
    text-seeded jitter; anything else gets a text-seeded random direction (deterministic)."""
    lowered = text.lower()
    rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:12], 16))
    intent = next((i for i, words in _SUMMARY_KEYWORDS.items() if any(w in lowered for w in words)), None)
    if intent is None:
        vector = rng.normal(size=dims)
    else:
        vector = np.zeros(dims)
        vector[INTENTS.index(intent)] = 1.0
        vector += rng.normal(scale=0.12, size=dims)
    return (vector / np.linalg.norm(vector)).tolist()
