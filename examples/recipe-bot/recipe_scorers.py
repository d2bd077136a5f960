"""Scorers for the recipe helper, plain Braintrust-style functions (online and offline).

- `allergen_safe` (target): 0 when the recipe still contains an ingredient with an allergen the
  user ruled out, else 1. With `expected` (a curated, labeled row) the allergens come from the
  label; online they come from a careful reading of the request (every phrasing recognised).
- `on_topic` (guard): 1 when the answer is the dish the user asked for.
"""

from __future__ import annotations

from typing import Any

from recipe_agent import ALLERGENS, CAREFUL_PATTERNS, find_allergens, find_dish


def _message(input: Any) -> str:  # noqa: A002
    return str((input or {}).get("message", "")) if isinstance(input, dict) else str(input or "")


def allergen_safe(input: Any, output: Any, expected: Any = None, **_: Any) -> float:  # noqa: A002
    if isinstance(expected, dict) and "avoid" in expected:
        avoid = list(expected["avoid"])
    else:
        avoid = find_allergens(_message(input), CAREFUL_PATTERNS)
    ingredients = set((output or {}).get("ingredients") or [])
    return 0.0 if any(ing in ingredients for a in avoid for ing in ALLERGENS.get(a, [])) else 1.0


def on_topic(input: Any, output: Any, expected: Any = None, **_: Any) -> float:  # noqa: A002
    wanted = expected.get("dish") if isinstance(expected, dict) and "dish" in expected else find_dish(_message(input))
    return 1.0 if (output or {}).get("dish") == wanted else 0.0
