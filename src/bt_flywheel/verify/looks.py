"""Validation looks: `flywheel eval --split validation` records each one in the loop ledger by
itself, keyed by the candidate's fingerprint (evals.candidate), so a second look at the same
candidate is flagged however the experiment was named."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bt_flywheel.evals.candidate import is_baseline


def ledger_configured(settings: Any) -> str | None:
    """The ledger path when one is configured (flag, environment or the session) or exists."""
    path = settings.get("ledger")
    if not path:
        return None
    if settings.sources.get("ledger") not in (None, "default", "unset") or Path(path).exists():
        return str(path)
    return None


def record_eval_looks(results: Iterable[Any], settings: Any, *, split: str | None) -> list[str]:
    """Record every validation run in `results` (evals.runner.EvalRunResult) in the configured
    ledger; returns what to tell the user (the look, and a warning on a repeated look)."""
    path = ledger_configured(settings)
    if split != "validation" or path is None:
        return []
    from bt_flywheel.verify.ledger import Ledger

    ledger = Ledger.open(path)
    messages = []
    for result in results:
        candidate = (result.metadata.get("candidate") or {})
        entry, before = ledger.record_look(
            candidate=candidate.get("id"), experiment=result.experiment_name, experiment_id=result.experiment_id,
            split=split, files=candidate.get("files") or [], rows=result.rows, trials=result.trials)
        who = entry["candidate"] or f"experiment {result.experiment_name} (no git checkout: not fingerprinted)"
        messages.append(f"ledger {path}: validation look at {who}")
        if before and entry["candidate"] and not is_baseline(entry["candidate"]):
            messages.append(f"warning: candidate {entry['candidate']} already had {before} validation look(s); "
                            "repeated looks at validation inflate false positives")
    return messages
