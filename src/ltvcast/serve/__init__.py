"""The real-time prediction service and the online customer state.

* :mod:`.events` — the events the API accepts (pydantic);
* :mod:`.state` — the per-customer online state, its incremental update, the RFM summary at a cutoff;
* :mod:`.online`, :mod:`.sqlite_store`, :mod:`.redis_store` — the event log and the state (SQLite default, Redis);
* :mod:`.sync` — the store's history into the online state, the online log into the store (``ltvcast sync``);
* :mod:`.model` — the served model (registry, promotion watch, atomic swap) and predictions;
* :mod:`.auth`, :mod:`.metrics`, :mod:`.app` — API keys, Prometheus metrics, the FastAPI app (``ltvcast serve``).
"""
