"""Where SQL runs: DuckDB (the store, the default) and Spark (transpiled from the same SQL)."""
