"""Sources to validated canonical rows: readers, column mapping, validation, quarantine, multi-source resolution, fx, returns, privacy."""
