"""The default arena, pinned: a redesign may move code, never results.

``golden/default_leaderboard.json`` is the ``leaderboard.json`` that ``titan-ray arena`` (the default
config) wrote, byte for byte: first with the code before the one-domain redesign (commit 03bc340);
re-recorded once since, for issue 16's deliberate changes (a ``ppo`` row, the ``stack`` row stacking
the arena's models, ``sample_too_small``/``sample_note`` on every row), every other model's figures
checked equal to the 03bc340 recording (``recorded_with`` in the digests says so); and again for
issue 17's ``regimes`` on every row (each model's Sharpe, return and bars per market regime), every
row checked equal to the recording before it once that key is left out.
``golden/default_digests.json`` holds SHA-256 digests of that run's explanations (id, sentence,
features, outcome) and fills (cause, quantity, price, exact value and commission), computed as
``_digests`` computes them here. The run is deterministic (the same config and seed give the same
bytes, learned models included), so any difference is a change of behaviour.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from titan_ray.arena.runner import run_arena
from titan_ray.config import default_config_path, load_config

GOLDEN = Path(__file__).parent / "golden"

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _digests(out: Path) -> dict[str, object]:
    decisions = pd.read_parquet(out / "decisions.parquet")
    trades = pd.read_parquet(out / "trades.parquet")
    columns = ["decision_id", "sentence", "features", "order_status", "filled_quantity"]
    fills = trades[trades["record"] == "fill"][
        ["model", "decision_id", "quantity", "price", "value_micro", "commission_micro"]
    ]
    return {
        "decisions_sha256": hashlib.sha256(decisions[columns].to_csv(index=False).encode()).hexdigest(),
        "n_decisions": len(decisions),
        "fills_sha256": hashlib.sha256(fills.to_csv(index=False).encode()).hexdigest(),
        "n_fills": len(fills),
    }


@pytest.fixture(scope="module")
def default_run(ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden-default")
    run_arena(load_config(default_config_path()), out)
    return out


def test_default_leaderboard_is_byte_identical_to_the_recorded_run(default_run: Path) -> None:
    assert (default_run / "leaderboard.json").read_bytes() == (GOLDEN / "default_leaderboard.json").read_bytes()


def test_default_explanations_and_fills_are_those_of_the_recorded_run(default_run: Path) -> None:
    recorded = json.loads((GOLDEN / "default_digests.json").read_text())
    assert _digests(default_run) == {k: v for k, v in recorded.items() if k != "recorded_with"}
