"""ltvcast: customer lifetime value prediction for e-commerce.

Rooms (see DESIGN.md): ``data`` (schemas, readers, cleaning, quarantine,
built-in datasets), ``store`` (DuckDB), ``features`` (point-in-time
summaries and labels), ``models`` (BTYD and baselines), ``evaluate``
(metrics, backtests, reports), ``cli`` (Typer app).
"""

__version__ = "0.1.0"
