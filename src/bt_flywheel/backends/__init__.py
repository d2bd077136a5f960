"""Where traces live: the local DuckDB store and Braintrust (SQL, ingest, HTTP)."""
