"""Paired statistics, verdicts, the keep rule, compare, route and the ledger."""
