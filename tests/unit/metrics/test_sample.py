"""The minimum sample for annualised figures: the longer of 30 returns and one trading day of bars."""

from __future__ import annotations

import pytest

from titan_ray.domain.calendar import parse_frequency, periods_per_year
from titan_ray.metrics.sample import (
    ANNUALISED_FIELDS,
    MIN_RETURNS,
    WITHHELD_FIELDS,
    annualisation_sample,
    bars_per_day,
    withhold,
)


def _periods(freq: str, calendar: str) -> float:
    return periods_per_year(parse_frequency(freq), calendar)


@pytest.mark.parametrize(
    ("freq", "calendar", "per_day", "minimum"),
    [
        ("15min", "equities", 26, 30),  # a 6.5 h session is shorter than 30 returns
        ("5min", "equities", 78, 78),
        ("1min", "equities", 390, 390),
        ("7min", "equities", 56, 56),  # 390 / 7 = 55.7: a day needs 56 bars
        ("1h", "equities", 7, 30),  # 6.5 bars a session, rounded up
        ("1min", "continuous", 1440, 1440),
        ("1h", "continuous", 24, 30),
        ("1D", "equities", 1, 30),
        ("1D", "continuous", 1, 30),
        ("7D", "equities", 1, 30),  # weekly bars: 30 weeks
    ],
)
def test_minimum_is_the_longer_of_30_returns_and_one_trading_day(freq, calendar, per_day, minimum) -> None:
    periods = _periods(freq, calendar)
    assert bars_per_day(periods, calendar) == per_day
    assert annualisation_sample(0, periods, calendar).minimum == minimum


@pytest.mark.parametrize(
    ("freq", "calendar"),
    [("15min", "equities"), ("1min", "equities"), ("1min", "continuous"), ("1D", "equities")],
)
def test_boundary_exactly_at_the_minimum_is_enough_one_below_is_not(freq, calendar) -> None:
    periods = _periods(freq, calendar)
    minimum = annualisation_sample(0, periods, calendar).minimum
    below = annualisation_sample(minimum - 1, periods, calendar)
    at = annualisation_sample(minimum, periods, calendar)
    assert below.too_small and below.note is not None
    assert not at.too_small and at.note is None
    assert not annualisation_sample(minimum + 1, periods, calendar).too_small


def test_note_gives_the_count_the_minimum_and_the_day() -> None:
    s = annualisation_sample(26, _periods("15min", "equities"), "equities")
    assert (
        s.note
        == "26 returns; annualised figures need at least 30 (30 returns and one trading day of 26 bars)"
    )
    s = annualisation_sample(1000, _periods("1min", "continuous"), "continuous")
    assert (
        s.note
        == "1,000 returns; annualised figures need at least 1,440 (30 returns and one trading day of 1,440 bars)"
    )
    s = annualisation_sample(0, _periods("1D", "equities"), "equities")
    assert (
        s.note == "0 returns; annualised figures need at least 30 (30 returns and one trading day of 1 bar)"
    )


def test_withhold_nulls_the_annualised_fields_in_place_and_flags_the_row() -> None:
    row = {
        "model": "m",
        "total_return": 0.01,
        "cagr": -1.0,
        "sharpe": -62.0,
        "sortino": -80.0,
        "calmar": -877.0,
        "max_drawdown": -0.02,
        "n_trades": 3,
        "turnover": 15333.0,
        "sharpe_vs_benchmark_p": 0.5,
        "beats_benchmark": False,
        "halted": None,
    }
    short = withhold(row, annualisation_sample(26, _periods("15min", "equities"), "equities"))
    assert list(short) == [*row, "sample_too_small", "sample_note"]  # keys keep their places, flag last
    assert {k: short[k] for k in WITHHELD_FIELDS} == dict.fromkeys(WITHHELD_FIELDS)
    kept = ("model", "total_return", "max_drawdown", "n_trades", "halted")
    assert {k: short[k] for k in kept} == {k: row[k] for k in kept}
    assert short["sample_too_small"] is True and short["sample_note"].startswith("26 returns;")
    assert row["sharpe"] == -62.0, "the caller's row is not changed"

    enough = withhold(row, annualisation_sample(30, _periods("15min", "equities"), "equities"))
    assert enough == {**row, "sample_too_small": False, "sample_note": None}


def test_annualised_fields_are_those_of_performance_that_scale_with_periods() -> None:
    assert set(ANNUALISED_FIELDS) == {"cagr", "sharpe", "sortino", "calmar", "turnover"}
    assert MIN_RETURNS == 30


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((-1, 6552.0, "equities"), "n_returns"),
        ((10, 0.0, "equities"), "periods"),
        ((10, 252.0, "lunar"), "calendar"),
    ],
)
def test_bad_inputs_name_the_field(args, field) -> None:
    with pytest.raises(ValueError, match=field):
        annualisation_sample(*args)
