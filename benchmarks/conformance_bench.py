"""SQL conformance with Braintrust's documentation (issue 12): the share of the documented
queries in tests/conformance/braintrust_docs.jsonl that the local backend answers exactly like
the Python reference, or refuses where Braintrust refuses. Prints the table, the refused
queries, and any query that does not conform (with why)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bt_flywheel.core.errors import InputError  # noqa: E402
from tests.test_sql_conformance import ENTRIES, build_world, check_entry  # noqa: E402


def evaluate() -> dict[str, list[str]]:
    outcome: dict[str, list[str]] = {"answered": [], "refused": [], "wrong": [], "unexpected_refusal": []}
    with tempfile.TemporaryDirectory() as tmp:
        store, world = build_world(Path(tmp))
        for entry in ENTRIES:
            try:
                check_entry(store, world, entry)
            except AssertionError as exc:
                outcome["wrong"].append(f"{entry['id']}: {str(exc).splitlines()[0][:160]}")
                continue
            except InputError as exc:
                outcome["unexpected_refusal"].append(f"{entry['id']}: {exc}")
                continue
            outcome["refused" if entry.get("refused") else "answered"].append(entry["id"])
    return outcome


def main(quick: bool = False) -> list[dict]:
    outcome = evaluate()
    total = len(ENTRIES)
    conforming = len(outcome["answered"]) + len(outcome["refused"])
    print(f"conforming: {conforming}/{total}; refused as Braintrust refuses: {', '.join(outcome['refused'])}")
    for kind in ("wrong", "unexpected_refusal"):
        for line in outcome[kind]:
            print(f"{kind}: {line}")
    return [
        {"figure": f"documented queries conforming, of {total} (%)", "ours": 100.0 * conforming / total,
         "target": ">= 95%"},
        {"figure": "answered, equal to the Python reference (queries)", "ours": len(outcome["answered"]),
         "target": "report"},
        {"figure": "refused where Braintrust refuses (queries)", "ours": len(outcome["refused"]), "target": "report"},
        {"figure": "answered but different from the reference (silent wrong answers)",
         "ours": len(outcome["wrong"]), "target": "0"},
        {"figure": "of them verbatim from a docs page (queries)", "ours": sum(1 for e in ENTRIES if e["verbatim"]),
         "target": "report"},
        {"figure": "of them completed or composed from a construct a page documents (queries)",
         "ours": sum(1 for e in ENTRIES if not e["verbatim"]), "target": "report"},
    ]


if __name__ == "__main__":
    from run_all import print_table

    print_table(main())
