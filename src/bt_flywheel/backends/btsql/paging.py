"""Cursor paging like Braintrust's: a query with LIMIT n that returns n span rows, sorted by
`_pagination_key` or `_xact_id` (or unsorted), returns a `cursor`; sending the same query with
`OFFSET '<cursor>'` returns the next page. The cursor is an opaque token holding the last row's
`_pagination_key` (which is unique: the transaction id then the row id) and the direction.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from sqlglot import exp

from bt_flywheel.core.errors import InputError

CURSOR_COLUMN = "__bt_cursor_key"
_SORT_KEYS = ("_pagination_key", "_xact_id")


@dataclass
class Paging:
    limit: int
    descending: bool


def encode(key: str, descending: bool) -> str:
    raw = json.dumps({"k": key, "d": "desc" if descending else "asc"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str) -> tuple[str, bool]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        return str(data["k"]), data["d"] == "desc"
    except (ValueError, KeyError, TypeError):
        raise InputError("sql: OFFSET: not a cursor from a previous `flywheel sql` response",
                         hint="OFFSET takes the `cursor` string of the previous page, e.g. OFFSET 'eyJr...'") from None


def _sort(select: exp.Select) -> tuple[bool, bool] | None:
    """(cursor-compatible, descending) of the ORDER BY; None when there is none."""
    order = select.args.get("order")
    if not order:
        return None
    keys = order.expressions
    if len(keys) != 1 or not isinstance(keys[0].this, exp.Column) or keys[0].this.name not in _SORT_KEYS:
        return (False, False)
    return (True, bool(keys[0].args.get("desc")))


def _is_aggregate(select: exp.Select) -> bool:
    if select.args.get("group") or select.args.get("distinct"):
        return True
    return any(isinstance(n, exp.AggFunc) for e in select.expressions for n in e.find_all(exp.AggFunc))


def prepare(select: exp.Select, is_span_source: bool) -> Paging | None:
    """Apply `OFFSET '<cursor>'` and, when the result can be paged, add the hidden cursor column.
    Call before the columns are rewritten (the added condition is on `_pagination_key`)."""
    offset = select.args.get("offset")
    cursor = None
    if offset is not None and isinstance(offset.expression, exp.Literal) and offset.expression.is_string:
        cursor = decode(offset.expression.this)
        select.set("offset", None)
    sort = _sort(select)
    pageable = is_span_source and not _is_aggregate(select) and (sort is None or sort[0])
    if cursor is not None and not pageable:
        raise InputError("sql: OFFSET '<cursor>' needs a span query sorted by _pagination_key or _xact_id",
                         hint="e.g. ... ORDER BY _pagination_key DESC LIMIT 100, then OFFSET '<cursor>'")
    if not pageable:
        return None
    descending = True if sort is None else sort[1]
    if sort is None and select.args.get("limit") is not None:
        select.order_by(exp.Ordered(this=exp.column("_pagination_key"), desc=True), copy=False)
    if cursor is not None:
        key, was_descending = cursor
        if was_descending != descending:
            raise InputError("sql: OFFSET '<cursor>': the cursor came from a query sorted the other way")
        op = exp.LT if descending else exp.GT
        select.where(op(this=exp.column("_pagination_key"), expression=exp.Literal.string(key)), copy=False)
    limit = select.args.get("limit")
    if limit is None or not isinstance(limit.expression, exp.Literal) or limit.expression.is_string:
        return None
    select.select(exp.Alias(this=exp.column("_pagination_key"), alias=exp.to_identifier(CURSOR_COLUMN)), copy=False)
    return Paging(limit=int(limit.expression.this), descending=descending)
