"""SQL text the project writes itself: a string literal with its quotes doubled (the same rule in
DuckDB, Braintrust SQL and BTQL)."""

from __future__ import annotations


def sql_string(value: object) -> str:
    """`value` as a single-quoted SQL string literal: O'Brien -> 'O''Brien'."""
    return "'" + str(value).replace("'", "''") + "'"
