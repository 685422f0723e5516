"""Point-in-time features and labels: nothing at or after the cutoff is used as history."""

from ltvcast.features.build import FeatureSet, build, feature_sql
from ltvcast.features.catalog import FeatureSpec, feature_specs
from ltvcast.features.labels import horizon_labels, next_purchase_labels
from ltvcast.features.rfm import rfm_summary
from ltvcast.features.sequences import CHANNEL_DOCS, DEFAULT_CHANNELS, SEQUENCE_CHANNELS

__all__ = [
    "CHANNEL_DOCS",
    "DEFAULT_CHANNELS",
    "SEQUENCE_CHANNELS",
    "FeatureSet",
    "FeatureSpec",
    "build",
    "feature_specs",
    "feature_sql",
    "horizon_labels",
    "next_purchase_labels",
    "rfm_summary",
]
