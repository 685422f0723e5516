"""Canonical schemas, readers, cleaning, quarantine and built-in datasets."""
