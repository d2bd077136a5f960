"""Generate production traces for the recipe helper: the agent (recipe_agent.py, with
recipe_config.yaml) answers ~300 generated requests spread over 14 days, and each request is
logged in Braintrust's span row shape: a root `task` span with the online scores, a
`parse_request` llm span and a `lookup_recipe` tool span.

About a quarter of the users state an allergy as "I'm allergic to X", which the default config
does not recognise (the planted failure: allergen_safe = 0 when the dish contains X).

    python generate_traces.py --out traces.jsonl --labels labels.jsonl [--seed 3] [--traces 300]

The labels file is the review queue's reading of every trace (keyed by root_span_id): the dish
asked for and the allergens to avoid, for the `file` labeler.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recipe_agent import ALLERGENS, CAREFUL_PATTERNS, RECIPES, find_allergens, load_config, respond  # noqa: E402
from recipe_scorers import allergen_safe, on_topic  # noqa: E402

PROJECT = "recipe-bot"
DAYS = 14
PHRASINGS = (("plain", 0.5), ("no", 0.15), ("free", 0.1), ("allergic", 0.25))
TEMPLATES = {
    "plain": ["Can you give me a recipe for {dish}?", "What do I need to make {dish} tonight?"],
    "no": ["{dish} for four please, no {a}.", "How do I make {dish} without {a}?"],
    "free": ["I need a {a}-free {dish} recipe.", "Is there a {a}-free way to do {dish}?"],
    "allergic": ["I'm allergic to {a}. How do I make {dish}?", "My son is allergic to {a}; can we still have {dish}?"],
}


def _id(*parts: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "recipe-bot|" + "|".join(map(str, parts))))


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request(rng: random.Random) -> tuple[str, str, str | None]:
    dish = rng.choice(list(RECIPES))
    phrasing = rng.choices([p for p, _ in PHRASINGS], [w for _, w in PHRASINGS])[0]
    if phrasing == "plain":
        return rng.choice(TEMPLATES["plain"]).format(dish=dish), phrasing, None
    relevant = [a for a, ings in ALLERGENS.items() if set(ings) & set(RECIPES[dish])]
    allergen = rng.choice(relevant) if relevant and rng.random() < 0.8 else rng.choice(list(ALLERGENS))
    return rng.choice(TEMPLATES[phrasing]).format(dish=dish, a=allergen), phrasing, allergen


def _trace(seed: int, index: int, start: datetime, message: str, phrasing: str, config: dict[str, Any]
           ) -> list[dict[str, Any]]:
    run = respond({"message": message}, config)
    request = {"message": message}
    scores = {"allergen_safe": allergen_safe(request, run.output), "on_topic": on_topic(request, run.output)}
    root = _id(seed, index, "root")
    end = start + timedelta(milliseconds=900)
    common = {"root_span_id": root, "project_id": PROJECT, "log_id": "g"}
    rows = [{"id": root, "span_id": root, "span_parents": None, "is_root": True, "created": _iso(start),
             "input": request, "output": run.output, "expected": None, "scores": scores,
             "metadata": {"dish": run.output["dish"], "phrasing": phrasing, "model": config["model"]["name"],
                          "channel": "app" if index % 3 else "web"},
             "metrics": {"start": start.timestamp(), "end": end.timestamp(), "tokens": 180 + len(message) // 3},
             "span_attributes": {"name": "recipe_request", "type": "task"}, **common}]
    parse, tool = _id(seed, index, "parse"), _id(seed, index, "tool")
    rows.append({"id": parse, "span_id": parse, "span_parents": [root], "is_root": False,
                 "created": _iso(start + timedelta(milliseconds=20)), "input": [{"role": "user", "content": message}],
                 "output": {"dish": run.output["dish"], "avoid": run.avoid}, "metadata": {"model": config["model"]["name"]},
                 "span_attributes": {"name": "parse_request", "type": "llm"}, **common})
    rows.append({"id": tool, "span_id": tool, "span_parents": [root], "is_root": False,
                 "created": _iso(start + timedelta(milliseconds=400)), "input": {"dish": run.output["dish"]},
                 "output": {"ingredients": RECIPES.get(run.output["dish"] or "", [])},
                 "span_attributes": {"name": "lookup_recipe", "type": "tool"}, **common})
    return rows


def generate(seed: int = 3, *, traces: int = 300, anchor: datetime | None = None,
             config: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(span rows, review labels) for `traces` requests over the 14 days before `anchor`."""
    anchor = (anchor or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    config = config or load_config()
    rng = random.Random(f"recipe-bot|{seed}")
    rows: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for index in range(traces):
        start = anchor - timedelta(minutes=rng.randint(5, DAYS * 24 * 60 - 5))
        message, phrasing, _ = _request(rng)
        rows.extend(_trace(seed, index, start, message, phrasing, config))
        avoid = find_allergens(message, CAREFUL_PATTERNS)
        dish = next((d for d in RECIPES if d in message.lower()), None)
        labels.append({"root_span_id": _id(seed, index, "root"), "label": "restricted" if avoid else "unrestricted",
                       "expected": {"dish": dish, "avoid": avoid}})
    rows.sort(key=lambda r: (r["created"], r["id"]))
    return rows, labels


def _write(path: str, rows: list[dict[str, Any]]) -> None:
    Path(path).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="span rows (JSONL)")
    parser.add_argument("--labels", help="also write review labels (JSONL) here")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--traces", type=int, default=300)
    args = parser.parse_args(argv)
    rows, labels = generate(args.seed, traces=args.traces)
    _write(args.out, rows)
    if args.labels:
        _write(args.labels, labels)
    print(f"wrote {len(rows)} spans ({args.traces} traces) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
