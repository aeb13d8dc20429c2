"""FileProvider: CSV and Parquet layouts, time zones, per-row rejections and the errors' fixes."""

from __future__ import annotations

import gzip
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from titan_ray.config import DataConfig
from titan_ray.data.files import FileProvider
from titan_ray.data.lean import read_lean_zip, write_csv
from titan_ray.data.market import BadBarRule, DataError, MarketData
from titan_ray.data.providers import make_provider

NY = "America/New_York"
SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"

CLEAN = """\
timestamp,open,high,low,close,volume
2024-01-02 09:30,10,11,9,10.5,100
2024-01-02 09:45,10.5,11.5,10,11,200
2024-01-02 10:00,11,12,10.5,11.5,300
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path, **data: object) -> MarketData:
    provider = "parquet" if str(path).endswith(".parquet") else "csv"
    return FileProvider(DataConfig(provider=data.pop("provider", provider), path=str(path), **data)).load()


def ny(text: str) -> int:
    return pd.Timestamp(text, tz=NY).as_unit("ns").value


def utc(text: str) -> int:
    return pd.Timestamp(text, tz="UTC").as_unit("ns").value


def rules(market: MarketData) -> list[tuple[int, BadBarRule]]:
    return [(r.row, r.rule) for r in market.rejected]


# --- layouts ----------------------------------------------------------------------------------


def test_single_csv_file_is_one_symbol_named_after_the_file(tmp_path: Path) -> None:
    market = load(write(tmp_path, "aapl.csv", CLEAN))
    b = market.bars
    assert b.symbols == ("AAPL",)
    assert b.timestamps.tolist() == [ny("2024-01-02 09:30"), ny("2024-01-02 09:45"), ny("2024-01-02 10:00")]
    assert b.open[:, 0].tolist() == [10, 10.5, 11]
    assert b.high[:, 0].tolist() == [11, 11.5, 12]
    assert b.low[:, 0].tolist() == [9, 10, 10.5]
    assert b.close[:, 0].tolist() == [10.5, 11, 11.5]
    assert b.volume[:, 0].tolist() == [100, 200, 300]
    assert market.frequency == pd.Timedelta("15min")
    assert market.rejected == ()
    assert "aapl.csv" in market.source


def test_single_file_takes_the_one_configured_symbol_and_frequency(tmp_path: Path) -> None:
    market = load(write(tmp_path, "prices.csv", CLEAN), symbols=["XYZ"], frequency="5min")
    assert market.bars.symbols == ("XYZ",)
    assert market.frequency == pd.Timedelta("5min")


def test_make_provider_reads_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "spy.csv", CLEAN)
    market = make_provider(DataConfig(provider="csv", path=str(path)), seed=1).load()
    assert market.bars.symbols == ("SPY",)


def test_folder_holds_one_file_per_symbol_gzip_included(tmp_path: Path) -> None:
    write(tmp_path, "msft.csv", CLEAN)
    with gzip.open(tmp_path / "aapl.csv.gz", "wt") as f:
        f.write(CLEAN)
    write(tmp_path, "notes.txt", "not data")
    market = load(tmp_path)
    assert market.bars.symbols == ("AAPL", "MSFT")
    assert market.bars.close.shape == (3, 2)
    picked = load(tmp_path, symbols=["MSFT"])
    assert picked.bars.symbols == ("MSFT",)


def test_folder_missing_a_configured_symbol_names_it(tmp_path: Path) -> None:
    write(tmp_path, "aapl.csv", CLEAN)
    with pytest.raises(DataError, match=r"no file for symbol\(s\) TSLA, NVDA .*symbols there: AAPL"):
        load(tmp_path, symbols=["AAPL", "TSLA", "NVDA"])


def test_parquet_file_and_folder_with_timestamps_in_the_index(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Open": [10.0, 10.5],
            "High": [11.0, 11.5],
            "Low": [9.0, 10.0],
            "Close": [10.5, 11.0],
            "Volume": [1, 2],
        },
        index=pd.DatetimeIndex(["2024-01-02 14:30", "2024-01-02 14:45"], tz="UTC", name="Date"),
    )
    frame.to_parquet(tmp_path / "spy.parquet")
    frame.iloc[:1].to_parquet(tmp_path / "qqq.parquet")
    single = load(tmp_path / "spy.parquet")
    assert single.bars.symbols == ("SPY",)
    assert single.bars.timestamps.tolist() == [utc("2024-01-02 14:30"), utc("2024-01-02 14:45")]
    assert single.bars.close[:, 0].tolist() == [10.5, 11.0]
    folder = load(tmp_path, provider="parquet")
    assert folder.bars.symbols == ("QQQ", "SPY")
    assert np.isnan(folder.bars.close[1, 0])
    assert folder.bars.volume[1, 0] == 0


def test_parquet_with_a_missing_value_rejects_that_row(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-01-02 09:30", "2024-01-02 09:45", "2024-01-02 10:00"]),
            "open": [10.0, 10.0, 10.0],
            "high": [11.0, 11.0, 11.0],
            "low": [9.0, 9.0, 9.0],
            "close": [10.0, np.nan, 10.0],
            "volume": [5, 5, 5],
        }
    ).to_parquet(tmp_path / "x.parquet")
    market = load(tmp_path / "x.parquet")
    assert rules(market) == [(2, BadBarRule.MISSING_VALUE)]
    assert market.rejected[0].detail == "close is empty"
    assert market.bars.timestamps.tolist() == [ny("2024-01-02 09:30"), ny("2024-01-02 10:00")]


def test_headers_match_in_any_letter_case_and_extra_columns_are_ignored(tmp_path: Path) -> None:
    text = """\
        Symbol,DATE,Open,HIGH,low,Close,Adj Close,VoLuMe
        X,2024-01-02,10,11,9,10.5,10.4,100
        X,2024-01-03,10.5,11.5,10,11,10.9,200
    """
    market = load(write(tmp_path, "x.csv", text))
    assert market.bars.timestamps.tolist() == [ny("2024-01-02"), ny("2024-01-03")]
    assert market.bars.close[:, 0].tolist() == [10.5, 11]
    assert market.frequency == pd.Timedelta(days=1)


def test_separate_date_and_time_columns_are_combined(tmp_path: Path) -> None:
    text = """\
        Date,Time,Open,High,Low,Close,Volume
        2024-01-02,09:30,10,11,9,10.5,100
        2024-01-02,09:45,10.5,11.5,10,11,200
    """
    market = load(write(tmp_path, "x.csv", text))
    assert market.bars.timestamps.tolist() == [ny("2024-01-02 09:30"), ny("2024-01-02 09:45")]


def test_headerless_lean_style_file(tmp_path: Path) -> None:
    text = """\
        19980102 00:00,136300,162500,135000,162500,6315000
        19980105 00:00,165000,165600,151900,160000,5677300
    """
    market = load(write(tmp_path, "aapl.csv", text))
    assert market.bars.timestamps.tolist() == [ny("1998-01-02"), ny("1998-01-05")]
    assert market.bars.open[:, 0].tolist() == [136300, 165000]
    assert market.bars.volume[:, 0].tolist() == [6315000, 5677300]


def test_separators_at_the_end_of_lines_are_harmless(tmp_path: Path) -> None:
    text = CLEAN.replace("\n2024", ",\n2024").replace("300\n", "300,\n")
    market = load(write(tmp_path, "x.csv", text))
    assert market.bars.close[:, 0].tolist() == [10.5, 11, 11.5]
    assert market.rejected == ()


def test_epoch_milliseconds_are_utc(tmp_path: Path) -> None:
    first = utc("2024-01-06 00:00") // 1_000_000
    text = f"time,open,high,low,close,volume\n{first},10,11,9,10,1\n{first + 60_000},10,11,9,10,1\n"
    market = load(write(tmp_path, "btc.csv", text), calendar="continuous")
    assert market.bars.timestamps.tolist() == [utc("2024-01-06 00:00"), utc("2024-01-06 00:01")]
    assert market.frequency == pd.Timedelta("1min")


# --- time zones -------------------------------------------------------------------------------


def test_aware_timestamps_are_converted_to_utc_across_a_dst_change(tmp_path: Path) -> None:
    text = """\
        timestamp,open,high,low,close,volume
        2024-03-08 09:30:00-05:00,10,11,9,10,1
        2024-03-11 09:30:00-04:00,10,11,9,10,1
        2024-03-11T14:00:00Z,10,11,9,10,1
    """
    market = load(write(tmp_path, "x.csv", text))
    assert market.bars.timestamps.tolist() == [
        utc("2024-03-08 14:30"),
        utc("2024-03-11 13:30"),
        utc("2024-03-11 14:00"),
    ]


def test_naive_timestamps_follow_the_calendar_or_the_configured_zone(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", CLEAN)
    assert load(path, calendar="continuous").bars.timestamps[0] == utc("2024-01-02 09:30")
    assert load(path, timezone="Europe/London").bars.timestamps[0] == utc("2024-01-02 09:30")
    assert load(path, timezone="Asia/Tokyo").bars.timestamps[0] == utc("2024-01-02 00:30")
    assert load(path).bars.timestamps[0] == utc("2024-01-02 14:30")


def test_a_time_that_does_not_exist_in_the_zone_is_rejected(tmp_path: Path) -> None:
    text = (
        "timestamp,open,high,low,close,volume\n2024-03-10 01:30,10,11,9,10,1\n2024-03-10 02:30,10,11,9,10,1\n"
    )
    text += "2024-03-10 03:30,10,11,9,10,1\n"
    market = load(write(tmp_path, "x.csv", text), calendar="continuous", timezone=NY)
    assert rules(market) == [(2, BadBarRule.UNPARSEABLE_TIMESTAMP)]
    assert "daylight-saving" in market.rejected[0].detail


# --- per-row validation -----------------------------------------------------------------------

BAD = """\
timestamp,open,high,low,close,volume
2024-01-02 09:30,10,11,9,10.5,100
not a date,10,11,9,10.5,100
2024-01-02 09:45,10,11,9,,100
2024-01-02 10:00,abc,11,9,10.5,100
2024-01-02 10:15,10,11,-1,10.5,100
2024-01-02 10:30,10,8,9,8.5,100
2024-01-02 10:45,12,11,9,10.5,100
2024-01-02 11:00,10,11,9,10.5,-5
2024-01-02 11:15,10,11,9,10.5,100
2024-01-02 11:15,10,11,9,10.6,100
2024-01-02 10:00,10,11,9,10.5,100
2024-01-02 11:30,10,11,9,inf,100

2030-01-01 00:00,10,11,9,10.5,-1
2024-01-02 11:45,10,11,9,10.5,100
"""


def test_every_bad_row_rule_is_reported_with_its_row_and_clean_rows_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", BAD)
    market = load(path)
    assert rules(market) == [
        (2, BadBarRule.UNPARSEABLE_TIMESTAMP),
        (3, BadBarRule.MISSING_VALUE),
        (4, BadBarRule.MISSING_VALUE),
        (5, BadBarRule.NON_POSITIVE_PRICE),
        (6, BadBarRule.HIGH_BELOW_LOW),
        (7, BadBarRule.OPEN_CLOSE_OUTSIDE_RANGE),
        (8, BadBarRule.NEGATIVE_VOLUME),
        (10, BadBarRule.DUPLICATE_TIMESTAMP),
        (11, BadBarRule.OUT_OF_ORDER_TIMESTAMP),
        (12, BadBarRule.MISSING_VALUE),
        (14, BadBarRule.NEGATIVE_VOLUME),
    ]
    details = {r.row: r.detail for r in market.rejected}
    assert details[2] == "timestamp 'not a date' is not a date or time"
    assert details[3] == "close is empty"
    assert details[4] == "open='abc' is not a finite number"
    assert details[5] == "low=-1 must be > 0"
    assert details[6] == "high=8 < low=9"
    assert details[7] == "open=12 outside [low=9, high=11]"
    assert details[8] == "volume=-5 must be >= 0"
    assert details[10] == "timestamp '2024-01-02 11:15' repeats row 9"
    assert "earlier than row 9's '2024-01-02 11:15'" in details[11]
    assert details[12] == "close='inf' is not a finite number"
    assert all(r.source == str(path) and r.symbol == "BAD" for r in market.rejected)
    # Row 13 is blank and skipped silently; the rejected 2030 row does not move the clock on.
    assert market.bars.timestamps.tolist() == [
        ny("2024-01-02 09:30"),
        ny("2024-01-02 11:15"),
        ny("2024-01-02 11:45"),
    ]
    assert market.bars.close[:, 0].tolist() == [10.5, 10.5, 10.5]
    assert market.rejected_counts()["MISSING_VALUE"] == 3


def test_a_file_sorted_newest_first_is_refused_not_resorted(tmp_path: Path) -> None:
    text = """\
        timestamp,open,high,low,close,volume
        2024-01-04,10,11,9,10,1
        2024-01-03,10,11,9,10,1
        2024-01-02,10,11,9,10,1
    """
    with pytest.raises(DataError, match=r"x\.csv: 2 of 3 rows .*newest first.*sort_values"):
        load(write(tmp_path, "x.csv", text))


def test_nothing_usable_names_the_file_and_the_fix(tmp_path: Path) -> None:
    text = "timestamp,open,high,low,close,volume\n2024-01-02,10,11,9,,1\n2024-01-03,10,11,9,,1\n"
    path = write(tmp_path, "empty_close.csv", text)
    with pytest.raises(DataError) as err:
        load(path)
    message = str(err.value)
    assert f"nothing usable left in {path}: 2 rows rejected, first:" in message
    assert "close is empty" in message
    assert "dropna()" in message


def test_missing_columns_are_named_with_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "Date,Open,High,Low,Price\n2024-01-02,1,2,0.5,1.5\n")
    with pytest.raises(
        DataError, match=r"no close, volume column \(found columns: Date, Open, High, Low, Price\)"
    ):
        load(path)


@pytest.mark.parametrize(
    ("files", "config", "match"),
    [
        ({}, {"path": "nowhere"}, "does not exist"),
        ({}, {}, r"no csv files \(\*\.csv\.gz, \*\.csv\)"),
        ({"a.parquet": ""}, {}, "set data.provider: parquet"),
        ({"a.csv": ""}, {}, "is empty"),
        ({"a.csv": "timestamp,open,high,low,close,volume\n"}, {}, "has no data rows"),
        ({"a.csv": CLEAN, "A.csv.gz": CLEAN}, {}, "both hold symbol A"),
        ({"a.csv": CLEAN}, {"path": "a.csv", "symbols": ["A", "B"]}, "is one file"),
        ({"a.csv": CLEAN}, {"start": "2025-01-01"}, "no bars between data.start"),
        (
            {"a.csv": "timestamp,open,high,low,close,volume\n2024-01-02,1,2,0.5,1,1\n"},
            {},
            "set data.frequency",
        ),
        (
            {"a.csv": CLEAN + "2024-01-02 10:15,1,2,0.5,1,1,9\n"},
            {},
            "line 5 has 7 fields but the first line has 6",
        ),
        ({"a.csv": "Close,Open,High,Low,Volume\n1,1,1,1,1\n"}, {}, "no timestamp column"),
    ],
)
def test_unusable_inputs_raise_with_the_fix(
    tmp_path: Path, files: dict[str, str], config: dict, match: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / config.pop("path", "")
    with pytest.raises(DataError, match=match):
        FileProvider(DataConfig(provider="csv", path=str(path), **config)).load()


# --- windows and alignment ----------------------------------------------------------------------


def test_start_and_end_are_inclusive_and_a_bare_end_date_is_the_whole_day(tmp_path: Path) -> None:
    rows = [f"2024-01-0{d} {h},10,11,9,10,1" for d in (2, 3, 4) for h in ("09:30", "12:00", "15:45")]
    path = write(tmp_path, "x.csv", "timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    market = load(path, start="2024-01-02 12:00", end="2024-01-03")
    assert market.bars.timestamps.tolist() == [
        ny("2024-01-02 12:00"),
        ny("2024-01-02 15:45"),
        ny("2024-01-03 09:30"),
        ny("2024-01-03 12:00"),
        ny("2024-01-03 15:45"),
    ]
    assert load(path, end="2024-01-03 12:00").bars.timestamps[-1] == ny("2024-01-03 12:00")


def test_symbols_align_on_the_union_of_timestamps(tmp_path: Path) -> None:
    write(tmp_path, "aaa.csv", CLEAN)
    write(
        tmp_path,
        "bbb.csv",
        "timestamp,open,high,low,close,volume\n2024-01-02 09:45,5,6,4,5,7\n2024-01-02 10:15,5,6,4,5.5,8\n",
    )
    b = load(tmp_path).bars
    assert b.timestamps.tolist() == [ny(f"2024-01-02 {t}") for t in ("09:30", "09:45", "10:00", "10:15")]
    assert np.array_equal(b.close, [[10.5, np.nan], [11, 5], [11.5, np.nan], [np.nan, 5.5]], equal_nan=True)
    assert b.volume.tolist() == [[100, 0], [200, 7], [300, 0], [0, 8]]
    assert b.n_bars == 5


# --- real data ---------------------------------------------------------------------------------


def test_lean_daily_aapl_loads_through_the_csv_provider(tmp_path: Path) -> None:
    source = SHARED_DATA / "lean" / "daily_aapl.zip"
    if not source.exists():
        pytest.fail(f"the shared LEAN data is missing at {source}; tests expect ../shared/data beside the repo")
    frame = read_lean_zip(source)
    assert frame["open"].iloc[0] == pytest.approx(13.63)
    market = load(write_csv(frame, tmp_path / "aapl.csv"))
    b = market.bars
    assert b.symbols == ("AAPL",)
    assert 5700 < len(b) < 5900
    assert market.rejected == ()
    assert market.frequency == pd.Timedelta(days=1)
    assert (b.low > 0).all()
    assert (b.high >= b.low).all()
    assert b.timestamps[0] == ny("1998-01-02")
