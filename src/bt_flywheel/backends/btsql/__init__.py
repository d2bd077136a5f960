"""Pieces of the Braintrust SQL -> DuckDB translation (`backends/sql_translate.py` drives them):
the dialect (parser additions), Braintrust functions, data shapes, paging cursors, and refusal
messages in Braintrust's terms."""
