"""Point-in-time features and labels: nothing at or after the cutoff is used as history."""

from ltvcast.features.labels import horizon_labels
from ltvcast.features.rfm import rfm_summary

__all__ = ["rfm_summary", "horizon_labels"]
