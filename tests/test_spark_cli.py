"""`--engine` / `--source` on the commands: the engine and its source must agree (no Spark needed)."""

from __future__ import annotations

from typer.testing import CliRunner

from ltvcast.cli import app

runner = CliRunner()


def _error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    return result.output


def test_spark_engine_needs_a_source():
    out = _error(["features", "--engine", "spark", "--cutoff", "2024-01-01"])
    assert "--engine spark reads --source" in out
    out = _error(["score", "--engine", "spark", "--model", "clv", "--cutoff", "2024-01-01"])
    assert "--engine spark reads --source" in out


def test_unknown_engine_and_source_without_spark_are_refused(tmp_path):
    assert "is not duckdb or spark" in _error(["features", "--engine", "flink", "--cutoff", "2024-01-01"])
    out = _error(["features", "--source", str(tmp_path), "--db", "x.duckdb", "--cutoff", "2024-01-01"])
    assert "--source is read by --engine spark only" in out


def test_unknown_table_is_refused():
    out = _error(["features", "--db", "x.duckdb", "--cutoff", "2024-01-01", "--tables", "customers,weather"])
    assert "choose from customers, rfm_summary, sequences" in out
