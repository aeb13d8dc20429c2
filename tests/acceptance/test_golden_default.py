"""The default arena, pinned: a redesign may move code, never results.

``golden/default_leaderboard.json`` is the ``leaderboard.json`` that ``titan-ray arena`` (the default
config) wrote, byte for byte: first with the code before the one-domain redesign (commit 03bc340);
re-recorded once since, for issue 16's deliberate changes (a ``ppo`` row, the ``stack`` row stacking
the arena's models, ``sample_too_small``/``sample_note`` on every row), every other model's figures
checked equal to the 03bc340 recording (``recorded_with`` in the digests says so); and again for
issue 17's ``regimes`` on every row (each model's Sharpe, return and bars per market regime), every
row checked equal to the recording before it once that key is left out; and for issue 20's
``var_95``, ``cvar_95``, ``var_99``, ``cvar_99`` and ``implementation_shortfall``, every other figure
checked equal to a run of the code before it (commit a5922f9) on the same machine.
``golden/default_digests.json`` holds SHA-256 digests of that run's explanations (id, sentence,
features, outcome) and fills (cause, quantity, price, value and commission), computed as
``_digests`` computes them here.

The run is deterministic on one machine (the same config and seed give the same bytes, learned
models included), but not across CPUs: numpy's vectorised exp and log differ in the last bit between
instruction sets (AVX-512 or not), and the synthetic market is made with them. So the comparison is
of every key, text and count exactly, and of every float to 1e-9 relative (a change of behaviour
moves figures far more than that); the digests are of floats rounded to 9 significant digits and of
money to a thousandth of the currency unit.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from titan_ray.arena.runner import run_arena
from titan_ray.config import default_config_path, load_config

GOLDEN = Path(__file__).parent / "golden"

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _rounded(x: float) -> float:
    return float(f"{x:.9g}") if isinstance(x, float) and math.isfinite(x) else x


def _features(text: str) -> str:
    return json.dumps([{k: _rounded(v) for k, v in f.items()} for f in json.loads(text)])


def _digests(out: Path) -> dict[str, object]:
    decisions = pd.read_parquet(out / "decisions.parquet")
    trades = pd.read_parquet(out / "trades.parquet")
    columns = ["decision_id", "sentence", "features", "order_status", "filled_quantity"]
    decisions = decisions[columns].assign(features=decisions["features"].map(_features))
    fills = trades[trades["record"] == "fill"][
        ["model", "decision_id", "quantity", "price", "value_micro", "commission_micro"]
    ]
    fills = fills.assign(price=fills["price"].map(_rounded), value_micro=(fills["value_micro"] // 1000),
                         commission_micro=(fills["commission_micro"] // 1000))
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


def _same(got: object, want: object, where: str = "leaderboard") -> None:
    """Equal structure, keys in order, texts and integers; floats to 1e-9 relative."""
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {len(got)} rows != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    else:
        assert got == want and type(got) is type(want), f"{where}: {got!r} != {want!r}"


def test_default_leaderboard_is_the_recorded_run(default_run: Path) -> None:
    _same(json.loads((default_run / "leaderboard.json").read_text()),
          json.loads((GOLDEN / "default_leaderboard.json").read_text()))


def test_default_explanations_and_fills_are_those_of_the_recorded_run(default_run: Path) -> None:
    recorded = json.loads((GOLDEN / "default_digests.json").read_text())
    assert _digests(default_run) == {k: v for k, v in recorded.items() if k != "recorded_with"}
