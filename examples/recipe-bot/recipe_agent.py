"""A small recipe helper: it reads a cooking request, picks a recipe, swaps out ingredients the
user must avoid, and replies. No network and no model: a rule-based parser whose behaviour the
config (recipe_config.yaml) drives, so a config edit changes real outputs.

The planted failure: the default `allergy_patterns` recognise "no peanuts" and "gluten-free" but
not "I'm allergic to peanuts", so those users get the allergen anyway.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).with_name("recipe_config.yaml")

RECIPES: dict[str, list[str]] = {
    "pad thai": ["rice noodles", "peanuts", "egg", "fish sauce", "lime"],
    "pesto pasta": ["pasta", "basil", "pine nuts", "parmesan", "olive oil"],
    "pancakes": ["flour", "milk", "egg", "butter", "sugar"],
    "shrimp tacos": ["corn tortillas", "shrimp", "lime", "cabbage", "chili"],
    "mac and cheese": ["pasta", "cheddar", "milk", "butter"],
    "banana bread": ["flour", "banana", "walnuts", "egg", "butter"],
    "vegetable stir fry": ["rice", "tofu", "soy sauce", "broccoli", "sesame oil"],
    "greek salad": ["tomato", "cucumber", "feta", "olives", "olive oil"],
}
# allergen -> the ingredients that contain it
ALLERGENS: dict[str, list[str]] = {
    "peanuts": ["peanuts"],
    "tree nuts": ["pine nuts", "walnuts"],
    "dairy": ["milk", "butter", "parmesan", "cheddar", "feta"],
    "eggs": ["egg"],
    "gluten": ["flour", "pasta", "soy sauce"],
    "shellfish": ["shrimp"],
    "fish": ["fish sauce"],
    "soy": ["soy sauce", "tofu"],
    "sesame": ["sesame oil"],
}
SUBSTITUTES = {"peanuts": "sunflower seeds", "pine nuts": "pumpkin seeds", "walnuts": "oats",
               "milk": "oat milk", "butter": "olive oil", "parmesan": "nutritional yeast",
               "cheddar": "cashew-free vegan cheese", "feta": "pickled radish", "egg": "flax egg",
               "flour": "rice flour", "pasta": "rice pasta", "soy sauce": "coconut aminos",
               "tofu": "chickpeas", "shrimp": "chickpeas", "fish sauce": "coconut aminos",
               "sesame oil": "olive oil"}
CAREFUL_PATTERNS = ["no {a}", "without {a}", "{a}-free", "allergic to {a}", "{a} allergy"]
_DISH_ORDER = list(RECIPES)


@dataclass
class Run:
    output: dict[str, Any]
    avoid: list[str]


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or DEFAULT_CONFIG_PATH).read_text(encoding="utf-8"))


def find_dish(message: str) -> str | None:
    text = message.lower()
    for dish in RECIPES:
        if dish in text:
            return dish
    return None


def find_allergens(message: str, patterns: list[str]) -> list[str]:
    """Allergens the message rules out, by the given phrasings ({a} = an allergen name)."""
    text = " ".join(message.lower().split())
    found = []
    for allergen in ALLERGENS:
        for pattern in patterns:
            if re.search(r"\b" + re.escape(pattern.format(a=allergen)) + r"\b", text):
                found.append(allergen)
                break
    return found


def _draw(message: str, trial: int) -> float:
    digest = hashlib.sha256(f"{message}|{trial}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF


def respond(request: dict[str, Any], config: dict[str, Any], *, trial: int = 0) -> Run:
    """Answer one request under `config`; `trial` seeds the sampling noise."""
    message = str(request.get("message", ""))
    dish = find_dish(message)
    temperature = float((config.get("model") or {}).get("temperature", 0.0))
    if dish is not None and _draw(message, trial) < temperature * 0.2:
        dish = _DISH_ORDER[(_DISH_ORDER.index(dish) + 1) % len(_DISH_ORDER)]
    avoid = find_allergens(message, list((config.get("rules") or {}).get("allergy_patterns") or []))
    if dish is None:
        return Run({"dish": None, "ingredients": [], "swapped": {},
                    "reply": "I can help with: " + ", ".join(RECIPES) + "."}, avoid)
    banned = {ing for allergen in avoid for ing in ALLERGENS[allergen]}
    ingredients, swapped = [], {}
    for ingredient in RECIPES[dish]:
        if ingredient in banned:
            swapped[ingredient] = SUBSTITUTES[ingredient]
            ingredients.append(SUBSTITUTES[ingredient])
        else:
            ingredients.append(ingredient)
    note = f" (swapped {', '.join(f'{a} for {b}' for a, b in swapped.items())})" if swapped else ""
    return Run({"dish": dish, "ingredients": ingredients, "swapped": swapped,
                "reply": f"Here is {dish}: {', '.join(ingredients)}{note}."}, avoid)
