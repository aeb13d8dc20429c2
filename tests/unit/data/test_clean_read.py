"""files.py's fast read of clean CSV files: the same bars and rejections as reading every cell as text.

A clean file (every value cell a finite number) is parsed typed while it is read; any other file is
read as text, cell by cell. Each case below is loaded both ways, the text way forced by turning the
fast reader off, and the two ``MarketData`` must agree to the bit, rejected rows included.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from titan_ray.config import DataConfig
from titan_ray.data import files
from titan_ray.data.market import DataError, MarketData

HEAD = "timestamp,open,high,low,close,volume\n"
ROWS = [
    "2024-01-02 09:30,10,11,9,10.5,100",
    "2024-01-02 09:45,10.5,11.5,10,11,200",
    "2024-01-02 10:00,11,12,10.5,11.5,300",
    "2024-01-02 10:15,11.5,12.5,11,12.25,0",
]
CASES = {
    "clean": HEAD + "\n".join(ROWS) + "\n",
    "headerless": "\n".join(ROWS) + "\n",
    "other columns and case": "Date,Open,HIGH,low,Close,Volume,adj\n"
    + "\n".join(f"{r},x" for r in ROWS) + "\n",
    "decimals, exponents and spaces": HEAD + "2024-01-02 09:30, 10.000000000000002 ,1.1e1,9.,10.5,1E2\n"
    + "\n".join(ROWS[1:]) + "\n",
    "negative zero volume": HEAD + ROWS[0] + "\n" + "2024-01-02 09:45,10.5,11.5,10,11,-0\n",
    "boolean word": HEAD + ROWS[0] + "\n" + "2024-01-02 09:45,10.5,11.5,10,11,True\n",
    "bad cell": HEAD + ROWS[0] + "\n" + "2024-01-02 09:45,10.5,abc,10,11,200\n" + ROWS[2] + "\n",
    "blank line": HEAD + ROWS[0] + "\n\n" + ROWS[1] + "\n",
    "empty cell": HEAD + ROWS[0] + "\n" + "2024-01-02 09:45,10.5,,10,11,200\n",
    "not finite": HEAD + ROWS[0] + "\n" + "2024-01-02 09:45,10.5,inf,10,11,200\n" + ROWS[2] + "\n",
    "too wide": HEAD + ROWS[0] + "\n" + ROWS[1] + ",\n",  # refused, with the same message either way
    "trailing separators": HEAD.replace("\n", ",\n") + ",\n".join(ROWS) + ",\n",
    "bad rows of every rule": HEAD + "\n".join([
        ROWS[0], "2024-01-02 09:45,-1,11.5,10,11,200", "2024-01-02 10:00,11,10,10.5,11.5,300",
        "2024-01-02 09:50,11,12,10.5,11.5,300", "2024-01-02 10:15,11.5,12.5,11,12.25,-5", "garbage,1,2,1,1,1",
        ROWS[3], ROWS[3],
    ]) + "\n",
}


def _load(path: Path) -> MarketData | str:
    """The bars, or the message of the ``DataError`` that refused the file."""
    try:
        return files.FileProvider(DataConfig(provider="csv", path=str(path), frequency="15min")).load()
    except DataError as err:
        return str(err)


def _assert_same(a: MarketData | str, b: MarketData | str) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert a.bars.symbols == b.bars.symbols and a.rejected == b.rejected and a.frequency == b.frequency
    for field in ("timestamps", "open", "high", "low", "close", "volume"):
        x, y = getattr(a.bars, field), getattr(b.bars, field)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), field


@pytest.mark.parametrize("case", list(CASES))
def test_a_file_reads_the_same_fast_or_as_text(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "aaa.csv"
    path.write_text(CASES[case])
    fast = _load(path)
    monkeypatch.setattr(files, "_read_clean", lambda *args: None)
    _assert_same(fast, _load(path))


def test_clean_files_take_the_fast_way_and_others_do_not(tmp_path: Path) -> None:
    taken = {}
    for case, text in CASES.items():
        path = tmp_path / f"{case.replace(' ', '_').replace(',', '')}.csv"
        path.write_text(text)
        first = text.splitlines()[0].split(",")
        headerless = case == "headerless"
        labels = list(files._HEADERLESS) if headerless else first
        options = {"keep_default_na": False, "skip_blank_lines": False, "index_col": False}
        table = files._read_clean(path, None if headerless else 0, labels if headerless else None, labels, options)
        taken[case] = table is not None
    fast = {"clean", "headerless", "other columns and case", "decimals, exponents and spaces", "trailing separators",
            "bad rows of every rule"}  # bad rows, but every value cell a number: the rules reject them alike
    assert {case for case, yes in taken.items() if yes} == fast


def test_a_gzipped_clean_file_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bbb.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(CASES["clean"])
    fast = _load(path)
    monkeypatch.setattr(files, "_read_clean", lambda *args: None)
    _assert_same(fast, _load(path))


def test_a_large_clean_file_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    stamps = np.datetime64("2024-01-02T14:30") + np.arange(n) * np.timedelta64(15, "m")
    lines = [f"{t}Z,{c:.6f},{c * 1.001:.17g},{c * 0.999!r},{c:.4f},{int(v)}"
             for t, c, v in zip(stamps.astype(str), close, rng.integers(0, 10**6, n), strict=True)]
    path = tmp_path / "ccc.csv"
    path.write_text(HEAD + "\n".join(lines) + "\n")
    fast = _load(path)
    monkeypatch.setattr(files, "_read_clean", lambda *args: None)
    _assert_same(fast, _load(path))
