"""Braintrust's SQL grammar on top of sqlglot's DuckDB dialect.

Additions: `<expr> MATCH 'term'`, `<expr> INCLUDES <value or [values]>` (also `CONTAINS`,
`NOT INCLUDES`), the `cond ? a : b` ternary (right-associative, so nested ternaries work),
one-argument `search()`, and 0-based array subscripts (`classifications.Task[0].label`).
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.parser import binary_range_parser
from sqlglot.tokens import TokenType

# INCLUDES/CONTAINS need a token type of their own; DuckDB never produces SOUNDS_LIKE (MySQL only).
_INCLUDES_TOKEN = TokenType.SOUNDS_LIKE


class BtMatch(exp.Expression, exp.Binary, exp.Predicate):
    """`<expr> MATCH 'term'` (Braintrust full-text match)."""


class BtIncludes(exp.Expression, exp.Binary, exp.Predicate):
    """`<expr> INCLUDES <value>`: array (or object value) membership; an array of values means all of them."""


def _search(args: list[exp.Expression]) -> exp.Expression:
    return exp.Anonymous(this="search", expressions=args)


class BraintrustSQL(DuckDB):
    """DuckDB's grammar plus Braintrust's operators (see module docstring)."""

    INDEX_OFFSET = 0

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS = {**DuckDB.Tokenizer.KEYWORDS, "MATCH": TokenType.MATCH,
                    "INCLUDES": _INCLUDES_TOKEN, "CONTAINS": _INCLUDES_TOKEN}

    class Parser(DuckDB.Parser):
        FUNCTIONS = {**DuckDB.Parser.FUNCTIONS, "SEARCH": _search}
        RANGE_PARSERS = {**DuckDB.Parser.RANGE_PARSERS, TokenType.MATCH: binary_range_parser(BtMatch),
                         _INCLUDES_TOKEN: binary_range_parser(BtIncludes)}
        # `?` is the ternary here, not Postgres's JSONB "contains key" operator
        COLUMN_OPERATORS = {k: v for k, v in DuckDB.Parser.COLUMN_OPERATORS.items() if k != TokenType.PLACEHOLDER}
        JSON_OPERATORS = {k: v for k, v in DuckDB.Parser.JSON_OPERATORS.items() if k != TokenType.PLACEHOLDER}

        def _parse_assignment(self) -> exp.Expression | None:
            condition = super()._parse_assignment()
            if condition is None or not self._match(TokenType.PLACEHOLDER):
                return condition
            when_true = self._parse_assignment()
            if not self._match(TokenType.COLON):
                self.raise_error("expected ':' in the ternary `condition ? a : b`")
            when_false = self._parse_assignment()
            return exp.If(this=condition, true=when_true, false=when_false)
