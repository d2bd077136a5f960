"""What "better" means for a classifier or facet (seed 000): the --optimize choice.

Before editing a facet prompt, decide which error matters more:

| --optimize | target (must improve)    | guards (must not get worse)              |
| ---------- | ------------------------ | ---------------------------------------- |
| fp         | negative_specificity     | positive_recall                          |
| fn         | positive_recall          | negative_specificity                     |
| balanced   | binary_decision_match    | positive_recall, negative_specificity    |

`negative_specificity` is the share of true negatives the classifier leaves alone, so fewer
false positives raise it; `positive_recall` is the share of true positives it catches, so fewer
false negatives raise it. The guard is the opposite error direction: a prompt that stops
flagging anything has perfect specificity and is not an improvement. Balanced is the default
when nobody says which error matters more. The names are the scores of
`evals.scorers.binary_classification_scores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bt_flywheel.core.errors import InputError


@dataclass(frozen=True)
class Objective:
    name: str
    target: str
    guards: tuple[str, ...]
    meaning: str


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("fp", "negative_specificity", ("positive_recall",), "minimize false positives (precision)"),
    Objective("fn", "positive_recall", ("negative_specificity",), "minimize false negatives (recall)"),
    Objective("balanced", "binary_decision_match", ("positive_recall", "negative_specificity"),
              "fewer errors of either kind, favouring neither"),
)}
DEFAULT_OBJECTIVE = "balanced"


def target_and_guards(optimize: str | None, target: str | None, guards: Sequence[str] = ()
                      ) -> tuple[str, list[str]]:
    """The target and guard scores from --optimize and/or --target/--guard (explicit ones win/add)."""
    if optimize is None:
        if not target:
            raise InputError("say what to improve: --target SCORE, or --optimize fp|fn|balanced")
        return target, list(guards)
    if optimize not in OBJECTIVES:
        raise InputError(f"--optimize: expected one of {', '.join(OBJECTIVES)}, got {optimize!r}")
    objective = OBJECTIVES[optimize]
    chosen = target or objective.target
    merged = [g for g in (*objective.guards, *guards) if g != chosen]
    return chosen, list(dict.fromkeys(merged))
