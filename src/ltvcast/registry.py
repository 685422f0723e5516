"""The model registry: versioned artifacts of fitted forecasters, a manifest each, one promoted version per name.

Layout under ``root`` (default ``./models``)::

    root/NAME/VERSION/model.pkl      the fitted Forecaster (pickle)
    root/NAME/VERSION/manifest.json  what the model is and what it was trained on
    root/NAME/VERSION/reference.json the drift reference: inputs and predictions at the cutoff, sketched
    root/NAME/VERSION/categories.pkl the category split fitted with the model (optional, ``train --categories``)
    root/NAME/decisions.jsonl        champion/challenger decisions of ``ltvcast retrain``
    root/NAME/PROMOTED               the promoted version as text, e.g. ``3``

``NAME`` is letters, digits, ``.``, ``_`` and ``-`` (starting with a letter
or digit); versions are 1, 2, 3, ... per name, never reused. A reference is
``NAME`` or ``NAME:VERSION``; ``NAME`` alone means the promoted version if
one is promoted, else the latest.

Writes are atomic, so a reader (a prediction server watching ``PROMOTED``)
never sees half a model: a version is written to a temporary folder in
``root/NAME`` and renamed into place (a concurrent writer that takes the
same number makes the rename fail and the next number is tried);
``PROMOTED`` is written to a temporary file and ``os.replace``-d.

**Artifacts are trusted files.** ``model.pkl`` is a pickle: loading it runs
whatever code its author put in it. Load only registries you or your own
pipeline wrote. The manifest's SHA-256 of ``model.pkl`` detects a corrupt
or truncated file, not a deliberate change. The training examples a learned
model keeps after ``fit`` (``examples_``, an
:class:`~ltvcast.models.learned.examples.ExampleSet`: the training data) are
left out of the pickle (``None`` after loading); the manifest lists the
training windows.

``manifest.json`` holds: ``format`` (1), ``name``, ``version``,
``created_at`` (UTC), ``ltvcast_version``; ``model``: ``kind`` (the catalog
name, :data:`ltvcast.models.catalog.MODEL_NAMES`), ``class`` and ``params``
(the constructor parameters: ``class(**params)`` builds an unfitted copy);
``cutoff`` (day), ``horizon_days``; ``training_windows`` (learned models:
``index``, ``cutoff``, ``label_days``, ``role`` = validation / training /
recent; else null); ``features`` (the feature schema, name -> dtype, see
:meth:`ltvcast.models.base.Forecaster.check_features`); ``data`` (the
fingerprint of the training data, below); ``metrics`` (validation metrics
of learned models, plus those passed to :func:`save_model`); ``tuning``;
``seed``; ``packages`` (python, numpy, pandas, scipy, lightgbm, duckdb, and
torch when it is imported); ``notes`` (the forecaster's ``notes_``);
``artifact`` (file name, bytes, SHA-256); ``onnx`` (deep models after
``ltvcast export``: the ONNX export of the network, see
:func:`export_onnx`); ``categories`` (with ``train --categories``: the
category split fitted with the model, see :func:`save_category_split`).

Data fingerprint (``data``): ``fingerprint`` is the SHA-256 of the
transactions strictly before the cutoff (00:00 of the cutoff day in the
shop's time zone, as the models cut) written canonically: the canonical
transaction columns plus ``kind`` (``return`` where absent and the amount
is negative, else ``sale``), timestamps in UTC, rows sorted by every
column, as CSV, followed by the shop's time zone and revenue basis. It
changes when a transaction before the cutoff (or a shop setting) changes,
and not when rows after the cutoff, the row order or the ingest ids change.
Beside it: ``customers``, ``rows``, ``revenue`` (sum of amounts, shop
currency), ``first_timestamp``, ``last_timestamp``, ``origin``,
``observation_end``, ``timezone``, ``revenue_basis`` and
``store_sources_sha256`` (SHA-256 over the content hashes of every
ingested source: it also covers the store's other tables — events,
customers, order lines — that learned models read, but it changes with any
change of a source, after the cutoff too).
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import io
import json
import math
import os
import pickle
import platform
import re
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast import __version__
from ltvcast.data.datasets import History
from ltvcast.errors import LtvcastError, RegistryError, SchemaMismatchError
from ltvcast.models.base import Forecaster, check_feature_schema
from ltvcast.models.learned.examples import ExampleSet, history_before
from ltvcast.schema import TRANSACTION_COLUMNS
from ltvcast.timeutil import horizon_window, to_day

__all__ = [
    "DEFAULT_ROOT",
    "ONNX_FILE",
    "TOLERANCE",
    "OnnxExport",
    "ModelRef",
    "RegisteredModel",
    "RegistryError",
    "SchemaMismatchError",
    "export_onnx",
    "load_category_split",
    "save_category_split",
    "list_models",
    "load_model",
    "parse_ref",
    "predict_registered",
    "promote",
    "promoted_version",
    "save_model",
    "feature_sketch",
    "data_fingerprint",
    "read_reference",
]

DEFAULT_ROOT = Path("models")
ARTIFACT = "model.pkl"
MANIFEST = "manifest.json"
PROMOTED = "PROMOTED"
ONNX_FILE = "model.onnx"
CATEGORIES_FILE = "categories.pkl"
REFERENCE = "reference.json"
#: Probability grid of the reference quantiles (0, 0.01, ..., 1) and the PSI bins (deciles).
SKETCH_QUANTILES = 101
SKETCH_BINS = 10
#: Largest |ONNX − torch| accepted on any output at export (absolute, in each output's unit).
TOLERANCE = 1e-4
FORMAT = 1
LIST_COLUMNS = ("name", "version", "kind", "cutoff", "horizon_days", "created_at", "promoted")

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REF = re.compile(rf"({_NAME})(?::([0-9]+))?")
_VERSION = re.compile(r"[1-9][0-9]*")
_REQUIRED = ("name", "version", "model", "cutoff", "horizon_days", "created_at", "artifact")
_PACKAGES = ("numpy", "pandas", "scipy", "lightgbm", "duckdb")
_CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class ModelRef:
    """A reference to a registered model: ``NAME`` (version ``None``) or ``NAME:VERSION``.

    ``version=None`` resolves to the promoted version if the name has one,
    else to the latest.
    """

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


def parse_ref(text: str) -> ModelRef:
    """Parse ``"NAME"`` or ``"NAME:VERSION"`` (surrounding spaces ignored).

    Raises:
        RegistryError: not of that form (an empty name, a name with other
            characters than letters, digits, ``.``, ``_``, ``-`` or not
            starting with a letter or digit, a version that is not a
            positive integer).
    """
    match = _REF.fullmatch(str(text).strip())
    if match is None or (match.group(2) is not None and not _VERSION.fullmatch(match.group(2))):
        raise RegistryError(
            f"bad model reference {text!r}: write NAME or NAME:VERSION (NAME of letters, digits, '.', '_', '-'; "
            "VERSION a positive integer)"
        )
    return ModelRef(match.group(1), None if match.group(2) is None else int(match.group(2)))


@dataclass
class RegisteredModel:
    """A model version in the registry.

    Attributes:
        name, version: where it is (``root/name/version``).
        path: that folder.
        manifest: the parsed ``manifest.json`` (see the module doc).
        forecaster: the fitted forecaster.
    """

    name: str
    version: int
    path: Path
    manifest: dict
    forecaster: Forecaster


# ---------------------------------------------------------------- save
class _ArtifactPickler(pickle.Pickler):
    """Pickles a forecaster without its training examples (the training data; not needed to predict)."""

    def reducer_override(self, obj):
        if isinstance(obj, ExampleSet):
            return type(None), ()
        return NotImplemented


def save_model(
    forecaster: Forecaster,
    *,
    name: str,
    cutoff,
    horizon_days: float,
    history: History,
    metrics: dict | None = None,
    tuning: dict | None = None,
    seed: int | None = None,
    root: str | Path = DEFAULT_ROOT,
) -> RegisteredModel:
    """Register a fitted forecaster as the next version of ``name``.

    Args:
        forecaster: fitted on ``history`` before ``cutoff``.
        name: model name (no version).
        cutoff: the training cutoff (day).
        horizon_days: the horizon it was fitted for (days).
        history: the data it was fitted on (for the data fingerprint).
        metrics: extra metrics (JSON-able; NaN becomes null), merged over
            the validation metrics the forecaster carries.
        tuning: tuning results (JSON-able dict; a DataFrame becomes records).
        seed: recorded seed; default: the forecaster's ``seed`` parameter.
        root: registry folder (created if missing).

    Returns:
        The new :class:`RegisteredModel` (version = largest existing + 1;
        ``forecaster`` is the object given).

    Raises:
        RegistryError: ``name`` is not a plain model name.
        OSError: the registry cannot be written.
    """
    ref = parse_ref(name)
    if ref.version is not None or ref.name != name:
        raise RegistryError(f"model name {name!r} is not a plain name (letters, digits, '.', '_', '-'; no version)")
    model_dir = Path(root) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    _ArtifactPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(forecaster)
    blob = buffer.getvalue()
    manifest = _manifest(forecaster, name, cutoff, horizon_days, history, metrics, tuning, seed)
    manifest["artifact"] = {"file": ARTIFACT, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    reference = _reference(forecaster, history, cutoff, horizon_days)  # the drift baseline (ltvcast.monitor)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    try:
        _write_file(tmp / ARTIFACT, blob)
        _write_file(tmp / REFERENCE, json.dumps(reference, allow_nan=False).encode())
        while True:
            version = max(_versions(model_dir), default=0) + 1
            manifest["version"] = version
            _write_file(tmp / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False).encode())
            try:
                os.rename(tmp, model_dir / str(version))
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another writer took this version
                    continue
                raise
            return RegisteredModel(name, version, model_dir / str(version), manifest, forecaster)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def feature_sketch(values, edges=None) -> dict:
    """A compact sketch of one numeric column: quantiles and a histogram (the drift reference, no raw rows).

    Args:
        values: numbers, shape (n,); NaN/None count as missing.
        edges: inner bin edges (ascending) of the histogram; default: the
            distinct deciles of ``values`` (:data:`SKETCH_BINS` bins).

    Returns:
        ``{"n", "missing" (share), "mean", "std", "quantiles" (the values at
        probabilities 0, 0.01, ..., 1: :data:`SKETCH_QUANTILES`), "edges",
        "shares" (fraction of the non-missing values per bin
        ``(-inf, e0], (e0, e1], ..., (e_k, inf)``)}``; quantiles/mean/std are
        null for an all-missing column.
    """
    x = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(np.float64)
    finite = x[np.isfinite(x)]
    out: dict = {"n": int(x.size), "missing": float(1.0 - finite.size / x.size) if x.size else 0.0}
    if finite.size == 0:
        return {**out, "mean": None, "std": None, "quantiles": None, "edges": [], "shares": [1.0]}
    grid = np.linspace(0.0, 1.0, SKETCH_QUANTILES)
    if edges is None:
        edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, SKETCH_BINS + 1)[1:-1]))
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    return {
        **out,
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "quantiles": [float(v) for v in np.quantile(finite, grid)],
        "edges": [float(e) for e in edges],
        "shares": [float(c) for c in counts / finite.size],
    }


def _reference(forecaster: Forecaster, history: History, cutoff, horizon_days: float) -> dict:
    """The model's inputs and predictions at its training cutoff, sketched per numeric column (``reference.json``).

    ``inputs``: :meth:`Forecaster.inputs` at ``cutoff`` (the RFM summary for
    BTYD models, the feature table for learned ones); ``predictions``:
    ``pred_spend``, ``p_churn``, ``pred_transactions`` of
    :meth:`Forecaster.predict_inputs` on them. A model whose inputs cannot
    be computed again (e.g. data missing) gets ``{"error": text}``.
    """
    start, end = horizon_window(cutoff, horizon_days)
    days = float((end - start).days)
    try:
        inputs = forecaster.inputs(history, start, days)
        preds = forecaster.predict_inputs(inputs, start, days)
    except LtvcastError as exc:
        return {"format": 1, "cutoff": start.date().isoformat(), "error": str(exc)}
    numeric = [c for c in inputs.columns if c != "customer_id" and pd.api.types.is_numeric_dtype(inputs[c])
               and not pd.api.types.is_bool_dtype(inputs[c])]
    return _jsonable({
        "format": 1,
        "cutoff": start.date().isoformat(),
        "horizon_days": days,
        "customers": int(len(inputs)),
        "inputs": {c: feature_sketch(inputs[c]) for c in numeric},
        "predictions": {c: feature_sketch(preds[c]) for c in ("pred_spend", "p_churn", "pred_transactions")
                        if c in preds.columns},
    })


def read_reference(model: RegisteredModel) -> dict | None:
    """The drift reference of a registered model (``reference.json``, see :func:`feature_sketch`); None if absent.

    Models registered before the reference existed have none.

    Raises:
        RegistryError: the file exists but is not valid JSON.
    """
    path = model.path / REFERENCE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _manifest(forecaster, name, cutoff, horizon_days, history, metrics, tuning, seed) -> dict:
    params = _params(forecaster)
    kind = type(forecaster)
    return _jsonable(
        {
            "format": FORMAT,
            "name": name,
            "version": None,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ltvcast_version": __version__,
            "model": {"kind": forecaster.name, "class": f"{kind.__module__}.{kind.__qualname__}", "params": params},
            "cutoff": to_day(cutoff).date().isoformat(),
            "horizon_days": float(horizon_days),
            "training_windows": _training_windows(forecaster),
            "features": forecaster.feature_schema_,
            "data": _data_fingerprint(history, cutoff),
            "metrics": {**_validation_metrics(forecaster), **(metrics or {})},
            "tuning": tuning,
            "seed": seed if seed is not None else params.get("seed"),
            "packages": _packages(),
            "notes": list(getattr(forecaster, "notes_", [])),
        }
    )


def _params(forecaster: Forecaster) -> dict:
    """The constructor parameters of every ``__init__`` in the class hierarchy, read back from attributes.

    A ``**kwargs`` parameter kept as a dict attribute of the same name (``auto``) is merged in.
    """
    params: dict = {}
    for cls in reversed(type(forecaster).__mro__):
        if not (isinstance(cls, type) and issubclass(cls, Forecaster)) or "__init__" not in cls.__dict__:
            continue
        for p in inspect.signature(cls.__dict__["__init__"]).parameters.values():
            value = getattr(forecaster, p.name, None)
            if p.kind is p.VAR_KEYWORD and isinstance(value, dict):
                params.update(value)
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self" and hasattr(forecaster, p.name):
                params[p.name] = value
    return params


def _training_windows(forecaster: Forecaster) -> list[dict] | None:
    """The training windows of a learned model (its ``examples_`` or those of its ``learned_`` sub-models)."""
    candidates = [forecaster, *getattr(forecaster, "learned_", {}).values()]
    examples = next((c.examples_ for c in candidates if isinstance(getattr(c, "examples_", None), ExampleSet)), None)
    if examples is None:
        return None
    return [
        {
            "index": w.index,
            "cutoff": to_day(w.cutoff).date().isoformat(),
            "label_days": int(w.label_days),
            "role": "validation" if w.is_validation else "recent" if w.is_recent else "training",
        }
        for w in examples.windows
    ]


def _validation_metrics(forecaster: Forecaster) -> dict[str, float]:
    """Validation-window metrics a learned model carries; empty for the BTYD models.

    ``gbm``/``hybrid``: ``validation_scores_`` (normalized Gini of each spend
    loss) and, from ``validation_`` (the validation boosters' uncalibrated
    predictions on window 0), spend RMSE, normalized Gini and churn Brier
    score; ``auto``: the score of each output's choice (``choice_``).
    """
    from ltvcast.metrics import churn_brier, churn_labels, normalized_gini, rmse

    out = {f"validation_{k}": v for k, v in (getattr(forecaster, "validation_scores_", None) or {}).items()}
    val = getattr(forecaster, "validation_", None)
    if isinstance(val, pd.DataFrame) and len(val):
        spend = np.maximum(val["actual_spend"].to_numpy(float), 0.0)
        out["validation_spend_rmse"] = rmse(spend, val["pred_spend"])
        out["validation_gini_norm"] = normalized_gini(spend, val["pred_spend"])
        out["validation_churn_brier"] = churn_brier(churn_labels(val["actual_transactions"]), val["p_churn"])
    for output, choice in (getattr(forecaster, "choice_", None) or {}).items():
        out[f"validation_{output}_score"] = choice["score"]
    return out


def _packages() -> dict[str, str | None]:
    names = _PACKAGES + (("torch",) if "torch" in sys.modules else ())
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def data_fingerprint(history: History, cutoff) -> dict:
    """The fingerprint and summary of the transactions before ``cutoff`` (the manifest's ``data``; module doc)."""
    return _data_fingerprint(history, cutoff)


def _data_fingerprint(history: History, cutoff) -> dict:
    """The training data's fingerprint and summary (see the module doc)."""
    tx = history_before(history.transactions, cutoff, history.timezone)
    stamps = tx["timestamp"]
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    canon = tx.reindex(columns=list(TRANSACTION_COLUMNS)).assign(timestamp=stamps)
    if "kind" in tx.columns:
        canon["kind"] = tx["kind"].astype("string")
    else:
        canon["kind"] = np.where(tx["amount"].to_numpy(float) < 0, "return", "sale")
    canon = canon.sort_values(list(canon.columns), kind="stable", na_position="last", ignore_index=True)
    digest = hashlib.sha256()
    for start in range(0, max(len(canon), 1), _CHUNK_ROWS):
        chunk = canon.iloc[start : start + _CHUNK_ROWS]
        digest.update(chunk.to_csv(index=False, header=start == 0, lineterminator="\n").encode())
    digest.update(f"timezone={history.timezone}\nrevenue_basis={history.revenue_basis}\n".encode())
    sources = history.store.ingested_sources()
    hashes = sorted(f"{k}:{h}" for k, h in zip(sources["kind"], sources["content_hash"]) if isinstance(h, str))
    return {
        "fingerprint": digest.hexdigest(),
        "customers": int(tx["customer_id"].nunique()),
        "rows": int(len(tx)),
        "revenue": round(float(tx["amount"].sum()), 4),
        "first_timestamp": stamps.min() if len(tx) else None,
        "last_timestamp": stamps.max() if len(tx) else None,
        "origin": history.origin,
        "observation_end": history.observation_end,
        "timezone": history.timezone,
        "revenue_basis": history.revenue_basis,
        "store_sources_sha256": hashlib.sha256("\n".join(hashes).encode()).hexdigest() if hashes else None,
    }


def _jsonable(value):
    """``value`` with JSON types only: numpy scalars unwrapped, NaN/inf -> None, times -> ISO text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict(orient="records"))
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date)):  # pd.Timestamp included
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


# ---------------------------------------------------------------- read
def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if _VERSION.fullmatch(p.name) and p.is_dir())


def _registry(root: str | Path) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise RegistryError(f"no model registry at {path} (train a model with `ltvcast train` or give --registry)")
    return path


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if re.fullmatch(_NAME, p.name) and _versions(p))


def _resolve(ref: str | ModelRef, root: str | Path) -> tuple[str, int]:
    """(name, version) of a reference; see :class:`ModelRef`."""
    ref = ref if isinstance(ref, ModelRef) else parse_ref(ref)
    path = _registry(root)
    versions = _versions(path / ref.name)
    if not versions:
        known = ", ".join(_names(path)) or "none"
        raise RegistryError(f"no model {ref.name!r} in the registry {path} (models: {known})")
    if ref.version is not None:
        if ref.version not in versions:
            raise RegistryError(
                f"model {ref.name!r} has no version {ref.version} (versions: {', '.join(map(str, versions))})"
            )
        return ref.name, ref.version
    promoted = promoted_version(ref.name, path)
    if promoted is None:
        return ref.name, versions[-1]
    if promoted not in versions:
        raise RegistryError(f"model {ref.name!r}: the promoted version {promoted} is missing from {path / ref.name}")
    return ref.name, promoted


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read the manifest {path}: {exc}") from None
    missing = [k for k in _REQUIRED if not isinstance(manifest, dict) or k not in manifest]
    if not missing:
        missing = [k for k in ("model", "artifact") if not isinstance(manifest[k], dict)]
    if missing:
        raise RegistryError(f"the manifest {path} is corrupt: it lacks (a valid) {', '.join(missing)}")
    return manifest


def load_model(ref: str | ModelRef, root: str | Path = DEFAULT_ROOT, *, use_onnx: bool = True) -> RegisteredModel:
    """Load a registered model.

    Args:
        ref: ``"NAME"`` (promoted version if one is promoted, else the
            latest), ``"NAME:VERSION"`` or a :class:`ModelRef`.
        root: registry folder.
        use_onnx: when the manifest records an ONNX export (``onnx``; deep
            models, ``ltvcast export``), predict through it in onnxruntime
            (:meth:`~ltvcast.models.base.Forecaster.use_onnx`); False keeps torch.

    Returns:
        The :class:`RegisteredModel`. The pickle is trusted (module doc).

    Raises:
        RegistryError: bad reference; no registry at ``root``; unknown name
            or version; the promoted version is missing; the manifest or
            ``model.pkl`` is unreadable, corrupt (SHA-256 differs from the
            manifest's) or not a forecaster; with ``use_onnx``, the recorded
            ``model.onnx`` is missing, changed (SHA-256) or unloadable.
    """
    name, version = _resolve(ref, root)
    folder = Path(root) / name / str(version)
    manifest = _read_manifest(folder)
    if manifest["name"] != name or manifest["version"] != version:
        raise RegistryError(
            f"the manifest in {folder} describes {manifest['name']}:{manifest['version']}, not {name}:{version}"
        )
    path = folder / manifest["artifact"].get("file", ARTIFACT)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read the model artifact {path}: {exc.strerror or exc}") from None
    if hashlib.sha256(blob).hexdigest() != manifest["artifact"].get("sha256"):
        raise RegistryError(f"the model artifact {path} is corrupt: its SHA-256 differs from the manifest's")
    try:
        forecaster = pickle.loads(blob)
    except Exception as exc:  # unpickling fails in many ways (missing class, truncated data, ...)
        raise RegistryError(f"cannot load the model artifact {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(forecaster, Forecaster):
        raise RegistryError(f"the model artifact {path} holds a {type(forecaster).__name__}, not a forecaster")
    if use_onnx and manifest.get("onnx") is not None:
        _attach_onnx(forecaster, folder, manifest["onnx"])
    return RegisteredModel(name, version, folder, manifest, forecaster)


def promoted_version(name: str, root: str | Path = DEFAULT_ROOT) -> int | None:
    """The promoted version of ``name`` (from ``root/NAME/PROMOTED``), or ``None`` if none is promoted.

    Raises:
        RegistryError: ``name`` is not a plain name, or the file is unreadable
            or does not hold a positive integer.
    """
    ref = parse_ref(name)
    if ref.version is not None:
        raise RegistryError(f"model name {name!r} is not a plain name")
    path = Path(root) / ref.name / PROMOTED
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None
    if not _VERSION.fullmatch(text):
        raise RegistryError(f"{path} is corrupt: it holds {text[:40]!r}, not a version number")
    return int(text)


def promote(ref: str | ModelRef, root: str | Path = DEFAULT_ROOT) -> RegisteredModel:
    """Promote ``NAME:VERSION``: ``load_model("NAME")`` resolves to it from now on.

    The version is loaded first (it must exist and be readable); then
    ``root/NAME/PROMOTED`` is replaced atomically (temporary file +
    ``os.replace``) by the version number and a newline.

    Returns:
        The promoted :class:`RegisteredModel`.

    Raises:
        RegistryError: the reference has no version, or as :func:`load_model`.
        OSError: ``PROMOTED`` cannot be written.
    """
    ref = ref if isinstance(ref, ModelRef) else parse_ref(ref)
    if ref.version is None:
        raise RegistryError(f"promote needs NAME:VERSION, got {str(ref)!r}")
    model = load_model(ref, root)
    folder = Path(root) / model.name
    _replace(folder / PROMOTED, f"{model.version}\n".encode())
    return model


def list_models(root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """Every registered version, by name and version.

    Returns:
        Frame with one row per version and columns ``name``, ``version``
        (int), ``kind`` (catalog model name), ``cutoff`` (UTC day),
        ``horizon_days``, ``created_at`` (UTC), ``promoted`` (bool); empty
        (same columns) for an empty registry.

    Raises:
        RegistryError: no registry at ``root``, or a manifest is unreadable.
    """
    path = _registry(root)
    rows = []
    for name in _names(path):
        promoted = promoted_version(name, path)
        for version in _versions(path / name):
            manifest = _read_manifest(path / name / str(version))
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "kind": manifest["model"].get("kind"),
                    "cutoff": pd.Timestamp(manifest["cutoff"], tz="UTC"),
                    "horizon_days": float(manifest["horizon_days"]),
                    "created_at": pd.Timestamp(manifest["created_at"]).tz_convert("UTC"),
                    "promoted": version == promoted,
                }
            )
    return pd.DataFrame(rows, columns=list(LIST_COLUMNS)).astype({"version": "int64", "promoted": bool})


# ---------------------------------------------------------------- predict
def check_registered(model: RegisteredModel, cutoff) -> str:
    """Checks before a registered model predicts at ``cutoff``; returns its label ``NAME:VERSION``.

    Raises:
        SchemaMismatchError: the manifest and the pickle record different
            feature schemas (the message names the differing features).
        RegistryError: ``cutoff`` is before the model's training cutoff (its
            training labels would overlap the horizon it predicts).
    """
    label = f"{model.name}:{model.version}"
    recorded, pickled = model.manifest.get("features"), model.forecaster.feature_schema_
    if recorded != pickled:
        if recorded is None or pickled is None:
            raise SchemaMismatchError(f"{label}: only one of the manifest and model.pkl records a feature schema")
        check_feature_schema(pickled, recorded, what=f"{label} (manifest vs model.pkl)")
    trained = model.manifest.get("cutoff")
    if trained is not None and to_day(cutoff) < to_day(trained):
        raise RegistryError(
            f"{label} was trained with data up to {trained}; it cannot predict at the earlier cutoff "
            f"{to_day(cutoff).date()} (it has seen what followed it)"
        )
    return label


def predict_registered(model: RegisteredModel, history: History, cutoff, horizon_days: float) -> pd.DataFrame:
    """Predict ``[cutoff, cutoff + horizon_days)`` with a registered model.

    :func:`check_registered` runs first; the forecaster's ``predict`` then
    checks the inputs it builds from ``history`` against the feature schema.
    The horizon is rounded to whole days
    (:func:`ltvcast.timeutil.horizon_window`), as ``ltvcast forecast`` does.

    Returns:
        The canonical predictions frame with ``model`` = ``"NAME:VERSION"``
        (a reference :func:`load_model` accepts).

    Raises:
        SchemaMismatchError: the manifest and the pickle disagree, or the
            data's features differ from the training features (the message
            names the missing, extra and retyped features).
        RegistryError: the cutoff is before the training cutoff.
        LtvcastError: as the forecaster's ``predict`` (e.g. no customer
            before the cutoff).
    """
    label = check_registered(model, cutoff)
    start, end = horizon_window(cutoff, horizon_days)
    frame = model.forecaster.predict(history, cutoff, float((end - start).days))
    frame["model"] = pd.Series(label, index=frame.index, dtype=frame["model"].dtype)
    return frame


# ---------------------------------------------------------------------------- ONNX
@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``model.onnx`` file.
        bytes: its size.
        sha256: its SHA-256 (hex), as in the manifest.
        opset: the ONNX opset of the graph.
        max_abs_diff: largest |ONNX − torch| over every output and checked row.
        max_abs_diff_by_output: the same per output name (``DeepForecaster.OUTPUT_NAMES``).
        checked_rows: rows compared (all batch sizes together).
    """

    path: Path
    bytes: int
    sha256: str
    opset: int
    max_abs_diff: float
    max_abs_diff_by_output: dict[str, float]
    checked_rows: int


def export_onnx(model: RegisteredModel, *, atol: float = TOLERANCE, seed: int = 0) -> OnnxExport:
    """Export a registered model's network to ``model.onnx`` in its version folder, checked against torch.

    The graph comes from the model's hook :meth:`~ltvcast.models.base.Forecaster.to_onnx`
    (deep models: :mod:`ltvcast.models.learned.deep.onnx`, which documents the
    check). Manifest field ``onnx``: ``file`` (``model.onnx``), ``bytes``,
    ``sha256``, ``opset``, ``exporter``, ``onnxruntime`` (version used for the
    check), ``max_abs_diff`` and ``max_abs_diff_by_output``, ``checked_rows``,
    ``atol``, ``created_at`` (UTC). Both files are written atomically
    (temporary file in the same folder, fsync, ``os.replace``): first
    ``model.onnx``, then the manifest; a reader that loads the version between
    the two replacements of a re-export sees a SHA-256 mismatch.

    At load (:func:`load_model`) the file's SHA-256 must equal the manifest's,
    else the load is refused with a :class:`RegistryError` (a changed or
    corrupt network must not score silently; export again to repair it,
    ``load_model(..., use_onnx=False)`` loads the torch network). A
    ``model.onnx`` the manifest does not record is ignored.

    Args:
        model: a registered deep model (:func:`load_model`; its folder ``model.path`` is written).
        atol: largest |ONNX − torch| accepted on any output (absolute).
        seed: seed of the generated check inputs.

    Returns:
        An :class:`OnnxExport`. ``model`` itself is not changed: load the
        version again to predict through the export.

    Raises:
        LtvcastError: the model is not a deep model (the message names its
            kind); the export fails; or an output differs from torch's by
            more than ``atol`` (nothing is written then).
        RegistryError: the version's manifest cannot be read.
        OSError: the folder cannot be written.
    """
    graph = model.forecaster.to_onnx(f"{model.name}:{model.version}", atol=atol, seed=seed)
    manifest = _read_manifest(model.path)
    path = model.path / ONNX_FILE
    _replace(path, graph.blob, like=model.path / manifest["artifact"].get("file", ARTIFACT))
    digest = hashlib.sha256(graph.blob).hexdigest()
    manifest["onnx"] = {
        "file": ONNX_FILE,
        "bytes": len(graph.blob),
        "sha256": digest,
        "opset": graph.opset,
        "exporter": graph.exporter,
        "onnxruntime": graph.onnxruntime,
        "max_abs_diff": graph.max_abs_diff,
        "max_abs_diff_by_output": graph.max_abs_diff_by_output,
        "checked_rows": graph.checked_rows,
        "atol": atol,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _replace(model.path / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False).encode(), like=model.path / MANIFEST)
    return OnnxExport(
        path, len(graph.blob), digest, graph.opset, graph.max_abs_diff, graph.max_abs_diff_by_output, graph.checked_rows
    )


def _attach_onnx(forecaster: Forecaster, folder: Path, entry: dict) -> None:
    """Make a loaded model predict through its recorded ONNX export (see :func:`export_onnx`).

    Raises:
        RegistryError: the file is missing or unreadable; its SHA-256 differs
            from the manifest's (changed or corrupt: the load is refused); the
            model has no ONNX runtime or onnxruntime cannot load the file.
    """
    if not isinstance(entry, dict):
        raise RegistryError(f"the manifest in {folder} records an ONNX export that is not an object")
    path = folder / str(entry.get("file", ONNX_FILE))
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read the ONNX export {path}: {exc.strerror or exc}") from None
    if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
        raise RegistryError(
            f"the ONNX export {path} was changed or is corrupt: its SHA-256 differs from the manifest's; export it "
            "again (`ltvcast export --model NAME:VERSION --format onnx`)"
        )
    try:
        forecaster.use_onnx(blob)
    except LtvcastError as exc:
        raise RegistryError(f"{folder}: {exc}") from None


# ---------------------------------------------------------------------------- category split
def save_category_split(model: RegisteredModel, split) -> dict:
    """Register a fitted category split (:class:`ltvcast.models.categories.CategorySplit`) with ``model``'s version.

    The split is pickled to ``categories.pkl`` in the version folder and the
    manifest gains ``categories``: ``file``, ``bytes``, ``sha256``, ``top``,
    ``layout``, ``windows``, ``categories`` (named, then ``other``),
    ``cutoff`` (day), ``horizon_days``, ``created_at`` (UTC). Both files are
    replaced atomically, the pickle first (as :func:`export_onnx`); saving
    again replaces the split. ``ltvcast next-categories``, ``ltvcast demand``
    and the web app then split with it instead of fitting one
    (:func:`load_category_split`).

    Returns:
        The manifest's ``categories`` entry.

    Raises:
        RegistryError: the split is not fitted, or was fitted at another
            cutoff or horizon than the model (its heads would describe
            another window).
        OSError: the folder cannot be written.
    """
    from ltvcast.models.categories import CategorySplit

    label = f"{model.name}:{model.version}"
    if not isinstance(split, CategorySplit) or not split.boosters_ or split.cutoff_ is None:
        raise RegistryError(f"{label}: only a fitted CategorySplit can be registered")
    cutoff, days = to_day(model.manifest["cutoff"]), float(model.manifest["horizon_days"])
    if to_day(split.cutoff_) != cutoff or abs(split.horizon_days_ - days) > 0.5:
        raise RegistryError(
            f"{label} was trained at {cutoff.date()} for {days:g} days; the split was fitted at "
            f"{to_day(split.cutoff_).date()} for {split.horizon_days_:g} days: fit it at the model's cutoff and horizon"
        )
    blob = pickle.dumps(split, protocol=pickle.HIGHEST_PROTOCOL)
    manifest = _read_manifest(model.path)
    like = model.path / manifest["artifact"].get("file", ARTIFACT)
    _replace(model.path / CATEGORIES_FILE, blob, like=like)
    entry = {
        "file": CATEGORIES_FILE, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
        "top": split.top, "layout": split.layout, "windows": split.windows, "categories": list(split.categories_),
        "cutoff": cutoff.date().isoformat(), "horizon_days": days,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["categories"] = entry
    _replace(model.path / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False).encode(), like=model.path / MANIFEST)
    model.manifest["categories"] = entry
    return entry


def load_category_split(model: RegisteredModel):
    """The category split registered with ``model`` (:func:`save_category_split`), or None when it has none.

    Raises:
        RegistryError: the recorded file is missing, unreadable, changed
            (SHA-256 differs from the manifest's) or not a category split.
    """
    from ltvcast.models.categories import CategorySplit

    entry = model.manifest.get("categories")
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise RegistryError(f"the manifest in {model.path} records a category split that is not an object")
    path = model.path / str(entry.get("file", CATEGORIES_FILE))
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read the category split {path}: {exc.strerror or exc}") from None
    if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
        raise RegistryError(f"the category split {path} is corrupt: its SHA-256 differs from the manifest's")
    try:
        split = pickle.loads(blob)
    except Exception as exc:  # unpickling fails in many ways (missing class, truncated data, ...)
        raise RegistryError(f"cannot load the category split {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(split, CategorySplit):
        raise RegistryError(f"{path} holds a {type(split).__name__}, not a category split")
    return split


def _replace(path: Path, data: bytes, like: Path | None = None) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, fsync, ``os.replace``).

    The file gets the permission bits of ``like`` when given (mkstemp's are 0600).
    """
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        if like is not None:
            os.chmod(tmp, stat.S_IMODE(like.stat().st_mode))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
