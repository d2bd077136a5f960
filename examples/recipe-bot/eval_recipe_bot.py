"""Eval for the recipe helper, an ordinary Braintrust Eval file over the curated dataset.

    flywheel eval eval_recipe_bot.py --split train --first 20
    flywheel eval eval_recipe_bot.py --split validation --trials 3 --name candidate

The agent's behaviour comes from recipe_config.yaml beside this file (read on every run), so an
edit to it is the candidate the next eval measures.
"""

from __future__ import annotations

from pathlib import Path

from braintrust import Eval
from recipe_agent import load_config, respond
from recipe_scorers import allergen_safe, on_topic

from bt_flywheel.evals.runner import local_dataset

CONFIG_PATH = Path(__file__).with_name("recipe_config.yaml")
CONFIG = load_config(CONFIG_PATH)
DATASET = "recipe-bot-allergens"


def task(input, hooks):
    return respond(input, CONFIG, trial=getattr(hooks, "trial_index", 0)).output


Eval(
    "recipe-bot",
    data=lambda: local_dataset(DATASET),
    task=task,
    scores=[allergen_safe, on_topic],
    metadata={"model": CONFIG["model"]["name"], "rules": CONFIG["rules"]},
)
