"""A registered model's drift reference: its features and scores over the window it was trained on.

``write_profile`` stores ``drift_profile.json`` in a version's folder when the version is registered
(``ModelRegistry.register_model``): per feature and for the model's scores, the training window's
bins and a sample (``titan_ray.metrics.drift.Profile``). The lifecycle controller compares the
live feed against it. A version without the file (a rule model, or one registered before profiles
existed) is compared against the first live window its controller sees instead, which the state
says (``reference: "first live window"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.metrics.drift import Profile

PROFILE_FILE = "drift_profile.json"


class ModelProfile(NamedTuple):
    features: Profile
    scores: Profile


def live_rows(model: Any, bars: BarBatch) -> tuple[np.ndarray, np.ndarray]:
    """A learned model's feature rows (T, S, F) over ``bars`` (from a fresh stream) and its scores
    (T - context + 1, S) on them."""
    X = model.features.transform(bars)
    return X, model.score(X)


def profile_of(model: Any, bars: BarBatch, *, seed: int = 0) -> ModelProfile | None:
    """The reference of a fitted learned model over ``bars``; None for a model without engineered
    features (a rule model, PPO)."""
    if getattr(model, "features", None) is None or not hasattr(model, "score"):
        return None
    X, scores = live_rows(model, bars)
    return ModelProfile(Profile.from_rows(X, model.features.names, seed=seed),
                        Profile.from_rows(scores.reshape(-1, 1), ["score"], seed=seed))


def write_profile(model: Any, bars: BarBatch, folder: Path) -> None:
    """``drift_profile.json`` of ``model`` over its training bars into a version folder being written."""
    try:
        profile = profile_of(model, bars)
    except ValueError:  # a window too short to bin: the controller falls back to the first live window
        return
    if profile is not None:
        (Path(folder) / PROFILE_FILE).write_text(json.dumps(
            {"features": profile.features.to_json(), "scores": profile.scores.to_json()}) + "\n")


def read_profile(folder: Path) -> ModelProfile | None:
    path = Path(folder) / PROFILE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return ModelProfile(Profile.from_json(raw["features"]), Profile.from_json(raw["scores"]))
