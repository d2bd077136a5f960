"""Scorers for Braintrust Evals: plain callables usable in `Eval(..., scores=[...])`.

Each takes the SDK's keyword arguments (`input`, `output`, `expected`, `metadata`, ...) and returns
a `braintrust.Score`, a list of them, or None (skip this row). Where autoevals already has the
scorer we reuse it (ExactMatch, JSONDiff, ValidJSON, LLMClassifier).

- `binary_classification_scores`: decision match, positive recall, negative specificity — one
  scorer for every facet: the decision is "the output names something" vs "the output is a
  negative value" (none / n/a / empty / no match: facets.is_none_value, defined once).
- `class_scores(classes)`: per-class recall and specificity for multi-class labels, so the mean
  of each per-row score over an experiment equals the confusion-matrix rate
  (`classification_metrics` computes the same from a table; tests check they agree).
- `label_match`: normalized label equality.
- `json_valid`, `json_format(schema)`: autoevals ValidJSON, bare or with a JSON Schema.
- `rubric_scorer(rubric)`: an LLM-as-judge over autoevals LLMClassifier. It talks to an
  OpenAI-compatible endpoint: OPENAI_BASE_URL / OPENAI_API_KEY (tests point OPENAI_BASE_URL at a
  loopback server; nothing here goes to the network by itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from braintrust import Score

from bt_flywheel.core.errors import InputError
from bt_flywheel.evals.eval_config import ScorerSpec

LABEL_KEYS = ("label", "decision", "value", "answer", "class", "category")


def _pick(value: Any, key: str | None) -> Any:
    """The label inside a dict output: `key`, else the first usual label field, else the dict."""
    if isinstance(value, dict):
        if key is not None:
            return value.get(key)
        found = next((k for k in LABEL_KEYS if k in value), None)
        return value.get(found) if found else value
    return value


def normalize_label(value: Any, *, key: str | None = None) -> str | None:
    """A comparable label: the `key` field (or a usual label field) of a dict, lower-cased,
    whitespace collapsed, surrounding quotes/punctuation stripped. None stays None."""
    value = _pick(value, key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = " ".join(str(value).split()).lower()
    return text.strip(" \t\"'`.,;:!")


def is_negative(value: Any, *, key: str | None = None) -> bool:
    """True when a facet output/label means "nothing here": bt_flywheel.dataset.facets.is_none_value
    (the one definition of none / n/a / empty / no match), applied to the label field of a dict."""
    from bt_flywheel.dataset.facets import is_none_value

    return is_none_value(_pick(value, key))


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


# --- binary classification ----------------------------------------------------------------------

def make_binary_classification_scorer(*, is_positive: Callable[[Any], bool] | None = None, key: str | None = None,
                                      name: str = "binary_classification_scores") -> Callable[..., list[Score]]:
    """A scorer returning three Scores per row:
    binary_decision_match (1 if output and expected agree on positive/negative), positive_recall
    (only rows whose expected is positive: 1 if the output is positive too), negative_specificity
    (only rows whose expected is negative: 1 if the output is negative too). Rows where a score
    does not apply get None, so its experiment mean is exactly recall / specificity."""
    positive = is_positive or (lambda v: not is_negative(v, key=key))

    def scorer(output: Any = None, expected: Any = None, **_: Any) -> list[Score] | None:
        if expected is None:
            return None
        want, got = bool(positive(expected)), bool(positive(output))
        meta = {"expected_positive": want, "output_positive": got}
        return [
            Score(name="binary_decision_match", score=float(want == got), metadata=meta),
            Score(name="positive_recall", score=float(got) if want else None),
            Score(name="negative_specificity", score=float(not got) if not want else None),
        ]

    return _named(scorer, name)


binary_classification_scores = make_binary_classification_scorer()


def _slug(label: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", label).strip("_").lower()
    return slug or "empty"


def class_scores(classes: Sequence[str], *, key: str | None = None, name: str = "class_scores"
                 ) -> Callable[..., list[Score]]:
    """Per-class scores for a multi-class label: for each class c, `recall_<c>` on rows whose
    expected label is c (1 if the output is c) and `specificity_<c>` on rows whose expected label
    is not c (1 if the output is not c); plus `label_match`. Labels are compared normalized."""
    if not classes:
        raise InputError("class_scores: classes must list at least one label")
    normalized = [(normalize_label(c), _slug(str(c))) for c in classes]

    def scorer(output: Any = None, expected: Any = None, **_: Any) -> list[Score] | None:
        want = normalize_label(expected, key=key)
        if want is None:
            return None
        got = normalize_label(output, key=key)
        scores = [Score(name="label_match", score=float(want == got))]
        for label, slug in normalized:
            if want == label:
                scores.append(Score(name=f"recall_{slug}", score=float(got == label)))
                scores.append(Score(name=f"specificity_{slug}", score=None))
            else:
                scores.append(Score(name=f"recall_{slug}", score=None))
                scores.append(Score(name=f"specificity_{slug}", score=float(got != label)))
        return scores

    return _named(scorer, name)


def classification_metrics(pairs: Iterable[tuple[Any, Any]], classes: Sequence[str], *, key: str | None = None
                           ) -> dict[str, dict[str, float | int | None]]:
    """Per-class recall, specificity, precision and support from (expected, output) pairs, by
    confusion counts. Matches the means of `class_scores` per-row scores."""
    rows = [(normalize_label(e, key=key), normalize_label(o, key=key)) for e, o in pairs]
    rows = [(e, o) for e, o in rows if e is not None]
    out: dict[str, dict[str, float | int | None]] = {}
    for cls in classes:
        c = normalize_label(cls)
        tp = sum(1 for e, o in rows if e == c and o == c)
        fn = sum(1 for e, o in rows if e == c and o != c)
        fp = sum(1 for e, o in rows if e != c and o == c)
        tn = sum(1 for e, o in rows if e != c and o != c)
        out[str(cls)] = {
            "recall": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "support": tp + fn,
        }
    return out


# --- labels and formats ---------------------------------------------------------------------------

def make_label_match(*, key: str | None = None, name: str = "label_match") -> Callable[..., Score | None]:
    """1 when the output's label equals the expected label after normalization; skipped (None)
    when there is no expected label."""

    def scorer(output: Any = None, expected: Any = None, **_: Any) -> Score | None:
        want = normalize_label(expected, key=key)
        if want is None:
            return None
        got = normalize_label(output, key=key)
        return Score(name=name, score=float(want == got), metadata={"expected": want, "output": got})

    return _named(scorer, name)


label_match = make_label_match()


def json_valid(output: Any = None, **_: Any) -> Score:
    """1 if the output is valid JSON (autoevals ValidJSON)."""
    from autoevals import ValidJSON

    return Score(name="json_valid", score=ValidJSON().valid_json(output))


def json_format(schema: dict[str, Any], *, name: str = "json_format") -> Callable[..., Score]:
    """1 if the output is JSON that validates against `schema` (autoevals ValidJSON.valid_json).
    Calls valid_json directly: in autoevals 0.4.1 ValidJSON(schema=...) ignores the constructor's
    schema and its eval() passes `expected` positionally as the schema."""
    from autoevals import ValidJSON

    validator = ValidJSON()

    def scorer(output: Any = None, **_: Any) -> Score:
        return Score(name=name, score=validator.valid_json(output, schema))

    return _named(scorer, name)


# --- LLM-as-judge ---------------------------------------------------------------------------------

RUBRIC_TEMPLATE = """You are grading an AI system's output against a rubric.

Rubric:
{rubric}

[Input]
{{{{input}}}}

[Expected (may be empty)]
{{{{expected}}}}

[Output]
{{{{output}}}}

Does the output satisfy the rubric?"""


def rubric_scorer(rubric: str, *, name: str = "rubric", choices: dict[str, float] | None = None,
                  model: str | None = None, use_cot: bool = False, client: Any = None, **kwargs: Any) -> Any:
    """An LLM judge (autoevals LLMClassifier) that picks one of `choices` (default PASS=1, FAIL=0)
    for the rubric. The endpoint is OpenAI-compatible: OPENAI_BASE_URL/OPENAI_API_KEY or `client`.
    Usable directly in `scores=[...]`; its spans are named `name`."""
    from autoevals import LLMClassifier

    if not rubric or not rubric.strip():
        raise InputError("rubric_scorer: rubric is empty")
    template = RUBRIC_TEMPLATE.format(rubric=rubric.strip())
    return LLMClassifier(name, template, choices or {"PASS": 1.0, "FAIL": 0.0}, model=model, use_cot=use_cot,
                         client=client, **kwargs)


# --- resolving names (eval configs) ---------------------------------------------------------------

SCORERS: dict[str, Callable[..., Any]] = {
    "binary_classification_scores": binary_classification_scores,
    "label_match": label_match,
    "json_valid": json_valid,
}
FACTORIES: dict[str, Callable[..., Any]] = {
    "binary_classification_scores": make_binary_classification_scorer,
    "label_match": make_label_match,
    "class_scores": class_scores,
    "json_format": json_format,
    "rubric": rubric_scorer,
}


def resolve_scorer(spec: str | Mapping[str, Any] | ScorerSpec, *, base_dir: Path | None = None,
                   where: str = "scorer") -> Any:
    """A scorer from a config entry: a name here, an autoevals class name, or 'module:function';
    `{"name": ..., "args": {...}}` calls our factory / the autoevals constructor with args."""
    scorer = ScorerSpec.of(spec)
    name, args = scorer.name, (dict(scorer.args) if scorer.args is not None else None)
    if args is None and name in SCORERS:
        return SCORERS[name]
    if name in FACTORIES:
        if args is None:
            raise InputError(f"{where}: {name} needs args (e.g. {{name: {name}, args: {{...}}}})")
        try:
            return FACTORIES[name](**args)
        except TypeError as exc:
            raise InputError(f"{where}: {name}: {exc}") from None
    import autoevals

    if name == "ValidJSON" and args and "schema" in args:  # see json_format
        return json_format(args["schema"], name="ValidJSON")
    cls = getattr(autoevals, name, None)
    if isinstance(cls, type):
        try:
            return cls(**(args or {}))
        except TypeError as exc:
            raise InputError(f"{where}: {name}: {exc}") from None
    if ":" in name:
        from bt_flywheel.evals.data import load_callable

        fn = load_callable(name, base_dir=base_dir or Path.cwd(), what=where)
        return fn(**args) if args else fn
    known = ", ".join(sorted({*SCORERS, *FACTORIES}))
    raise InputError(f"{where}: unknown scorer {name!r}",
                     hint=f"use one of {known}, an autoevals class (ExactMatch, Levenshtein, ...), or module:function")
