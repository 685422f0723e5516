"""What ``ltvcast ui`` (the local, read-only app) needs besides the app: a model to show and a key to sign in with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import LtvcastError, RegistryError
from ltvcast.models.catalog import make_forecaster
from ltvcast.registry import list_models, load_model, parse_ref, promoted_version, save_model
from ltvcast.serve.auth import ApiKey, KeyRing, hash_key, new_key
from ltvcast.timeutil import to_day

#: The model fitted when the registry holds none: BG/NBD with Gamma-Gamma spend.
DEFAULT_KIND = "bgnbd"
#: Its horizon, and how far before the data end it is fitted (so its window has matured: the overview's backtest).
DEFAULT_HORIZON_DAYS = 182.0


def one_time_keys() -> tuple[KeyRing, str]:
    """A key ring of one new random read key (for a local app started without keys) and that key.

    The key lives only in this process: it is printed once at start and forgotten at exit.
    """
    key = new_key()
    return KeyRing([ApiKey("local", hash_key(key), frozenset({"read"}))]), key


def pick_model(registry: Path, model: str | None, exclude=()) -> str | None:
    """The model reference to show: ``model`` if given; else the registry's only name not in ``exclude``.

    Returns:
        The reference; None when the registry is empty, missing, or holds only
        excluded names (the caller then fits a temporary model).

    Raises:
        LtvcastError: several candidate names and no ``model``.
    """
    if model is not None:
        return model
    try:
        names = sorted(set(list_models(registry)["name"]) - set(exclude))
    except LtvcastError:
        return None
    if len(names) > 1:
        raise LtvcastError(f"the registry {registry} holds several models ({', '.join(names)}): choose one with --model")
    return names[0] if names else None


def unusable_models(registry: Path, history: History) -> dict[str, str]:
    """The registry's models that cannot show ``history``, each with the reason (name -> reason).

    A model (its promoted version, else its latest) cannot when its manifest's
    ``data.origin`` names another source (``dataset NAME`` or a store path,
    compared as resolved paths), when it was trained at a cutoff after the
    app's (the day after the data end: it has seen days this data lacks), or
    when it cannot be loaded. A manifest without an origin is not judged on it.
    An empty or missing registry gives ``{}``.
    """
    try:
        names = sorted(set(list_models(registry)["name"]))
    except LtvcastError:
        return {}
    cutoff = (history.observation_end + pd.Timedelta(days=1)).normalize()
    out = {}
    for name in names:
        try:
            manifest = load_model(name, registry).manifest
        except LtvcastError as exc:
            out[name] = f"cannot be loaded ({exc})"
            continue
        origin = (manifest.get("data") or {}).get("origin")
        if origin is not None and not _same_source(origin, history.origin):
            out[name] = f"trained on {origin}"
        elif to_day(manifest["cutoff"]) > to_day(cutoff):
            out[name] = (f"trained at {manifest['cutoff']}, after this data's end "
                         f"{history.observation_end.date()}")
    return out


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.startswith("dataset ") or b.startswith("dataset "):
        return False
    return Path(a).resolve() == Path(b).resolve()


def fit_default(history: History, registry: Path) -> str:
    """Fit :data:`DEFAULT_KIND` at ``data end − 182 days`` for 182 days and register it in ``registry``.

    Returns:
        The registered ``NAME:VERSION``.

    Raises:
        LtvcastError: as the model's ``fit`` (e.g. no customer before that cutoff).
    """
    cutoff = (history.observation_end - pd.Timedelta(days=DEFAULT_HORIZON_DAYS - 1)).normalize()
    model = make_forecaster(DEFAULT_KIND).fit(history, cutoff, DEFAULT_HORIZON_DAYS)
    reg = save_model(model, name=f"ui-{DEFAULT_KIND}", cutoff=cutoff, horizon_days=DEFAULT_HORIZON_DAYS,
                     history=history, root=registry)
    return f"{reg.name}:{reg.version}"


def current_label(registry: Path, ref: str) -> str:
    """``NAME:VERSION`` that ``ref`` means now: itself when pinned, else the promoted version, else the latest.

    Raises:
        RegistryError: a bad reference, or no such model.
    """
    parsed = parse_ref(ref)
    if parsed.version is not None:
        return str(parsed)
    version = promoted_version(parsed.name, registry)
    if version is None:
        versions = list_models(registry).query("name == @parsed.name")["version"]
        if versions.empty:
            raise RegistryError(f"no model {parsed.name!r} in the registry {registry}")
        version = int(versions.max())
    return f"{parsed.name}:{version}"
