"""Bars from CSV and Parquet files, checked row by row at ingestion.

``FileProvider(config).load()`` reads ``data.path``, one file (one symbol) or a folder with one
file per symbol, and returns ``MarketData`` aligned on the union of all timestamps (NaN prices
and zero volume where a symbol has no bar). A file goes through these parts in turn:

- ``_discover``: which files, and the symbol each holds (the file name's stem, upper-cased).
- ``_read_table``: the cells as text for CSV (a headerless 6-column file is detected), as stored
  for Parquet. A clean CSV file (every value cell a finite number) is read with its values parsed
  on the way (``_read_clean``), several times faster and to the same values.
- ``_pick_columns``: the timestamp column (one named date/time/datetime/timestamp, else the first
  column) and open/high/low/close/volume in any letter case; other columns are ignored.
- ``_parse_times``: int64 UTC nanoseconds. Aware timestamps are converted; naive ones are read in
  ``data.timezone`` (default New York on ``equities``, UTC on ``continuous``).
- ``check_rows`` then ``check_order`` (in ``validation``): every bad row becomes a ``RejectedBar`` (1-based data
  row, rule, detail) and is skipped. Rows keep the file's order: a row earlier than the last
  accepted one is rejected, never sorted into place, because a silently re-sorted file hides a
  broken export.

``naive_timezone`` and ``time_bounds`` are the one rule for reading naive times, shared with the
synthetic provider's ``data.start``/``data.end``.

``DataError`` is raised only when a file cannot be used at all, with the fix in the message.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from titan_ray.config import DataConfig
from titan_ray.data.market import DataError, MarketData, RejectedBar
from titan_ray.data.validation import FIX, check_order, check_rows, empty
from titan_ray.data.validation import NAT as _NAT
from titan_ray.domain.bars import FIELDS, BarBatch
from titan_ray.domain.calendar import EXCHANGE_TZ, Calendar, infer_frequency, parse_frequency

_SUFFIXES = {"csv": (".csv.gz", ".csv"), "parquet": (".parquet", ".pq")}
_TIME_NAMES = ("timestamp", "datetime", "date", "time")
_HEADERLESS = ("timestamp", *FIELDS)
_EPOCH_DIGITS = r"\d{10}|\d{13}|\d{16}|\d{19}"  # seconds, ms, us, ns since 1970 (not yyyymmdd)
_DATE_ONLY = re.compile(r"\d{4}[-/]?\d{1,2}[-/]?\d{1,2}")
_COLUMNS_HELP = (
    "Name the columns open, high, low, close and volume (any letter case) and put the timestamp "
    "first or in a column named date, time, datetime or timestamp; a file without a header row "
    "must have exactly 6 columns: timestamp,open,high,low,close,volume."
)


def naive_timezone(config: DataConfig) -> str:
    """The zone that naive timestamps (in files, ``data.start``/``data.end``) are read in."""
    tz = config.timezone or (EXCHANGE_TZ if Calendar(config.calendar) is Calendar.EQUITIES else "UTC")
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception:  # noqa: BLE001 - zoneinfo and pytz raise different types for an unknown zone
        raise DataError(
            f"data.timezone {tz!r} is not a time zone; use an IANA name such as America/New_York or UTC"
        ) from None
    return tz


def time_bounds(config: DataConfig) -> tuple[int | None, int | None]:
    """``data.start`` and ``data.end`` as inclusive UTC nanoseconds (None when unset).

    An ``end`` written as a bare date means the whole of that day, as a reader would expect.
    """
    tz = naive_timezone(config)
    return _bound("start", config.start, tz), _bound("end", config.end, tz)


def _bound(name: str, text: str | None, tz: str) -> int | None:
    if text is None:
        return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise DataError(
            f"data.{name} {text!r} is not a date or time; write it like 2024-01-02 or 2024-01-02 09:30"
        )
    whole_day = name == "end" and ts.tzinfo is None and _DATE_ONLY.fullmatch(str(text).strip()) is not None
    if whole_day:
        ts += pd.Timedelta(days=1)
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz, nonexistent="shift_forward", ambiguous=False)
    ns = ts.tz_convert("UTC").as_unit("ns").value
    return ns - 1 if whole_day else ns


def file_provider(config: DataConfig, seed: int, environ: Mapping[str, str] | None) -> FileProvider:
    """``data.provider: csv`` or ``parquet`` (``titan_ray.data.providers``): files need no seed or environment."""
    return FileProvider(config)


class FileProvider:
    """Bars from ``data.path`` (CSV or Parquet), one symbol per file."""

    def __init__(self, config: DataConfig) -> None:
        if not config.path:
            raise DataError("data.path is not set; point it at a CSV/Parquet file or a folder of them")
        self._config = config
        self._tz = naive_timezone(config)

    def load(self) -> MarketData:
        cfg = self._config
        start, end = time_bounds(cfg)
        symbols: list[str] = []
        series: list[tuple[np.ndarray, np.ndarray]] = []
        rejected: list[RejectedBar] = []
        for symbol, path in _discover(Path(cfg.path), cfg):
            ts, values, bad = _load_file(path, symbol, self._tz, cfg.provider)
            rejected.extend(bad)
            keep = np.ones(len(ts), dtype=bool)
            if start is not None:
                keep &= ts >= start
            if end is not None:
                keep &= ts <= end
            if not keep.any():
                first, last = (pd.Timestamp(x, tz="UTC") for x in (ts[0], ts[-1]))
                raise DataError(
                    f"{path} has no bars between data.start {cfg.start!r} and data.end {cfg.end!r} "
                    f"(its bars run from {first} to {last}); widen the window or leave {symbol} out "
                    "of data.symbols"
                )
            symbols.append(symbol)
            series.append((ts[keep], values[keep]))

        timestamps = np.unique(np.concatenate([ts for ts, _ in series]))
        shape = (len(timestamps), len(symbols))
        arrays = {f: np.full(shape, np.nan) for f in FIELDS}
        arrays["volume"] = np.zeros(shape)
        for j, (ts, values) in enumerate(series):
            rows = np.searchsorted(timestamps, ts)
            for k, f in enumerate(FIELDS):
                arrays[f][rows, j] = values[:, k]
        return MarketData(
            bars=BarBatch.from_arrays(timestamps, symbols, **arrays),
            frequency=self._frequency(timestamps),
            calendar=Calendar(cfg.calendar),
            source=f"{cfg.provider}:{cfg.path}",
            rejected=tuple(rejected),
        )

    def _frequency(self, timestamps: np.ndarray) -> pd.Timedelta:
        if self._config.frequency:
            return pd.Timedelta(parse_frequency(self._config.frequency))
        try:
            return pd.Timedelta(infer_frequency(timestamps))
        except ValueError as err:
            raise DataError(f"{self._config.path}: {err}") from None


# --- which files ------------------------------------------------------------------------------


def _suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for kind in _SUFFIXES.values() for s in kind if lower.endswith(s)), None)


def _symbol_of(path: Path) -> str:
    suffix = _suffix(path.name)
    return (path.name[: -len(suffix)] if suffix else path.stem).upper()


def _discover(path: Path, config: DataConfig) -> list[tuple[str, Path]]:
    suffixes = _SUFFIXES[config.provider]
    patterns = ", ".join(f"*{s}" for s in suffixes)
    if not path.exists():
        raise DataError(
            f"data.path {path} does not exist; point it at a {config.provider} file or a folder with "
            f"one file per symbol ({patterns}), e.g. data/aapl.csv"
        )
    if path.is_file():
        if config.symbols is not None and len(config.symbols) > 1:
            raise DataError(
                f"data.path {path} is one file, which holds one symbol, but data.symbols lists "
                f"{len(config.symbols)}; point data.path at a folder with one file per symbol"
            )
        return [(config.symbols[0] if config.symbols else _symbol_of(path), path)]

    found: dict[str, Path] = {}
    others: list[str] = []
    for f in sorted(path.iterdir()):
        if f.name.startswith(".") or not f.is_file() or _suffix(f.name) is None:
            continue
        if _suffix(f.name) not in suffixes:
            others.append(f.name)
            continue
        symbol = _symbol_of(f)
        if symbol in found:
            raise DataError(f"{found[symbol]} and {f} both hold symbol {symbol}; keep one of them")
        found[symbol] = f
    if not found:
        other = "parquet" if config.provider == "csv" else "csv"
        hint = f" (it holds {other} files: {', '.join(others[:3])}; set data.provider: {other})"
        raise DataError(
            f"no {config.provider} files ({patterns}) in folder {path}{hint if others else ''}; put one "
            "file per symbol there, named after the symbol, e.g. aapl.csv"
        )
    if config.symbols is None:
        return sorted(found.items())
    missing = [s for s in config.symbols if s.upper() not in found]
    if missing:
        raise DataError(
            f"no file for symbol(s) {', '.join(missing)} in {path} (expected e.g. "
            f"{path / (missing[0].lower() + suffixes[-1])}); symbols there: {', '.join(sorted(found))}. "
            "Add the files or remove those symbols from data.symbols"
        )
    return [(s, found[s.upper()]) for s in config.symbols]


# --- reading ----------------------------------------------------------------------------------


def _read_table(path: Path, provider: str) -> pd.DataFrame:
    suffix = _suffix(path.name)
    try:
        if suffix in _SUFFIXES["parquet"] or (suffix is None and provider == "parquet"):
            table = pd.read_parquet(path)
            if not isinstance(table.index, pd.RangeIndex):  # timestamps saved as the index
                table = table.reset_index()
            return table.reset_index(drop=True)
        return _read_csv(path)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; it needs one row per bar: {','.join(_HEADERLESS)}") from None
    except pd.errors.ParserError as err:
        raise _too_wide(path) or DataError(f"cannot read {path}: {err}") from None
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as {provider}: {err}. Check its format and suffix") from None


def _read_csv(path: Path) -> pd.DataFrame:
    # Cells stay text so that a bad cell becomes a rejected row, not a failed file; blank lines
    # are kept so that row numbers match the file's lines. index_col=False: a row that ends in a
    # separator is not read as if its first cell were an index.
    options: dict[str, object] = {
        "keep_default_na": False,
        "skip_blank_lines": False,
        "index_col": False,
    }
    with closing(_csv_rows(path)) as rows:
        first = next(rows, [])
    header = None if _is_headerless(first) else 0
    names = list(_HEADERLESS) if header is None else None
    clean = _read_clean(path, header, names, names or first, options)
    if clean is not None:
        return clean
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        table = pd.read_csv(path, header=header, names=names, dtype=str, **options)
    # pandas warns, and drops the field, when a row has exactly one field too many; that is only
    # harmless when the dropped field is empty (a separator at the end of the line).
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        error = _too_wide(path)
        if error is not None:
            raise error
    return table


def _read_clean(
    path: Path, header: int | None, names: list[str] | None, labels: list[str], options: dict[str, object]
) -> pd.DataFrame | None:
    """A clean file read fast: its OHLCV cells parsed as numbers while reading, the rest as text.

    Reading every cell as text and then converting it costs more than replaying a large universe.
    Where every value cell reads as a finite number, the values are the same either way (pandas
    parses both with the same routine), so such a file is read typed. Anything else returns None,
    and the file is read as text, where each bad cell becomes a rejected row: a blank, bad or
    non-finite cell, a row of the wrong width, a word pandas would read as a boolean (True), an
    integer written -0 (0 as text, -0.0 typed).
    """
    numeric = {label: "float64" for label in labels if label.strip().lower() in FIELDS}
    if len(numeric) != len(FIELDS):
        return None
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        raw = gzip.decompress(raw)
    lower = raw.lower()
    if b"true" in lower or b"false" in lower:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            table = pd.read_csv(io.BytesIO(raw), header=header, names=names,
                                dtype=defaultdict(lambda: str, numeric), **options)
    except (ValueError, OverflowError):  # a cell that is not a number, a bad encoding: read as text
        return None
    if caught:
        return None
    columns = [c for c in table.columns if str(c).strip().lower() in FIELDS]
    if len(columns) != len(FIELDS) or any(table[c].dtype != np.float64 for c in columns):
        return None
    values = table[columns].to_numpy()
    if not np.isfinite(values).all() or np.signbit(values[values == 0]).any():
        return None
    return table


def _csv_rows(path: Path) -> Iterator[list[str]]:
    """The file's rows as the csv module splits them, trailing empty fields dropped."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8-sig", errors="replace") as f:
        for fields in csv.reader(f):
            while fields and not fields[-1].strip():
                fields.pop()
            yield fields


def _too_wide(path: Path) -> DataError | None:
    """The error for the first row with more fields than the first line, naming its line."""
    with closing(_csv_rows(path)) as rows:
        width = len(next(rows, []))
        for line, fields in enumerate(rows, start=2):
            if len(fields) > width:
                return DataError(
                    f"{path} line {line} has {len(fields)} fields but the first line has {width}; "
                    "remove the extra separators or quote the field (write 1234, not 1,234)"
                )
    return None


def _is_headerless(cells: list[str]) -> bool:
    if len(cells) != len(_HEADERLESS):
        return False
    ns, _ = _parse_times(pd.Series([str(cells[0]).strip()], dtype=str), "UTC")
    numbers = pd.to_numeric(pd.Series([str(c).strip() for c in cells[1:]], dtype=str), errors="coerce")
    return bool(ns[0] != _NAT and numbers.notna().all())


def _pick_columns(table: pd.DataFrame, path: Path) -> tuple[pd.Series, list[pd.Series]]:
    names: dict[str, object] = {}
    for col in table.columns:
        key = str(col).strip().lower()
        if key in names:
            raise DataError(f"{path}: columns {names[key]!r} and {col!r} differ only in case; drop one")
        names[key] = col
    missing = [f for f in FIELDS if f not in names]
    found = ", ".join(str(c) for c in table.columns)
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} column (found columns: {found}). {_COLUMNS_HELP}")
    values = [table[names[f]] for f in FIELDS]
    if "date" in names and "time" in names and not {"timestamp", "datetime"} & names.keys():
        # Some exports split the bar's time into a date and a time column.
        date, time = (table[names[k]].astype(str).fillna("").str.strip() for k in ("date", "time"))
        return date + " " + time, values
    named = next((names[n] for n in _TIME_NAMES if n in names), None)
    first = table.columns[0]
    if named is None and str(first).strip().lower() in FIELDS:
        raise DataError(f"{path}: no timestamp column (found columns: {found}). {_COLUMNS_HELP}")
    return table[named if named is not None else first], values


# --- timestamps -------------------------------------------------------------------------------


def _parse_times(raw: pd.Series, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """UTC ns per cell (``_NAT`` where unreadable) and a mask of naive times ``tz`` cannot place."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        return _utc_ns(raw, tz)
    unplaced = np.zeros(len(raw), dtype=bool)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return _epoch_ns(raw), unplaced
    text = raw.astype(str).fillna("").str.strip()
    filled = text[text != ""]
    if len(filled) and filled.str.fullmatch(_EPOCH_DIGITS).all() and filled.str.len().nunique() == 1:
        return _epoch_ns(text), unplaced
    fmt = next((f for f in map(guess_datetime_format, filled.head(20)) if f), "mixed")
    ns, unplaced = _utc_ns(_to_datetime(text, fmt), tz)
    retry = (ns == _NAT) & ~unplaced & (text != "").to_numpy()
    if retry.any() and fmt != "mixed":
        # A few rows in another format (midnight written as a bare date, say) still count.
        ns[retry], unplaced[retry] = _utc_ns(_to_datetime(text[retry], "mixed"), tz)
    return ns, unplaced


def _to_datetime(text: pd.Series, fmt: str) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": intended fallback
        try:
            return pd.to_datetime(text, errors="coerce", format=fmt)
        except ValueError:
            # Offsets that differ row to row (-05:00 in winter, -04:00 in summer) need utc=True.
            return pd.to_datetime(text, errors="coerce", format=fmt, utc=True)


def _utc_ns(parsed: pd.Series, tz: str) -> tuple[np.ndarray, np.ndarray]:
    if parsed.dt.tz is None:
        local = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        unplaced = (parsed.notna() & local.isna()).to_numpy(copy=True)
    else:
        local, unplaced = parsed, np.zeros(len(parsed), dtype=bool)
    return pd.DatetimeIndex(local.dt.tz_convert("UTC")).as_unit("ns").asi8.copy(), unplaced


def _epoch_ns(raw: pd.Series) -> np.ndarray:
    """Numbers since 1970 in UTC; the unit (s, ms, us, ns) follows from their size."""
    numbers = pd.to_numeric(raw, errors="coerce")
    floats = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(floats)
    size = np.abs(floats[ok]).max(initial=0.0)
    units = ((1e11, 10**9), (1e14, 10**6), (1e17, 10**3), (np.inf, 1))  # s, ms, us, ns
    factor = next(f for limit, f in units if size < limit)
    out = np.full(len(raw), _NAT, dtype=np.int64)
    if pd.api.types.is_integer_dtype(numbers.dtype) and ok.all():
        out[:] = numbers.to_numpy(dtype=np.int64) * factor  # exact: ns do not survive float64
    else:
        out[ok] = np.rint(floats[ok] * factor).astype(np.int64)
    return out


# --- validation -------------------------------------------------------------------------------



def _load_file(
    path: Path, symbol: str, tz: str, provider: str
) -> tuple[np.ndarray, np.ndarray, list[RejectedBar]]:
    """Accepted timestamps (N,), OHLCV values (N, 5) in file order, and the rejected rows."""
    table = _read_table(path, provider)
    times, cells = _pick_columns(table, path)
    values = np.column_stack(
        [pd.to_numeric(c, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) for c in cells]
    )
    ns, unplaced = _parse_times(times, tz)
    # Blank lines carry no bar, so they are skipped without a rejection.
    pending = ~np.logical_and.reduce([empty(c) for c in (times, *cells)])
    if not pending.any():
        raise DataError(f"{path} has no data rows; it needs one row per bar: {','.join(_HEADERLESS)}")
    found = check_rows(times, cells, ns, unplaced, values, pending, tz)
    rows, late = check_order(path, times, ns, pending)
    rejected = [RejectedBar(str(path), i + 1, symbol, rule, why) for i, rule, why in sorted(found + late)]
    if len(rows) == 0:
        n = len(rejected)
        raise DataError(
            f"nothing usable left in {path}: {n} row{'s' * (n != 1)} rejected, first: {rejected[0]}. "
            f"{FIX[rejected[0].rule]}"
        )
    return ns[rows], values[rows], rejected
