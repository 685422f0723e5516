"""The Spark session ltvcast runs on, and the canonical tables read from Parquet or a Spark catalog.

Session settings that matter for the results (they are part of the
definition on Spark, so :func:`session` always sets them):

* ``spark.sql.session.timeZone = UTC``: timestamps are naive UTC everywhere
  in ltvcast; the shop's zone enters only through ``from_utc_timestamp``.
* ``spark.sql.ansi.enabled = true``: an overflow or a bad cast is an error,
  as in DuckDB, never a silent NULL.
* Arrow transfers on (``toPandas``, ``mapInPandas``).

Source layout (:func:`read_source`): a Parquet root with one folder per
canonical table, named and typed as the store's tables (docs/scale.md)::

    ROOT/transactions/*.parquet   customer_id, timestamp, amount, kind, quantity, order_id, line,
                                  product_id, category, brand, channel
    ROOT/orders/                  order_id, customer_id, timestamp
    ROOT/order_items/             order_id, line, amount, discount
    ROOT/events/                  customer_id, session_id, timestamp, event_type
    ROOT/customers/               customer_id, signup_at, acquisition_channel, region, country
    ROOT/store_meta/              key, value (shop_timezone, revenue_basis), optional

Only ``transactions`` is required. ``ROOT`` may be any path Spark reads
(``s3a://``, ``abfss://``, ``hdfs://``), a glob included; each folder may be
partitioned (``transactions/year=2024/...``). A source ``table:DB`` reads
the Spark tables ``DB.transactions``, ``DB.orders`` ... instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ltvcast.errors import LtvcastError

#: The canonical tables the features read, and the store's key/value table.
CANONICAL_TABLES = ("transactions", "orders", "order_items", "events", "customers", "store_meta")
TABLE_PREFIX = "table:"
#: Shuffle partitions per core of a local session unless given (Spark's 200 is sized for clusters:
#: on local[2] each of 200 tasks per shuffle pays its scheduling for a few hundred rows).
LOCAL_PARTITIONS_PER_CORE = 2


class EngineError(LtvcastError):
    """Spark cannot start (no Java, no PySpark) or a source cannot be read."""


def java_version() -> str:
    """The first line of ``java -version``.

    Raises:
        EngineError: no ``java`` on the PATH (install a Java 17 runtime,
            e.g. ``apt-get install openjdk-17-jre-headless``) or it fails.
    """
    java = shutil.which("java")
    if java is None:
        raise EngineError(
            "Spark needs Java 17, and `java` is not on the PATH: install a Java 17 runtime "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        raise EngineError(f"`java -version` failed: {exc}") from None
    return (done.stderr or done.stdout).splitlines()[0]


def session(
    master: str | None = None,
    *,
    app_name: str = "ltvcast",
    shuffle_partitions: int | None = None,
    conf: dict[str, str] | None = None,
):
    """Get or create the Spark session with ltvcast's settings.

    Args:
        master: Spark master URL (``local[2]``, ``spark://host:7077``,
            ``yarn``, ``k8s://...``); None: whatever ``spark-submit`` set,
            else ``local[*]``. With a ``local`` master the Python workers run
            this interpreter (``PYSPARK_PYTHON``, unless set).
        app_name: the application's name in the Spark UI.
        shuffle_partitions: ``spark.sql.shuffle.partitions`` (default: 2 per
            core of a ``local`` master, else Spark's own; a cluster wants ~2-3 ×
            its cores). Adaptive execution (on by default) coalesces small
            shuffle partitions further.
        conf: further settings, applied last.

    Returns:
        A ``pyspark.sql.SparkSession``.

    Raises:
        EngineError: PySpark is not installed (``pip install 'ltvcast[spark]'``)
            or Java is missing.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("the Spark engine needs PySpark: pip install 'ltvcast[spark]'") from None
    java_version()
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    }
    if master is not None and master.startswith("local"):
        # Local Python workers run this interpreter (its venv has pandas and ltvcast), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if shuffle_partitions is None and master is not None and (master == "local" or master.startswith("local[")):
        shuffle_partitions = LOCAL_PARTITIONS_PER_CORE * local_cores(master)
    if shuffle_partitions is not None:
        settings["spark.sql.shuffle.partitions"] = str(int(shuffle_partitions))
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in settings.items():  # a session that already existed takes the SQL settings too
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)
    return spark


def local_cores(master: str) -> int:
    """The worker threads of a ``local`` master: ``local`` 1, ``local[N]`` / ``local[N,F]`` N, ``local[*]`` the CPUs.

    Raises:
        EngineError: not a ``local`` master, or N is not a positive integer.
    """
    if master == "local":
        return 1
    if not (master.startswith("local[") and master.endswith("]")):
        raise EngineError(f"Spark master {master!r} is not local, local[N] or local[*]")
    threads = master[len("local["):-1].split(",")[0].strip()
    if threads == "*":
        return os.cpu_count() or 1
    if not threads.isdigit() or int(threads) < 1:
        raise EngineError(f"Spark master {master!r}: the thread count must be a positive integer or *")
    return int(threads)


def _exists(spark, path: str) -> bool:
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    statuses = fs.globStatus(hadoop_path)
    return statuses is not None and len(statuses) > 0


def read_source(spark, source: str) -> dict:
    """The canonical tables of ``source`` as Spark DataFrames (absent tables left out).

    Args:
        spark: the session (:func:`session`).
        source: a Parquet root (see the module docs) or ``table:DB``.

    Returns:
        ``{table name: DataFrame}`` for the tables present.

    Raises:
        EngineError: ``source`` has no ``transactions`` table.
    """
    out = {}
    if source.startswith(TABLE_PREFIX):
        db = source[len(TABLE_PREFIX):]
        for table in CANONICAL_TABLES:
            if spark.catalog.tableExists(f"{db}.{table}"):
                out[table] = spark.table(f"{db}.{table}")
    else:
        root = source.rstrip("/")
        if "://" not in root and not any(ch in root for ch in "*?[{") and not Path(root).is_dir():
            raise EngineError(f"source {source}: no such folder (expected ROOT/transactions/*.parquet ...)")
        for table in CANONICAL_TABLES:
            path = f"{root}/{table}"
            if _exists(spark, path):
                out[table] = spark.read.parquet(path)
    if "transactions" not in out:
        raise EngineError(
            f"source {source} has no transactions table (expected {source.rstrip('/')}/transactions/*.parquet "
            "or the Spark table DB.transactions; layout: docs/scale.md)"
        )
    return out


def duck_type(spark_type: str) -> str:
    """A Spark column type (``simpleString``) under its DuckDB name, for the ``src_*`` views' casts."""
    t = spark_type.lower()
    names = {
        "string": "VARCHAR",
        "timestamp": "TIMESTAMP",
        "timestamp_ntz": "TIMESTAMP_NTZ",
        "double": "DOUBLE",
        "float": "FLOAT",
        "bigint": "BIGINT",
        "int": "INTEGER",
        "smallint": "SMALLINT",
        "tinyint": "TINYINT",
        "boolean": "BOOLEAN",
        "date": "DATE",
    }
    if t.startswith("decimal"):
        return t.upper().replace(" ", "")
    return names.get(t, t.upper())
