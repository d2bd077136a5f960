"""Refusals in Braintrust's terms. A query the local backend cannot run is refused with what is
not supported and what to do instead; DuckDB's own error text never reaches the user."""

from __future__ import annotations

import re

REMOTE = "or run it on Braintrust with --remote"
FIELDS = ("id, span_id, root_span_id, span_parents, is_root, created, _xact_id, _pagination_key, input, output, "
          "expected, metadata, scores, metrics, span_attributes, tags, error, origin, facets, classifications")

_COLUMN = re.compile(r'column "?([^"\s]+)"? not found', re.IGNORECASE)
_FUNCTION = (re.compile(r"function with name \"?(\w+)", re.IGNORECASE),
             re.compile(r"argument types '(\w+)\(", re.IGNORECASE))


def engine_refusal(text: str) -> tuple[str, str]:
    """(message, hint) for a DuckDB error raised by a translated query."""
    lower = text.lower()
    column = _COLUMN.search(text)
    if column and ("binder" in lower or "referenced column" in lower):
        name = column.group(1)
        return (f"sql: unknown field `{name}`",
                f"fields are {FIELDS}, dotted paths into the JSON ones (metadata.user_id, scores.\"My score\"), "
                f"and the aliases of the SELECT list; {REMOTE}")
    function = next((m for m in (p.search(text) for p in _FUNCTION) if m), None)
    if function:
        name = function.group(1)
        if "argument types" in lower:
            return (f"sql: {name}() cannot take arguments of these types here",
                    f"cast the arguments explicitly, e.g. CAST(metadata.n AS DOUBLE); {REMOTE}")
        return (f"sql: function {name}() is not supported by the local backend",
                f"see docs/sql-differences.md for the supported functions, {REMOTE}")
    if "conversion" in lower or "could not convert" in lower or "malformed json" in lower:
        return ("sql: a value in this query has the wrong type for the comparison or function it is used in",
                "compare JSON fields with literals of their own type (numbers with numbers, text with quoted "
                f"strings), or cast explicitly, e.g. CAST(metadata.n AS DOUBLE); {REMOTE}")
    if "aggregate" in lower and ("group by" in lower or "must appear" in lower or "nested" in lower):
        return ("sql: a selected field is neither aggregated nor in GROUP BY",
                "add it to GROUP BY or wrap it in an aggregate such as any_value(...)")
    if "division by zero" in lower:
        return ("sql: division by zero", "guard the divisor, e.g. x / NULLIF(y, 0)")
    if "out of range" in lower or "overflow" in lower:
        return ("sql: a numeric value is out of range", f"cast to DOUBLE before the arithmetic; {REMOTE}")
    return ("sql: the local backend cannot run this query",
            f"simplify it (see docs/sql-differences.md for what differs from Braintrust), {REMOTE}")


def parse_refusal(errors: list[dict]) -> str:
    """A one-line parse error naming the place, without the parser's own wording."""
    if not errors:
        return "sql: cannot parse the query"
    first = errors[0]
    token = str(first.get("highlight") or "").strip()
    where = f" near `{token}`" if token else ""
    line, col = first.get("line"), first.get("col")
    place = f" (line {line}, column {col})" if line and col else ""
    return f"sql: cannot parse the query{where}{place}"
