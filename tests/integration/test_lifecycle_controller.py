"""``LifecycleController`` in-process, without Ray: approvals, rejections, a missing champion, a dead
webhook, a rollback made elsewhere, and stopping.

The controller is a plain class whose loop runs on a thread; these tests build it with a settings
dict, poll ``state()`` and read the registry (a folder of the test's). Retraining is off, so no Ray
task is started. The live feed is ``tests/drift_feed.py``'s: trending before ``DRIFT_BAR``,
mean-reverting at twice the volatility from it. The models are fitted once for the module: a
champion on the trending regime of the feed's history, and a challenger on the mean-reverting
regime of an independent draw of the same market (another seed), so the live bars it is judged on
are out of its sample. ``tests/integration/test_lifecycle.py`` covers the same loop end to end on
Serve (auto promotion, alerts, retraining, rollback over HTTP); this file covers what is awkward
to reach through Serve.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from drift_feed import feed_config, write_drift_feed

from titan_ray.config import DataConfig, LedgerConfig, RiskConfig
from titan_ray.data.providers import make_provider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.calendar import periods_per_year
from titan_ray.lifecycle.controller import CONTROLLER, LifecycleController
from titan_ray.lifecycle.retrain import fit_and_validate
from titan_ray.models.learned import LearnedModel
from titan_ray.registry import ModelRegistry

pytestmark = [pytest.mark.slow]

NAME = "lc"
BARS, DRIFT_BAR = 4000, 2000
TREND = (500, DRIFT_BAR)  # the champion's training window: the trending regime
REVERT = (DRIFT_BAR, 3000)  # the challenger's, on the independent draw: the mean-reverting regime
PARAMS = {"horizon": 1, "entry": 0.5, "allow_short": True, "n_estimators": 60, "cv_folds": 0}
LEDGER = {"initial_cash": 1_000_000, "commission_bps": 1}
MIN_BARS = 200
SEED = 7


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_drift_feed(tmp_path_factory.mktemp("feed") / "live", bars=BARS, drift_bar=DRIFT_BAR)


def _fit(folder: Path, window: tuple[int, int]) -> tuple[LearnedModel, BarBatch]:
    market = make_provider(DataConfig.model_validate(feed_config(folder)), SEED).load()
    bars = market.bars.slice(*window)
    model = fit_and_validate(NAME, "lightgbm", PARAMS, bars, validation_bars=300,
                             ledger=LedgerConfig.model_validate(LEDGER), risk=RiskConfig(),
                             calendar=market.calendar.value,
                             periods_per_year=periods_per_year(market.frequency, market.calendar), seed=SEED)
    return model, bars


@pytest.fixture(scope="module")
def trend_model(feed: Path) -> tuple[LearnedModel, BarBatch]:
    return _fit(feed, TREND)


@pytest.fixture(scope="module")
def revert_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[LearnedModel, BarBatch]:
    other = write_drift_feed(tmp_path_factory.mktemp("feed") / "other", bars=BARS, drift_bar=DRIFT_BAR, seed=4)
    return _fit(other, REVERT)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def _register(registry: ModelRegistry, fitted: tuple[LearnedModel, BarBatch]) -> int:
    model, bars = fitted
    return registry.register_model(model, bars, name=NAME, extra={"symbols": list(bars.symbols)}).version


def _settings(registry: ModelRegistry, feed: Path, *, start_bar: int, speed: float = 0.0,
              **sections: dict[str, Any]) -> dict[str, Any]:
    promotion = {"mode": "auto", "min_bars": MIN_BARS, "n_resamples": 300, **sections.pop("promotion", {})}
    return {"model": NAME, "registry": str(registry.root), "feed": feed_config(feed), "start_bar": start_bar,
            "speed": speed, "chunk_bars": 10, "seed": SEED, "ledger": LEDGER, "retrain": {"enabled": False},
            "drift": {"window_bars": 200, "check_every_bars": 50, "perf_window_bars": 200},
            "promotion": promotion, **sections}


@pytest.fixture
def start() -> Iterator[Callable[[dict[str, Any]], LifecycleController]]:
    """Builds controllers and stops every one at the end, whatever the test did."""
    started: list[LifecycleController] = []

    def make(settings: dict[str, Any]) -> LifecycleController:
        started.append(LifecycleController(settings))
        return started[-1]

    yield make
    for controller in started:
        assert controller.stop(), "the lifecycle thread did not end within 30 s"


def wait_for(controller: LifecycleController, check: Callable[[dict[str, Any]], Any], timeout: float) -> dict:
    """The controller's state once ``check(state)`` holds; fails with the last state, at once when the loop
    has ended (failed, the feed ran out, stopped) without it."""
    deadline = time.monotonic() + timeout
    while True:
        state = controller.state()
        if check(state):
            return state
        if state["status"] == "failed":
            raise AssertionError(f"the controller failed: {state['error']}\n{state.get('traceback')}")
        if state["status"] in ("feed ended", "stopped"):
            raise AssertionError(f"the loop ended first; the last state: {_brief(state)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s; the last state: {_brief(state)}")
        time.sleep(0.1)


def _brief(state: dict[str, Any]) -> dict[str, Any]:
    skip = {"drift", "alerts"}  # the per-feature drift table is long and says little here
    return {k: v for k, v in state.items() if k not in skip}


def _challenger(state: dict[str, Any]) -> dict[str, Any]:
    return state["challenger"] or {}


def test_approval_mode_waits_for_a_person_then_follows_the_promotion(
        registry, feed, trend_model, revert_model, start):
    champion, challenger = _register(registry, trend_model), _register(registry, revert_model)
    registry.set_alias(NAME, "champion", champion, who="test", why="the first champion")
    registry.set_alias(NAME, "challenger", challenger, who="test", why="fitted on the new market")
    start_bar = DRIFT_BAR + 50
    # speed: the feed must still be live when the person approves (at speed 0 it can end first)
    controller = start(_settings(registry, feed, start_bar=start_bar, speed=200,
                                 promotion={"mode": "approval", "max_looks": 3}))

    state = wait_for(controller, lambda s: _challenger(s).get("pending_approval"), 30)
    looked = _challenger(state)
    evidence = looked["evidence"]
    assert looked["verdict"] == "promote" and looked["looks"] == 1 and looked["version"] == challenger
    assert evidence["checks"] == {"sample": True, "significance": True, "drawdown": True, "latency": True}
    assert evidence["look"] == 1 and evidence["n_bars"] == MIN_BARS
    assert evidence["champion"] == champion and evidence["challenger"] == challenger
    assert evidence["from_bar"] == start_bar and evidence["to_bar"] == start_bar + MIN_BARS
    assert evidence["p_value"] < evidence["level"] == pytest.approx(0.05 / 3)
    assert evidence["sharpe_challenger"] > evidence["sharpe_champion"]
    assert controller.evidence() == evidence

    # past the second look's bar: nothing is promoted, and the rule is not judged again, without a person
    wait_for(controller, lambda s: s["bar"] >= evidence["to_bar"] + MIN_BARS + 50, 30)
    assert registry.aliases(NAME) == {"champion": champion, "challenger": challenger}
    assert [e["action"] for e in registry.history(NAME)] == ["assign", "assign"]
    state = controller.state()
    assert state["champion"]["version"] == champion and state["promotions"] == 0
    assert _challenger(state)["looks"] == 1 and _challenger(state)["evidence"] == evidence

    event = registry.promote(NAME, who="desk", why="approved", evidence=controller.evidence())
    assert event["evidence"] == evidence and event["archived"] == champion
    state = wait_for(controller, lambda s: (s["champion"] or {}).get("version") == challenger, 5)
    assert state["challenger"] is None and state["status"] == "running"
    assert state["champion"]["since_bar"] > evidence["to_bar"] and state["promotions"] == 0
    assert controller.evidence() is None
    assert registry.aliases(NAME) == {"champion": challenger} and registry.archived(NAME) == [champion]
    assert [(e["action"], e["who"]) for e in registry.history(NAME)] == [
        ("assign", "test"), ("assign", "test"), ("promote", "desk")]


def test_a_challenger_no_better_is_rejected_after_the_last_look(registry, feed, trend_model, start):
    champion = _register(registry, trend_model)
    twin = _register(registry, trend_model)  # the same fitted model again: it decides exactly as the champion
    registry.set_alias(NAME, "champion", champion, who="test", why="the first champion")
    registry.set_alias(NAME, "challenger", twin, who="test", why="a refit on the same bars")
    start_bar = 1500
    controller = start(_settings(registry, feed, start_bar=start_bar, promotion={"max_looks": 2}))

    wait_for(controller, lambda s: s["rejections"] >= 1 and s["challenger"] is None, 30)
    events = registry.history(NAME)
    assert [(e["action"], e["alias"]) for e in events] == [
        ("assign", "champion"), ("assign", "challenger"), ("reject", "challenger")]
    reject = events[-1]
    assert reject["who"] == CONTROLLER and reject["previous"] == twin and reject["archived"] == twin
    assert reject["version"] is None and "significance" in reject["why"] and "look 2/2" in reject["why"]
    evidence = reject["evidence"]
    assert evidence["checks"] == {"sample": True, "significance": False, "drawdown": True, "latency": True}
    assert evidence["look"] == 2 and evidence["max_looks"] == 2 and evidence["n_bars"] == 2 * MIN_BARS
    assert evidence["to_bar"] == start_bar + 2 * MIN_BARS and evidence["challenger"] == twin
    assert evidence["sharpe_difference"] == 0.0 and evidence["p_value"] >= evidence["level"]
    assert registry.aliases(NAME) == {"champion": champion} and registry.archived(NAME) == [twin]
    assert registry.stage(NAME, twin) == "archived"
    state = controller.state()
    assert state["rejections"] == 1 and state["promotions"] == 0
    assert state["champion"]["version"] == champion


def test_without_a_champion_it_waits_and_says_how_to_set_one(registry, feed, trend_model, start):
    start_bar = 1500
    controller = start(_settings(registry, feed, start_bar=start_bar))  # nothing registered yet

    state = wait_for(controller, lambda s: s["error"] is not None, 10)
    assert state["status"] == "waiting for a champion" and state["bar"] is None and state["bars"] == BARS
    assert f"titan-ray registry alias {NAME} champion VERSION" in state["error"]
    assert str(registry.root) in state["error"]
    version = _register(registry, trend_model)  # registered, still no alias: still waiting
    time.sleep(1.5)  # past the controller's next look at the registry (every second)
    state = controller.state()
    assert state["status"] == "waiting for a champion" and state["bar"] is None and state["champion"] is None

    registry.set_alias(NAME, "champion", version, who="test", why="the first champion")
    state = wait_for(controller, lambda s: (s["bar"] or 0) > start_bar, 10)
    assert state["status"] in ("running", "feed ended") and state["error"] is None
    assert state["champion"] == {"version": version, "since_bar": start_bar}


def test_a_dead_webhook_is_counted_and_the_loop_goes_on(registry, feed, trend_model, start):
    version = _register(registry, trend_model)
    registry.set_alias(NAME, "champion", version, who="test", why="the first champion")
    with socket.socket() as probe:  # a free loopback port; closed, so nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = start(_settings(registry, feed, start_bar=DRIFT_BAR - 200,
                                 alerts={"webhook_url": f"http://127.0.0.1:{port}/alerts", "timeout_s": 2}))

    state = wait_for(controller, lambda s: s["webhook"]["failed"] >= 1, 30)
    alert_bar = state["alerts"][0]["bar"]
    assert alert_bar > DRIFT_BAR and state["alerts"][0]["reasons"]
    assert state["webhook"]["sent"] == 0 and state["webhook"]["last_error"].startswith("URLError")
    state = wait_for(controller, lambda s: s["bar"] >= alert_bar + 200, 30)  # still deciding bars
    assert state["status"] in ("running", "feed ended") and state["error"] is None
    assert state["alerts_total"] == state["webhook"]["failed"] >= 1 and state["webhook"]["sent"] == 0


def test_a_rollback_made_elsewhere_changes_the_champion_it_runs(registry, feed, trend_model, revert_model, start):
    first, second = _register(registry, trend_model), _register(registry, revert_model)
    registry.set_alias(NAME, "champion", first, who="test", why="the first champion")
    registry.promote(NAME, who="test", why="the second champion", version=second)
    controller = start(_settings(registry, feed, start_bar=1500, speed=100))  # still running when rolled back

    state = wait_for(controller, lambda s: s["status"] == "running", 10)
    assert state["champion"] == {"version": second, "since_bar": 1500}
    registry.rollback(NAME, who="risk-desk", why="the old model back")
    state = wait_for(controller, lambda s: (s["champion"] or {}).get("version") == first, 5)
    since = state["champion"]["since_bar"]
    assert since > 1500 and state["status"] == "running"
    # the rolling Sharpe starts again with the champion: the next check counts only its own bars
    state = wait_for(controller, lambda s: (s["drift"] or {}).get("at_bar", 0) > since, 10)
    assert state["performance"]["window_bars"] == state["drift"]["at_bar"] - since
    assert state["performance"]["live_sharpe"] is None  # fewer than perf_window_bars yet
    assert registry.aliases(NAME) == {"champion": first} and registry.archived(NAME) == [second]


def test_stop_ends_the_thread_in_every_phase(registry, feed, trend_model, start):
    # waiting for a champion: stop does not wait for the feed, nor for more than the one-second retry
    waiting = start(_settings(registry, feed, start_bar=1500))
    wait_for(waiting, lambda s: s["error"] is not None, 10)
    began = time.monotonic()
    assert waiting.stop() is True and time.monotonic() - began < 5
    assert not waiting._thread.is_alive()
    state = waiting.state()
    assert state["status"] == "stopped" and state["champion"] is None
    assert state["bar"] in (None, 1500)  # no bar decided (the final state names start_bar as the position)

    # running on a paced feed that would last a minute
    version = _register(registry, trend_model)
    registry.set_alias(NAME, "champion", version, who="test", why="the first champion")
    running = start(_settings(registry, feed, start_bar=1000, speed=50))
    wait_for(running, lambda s: s["status"] == "running", 10)
    began = time.monotonic()
    assert running.stop() is True and time.monotonic() - began < 5
    assert not running._thread.is_alive()
    state = running.state()
    assert state["status"] == "stopped" and 1000 < state["bar"] < BARS
    time.sleep(0.3)
    assert running.state()["bar"] == state["bar"]  # no bar after the stop

    # at speed 0 the feed runs out first: the thread ends by itself and stop still answers True
    ended = start(_settings(registry, feed, start_bar=BARS - 300))
    state = wait_for(ended, lambda s: s["status"] == "feed ended", 30)
    assert state["bar"] == BARS
    ended._thread.join(timeout=5)
    assert not ended._thread.is_alive() and ended.stop() is True
    assert ended.state()["status"] == "feed ended"


def test_a_new_champion_restarts_the_challengers_evaluation(registry, feed, trend_model, revert_model, start):
    """A challenger is judged against one champion: when the champion changes under it (a rollback or a
    promotion made elsewhere), its paired books start again from that bar."""
    v1, v2 = _register(registry, trend_model), _register(registry, trend_model)
    v3 = _register(registry, revert_model)
    registry.set_alias(NAME, "champion", v1, why="first")
    registry.set_alias(NAME, "challenger", v3, why="retrained")
    controller = start(_settings(registry, feed, start_bar=DRIFT_BAR + 50, speed=100,
                                 promotion={"min_bars": 1000}))
    before = wait_for(controller, lambda s: (s["challenger"] or {}).get("bars", 0) >= 50, 30)["challenger"]
    registry.set_alias(NAME, "champion", v2, why="another champion", who="desk")
    after = wait_for(controller, lambda s: s["champion"]["version"] == v2 and s["challenger"] is not None
                     and s["challenger"]["since_bar"] > before["since_bar"], 10)["challenger"]
    assert after["version"] == v3 and after["looks"] == 0  # the same challenger, judged from the new bar
    assert registry.aliases(NAME) == {"champion": v2, "challenger": v3}
