"""Features computed from bars, causally: see ``pipeline``."""

from titan_ray.features.pipeline import ALL_FEATURES, DESCRIPTIONS, FeatureEngine, FeatureStream

__all__ = ["ALL_FEATURES", "DESCRIPTIONS", "FeatureEngine", "FeatureStream"]
