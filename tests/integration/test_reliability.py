"""Nothing lost: crashes, restarts, resume, corrupted input and Redis fan-out, on a real Ray and Redis.

Each chaos run is compared with an uninterrupted run of the same config and seed. The feed is
paced so that a kill lands mid-run; results never depend on the pace.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import redis

from titan_ray.arena.runner import run_arena
from titan_ray.cli import main
from titan_ray.config import parse_config
from titan_ray.ledger.engine import Ledger
from titan_ray.ledger.journal import SqliteJournal, decode, open_journal

MODELS = [
    {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
    {"name": "rsi", "kind": "rsi_reversion", "params": {"period": 7}},
    {"name": "hold", "kind": "buy_and_hold"},
    {"name": "random", "kind": "random", "params": {"every": 10}},
]
BARS, CHUNK = 600, 8  # 75 chunks


def _raw(**extra) -> dict:
    raw = {
        "seed": 5,
        "data": {"provider": "synthetic", "n_symbols": 6, "bars": BARS, "frequency": "15min"},
        # 600 15-minute bars span ~33 calendar days (nights and weekends count): ~6 s at this speed,
        # long enough to kill something mid-run.
        "replay": {"chunk_size": CHUNK, "pace": {"speed": 500_000}},
        "ledger": {"commission_bps": 5},
        "models": MODELS,
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory):
    """The uninterrupted run every chaos run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    run_arena(parse_config(_raw(replay={"pace": None})), out)
    return out


def _kill_when(actor, min_seq: int, record: dict) -> threading.Thread:
    """SIGKILL ``actor``'s worker process once it has booked ``min_seq`` chunks; note what happened."""

    def go() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            beat = ray.get(actor.heartbeat.remote())
            if beat.get("seq", beat.get("seen", 0)) >= min_seq:
                record["before"] = beat
                os.kill(beat["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=go, daemon=True)
    return thread


def _same_files(a, b, name):
    assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _journal_chunks(journal) -> list[int]:
    seqs = []
    for key, payload in journal.entries():
        entry = decode(payload)
        if entry[0] == "chunk":
            assert key == f"chunk:{entry[1]}"
            seqs.append(entry[1])
    return seqs


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_ledger_killed_mid_run_changes_nothing(ray_session, reference, tmp_path, backend, redis_url):
    journal = {"backend": backend, **({"url": redis_url} if backend == "redis" else {})}
    out = tmp_path / "chaos"
    record: dict = {}
    min_seq = random.randint(0, 65)  # any point: the property must hold wherever the kill lands

    def on_actors(actors):
        record["ledger"] = actors["ledger"]
        _kill_when(actors["ledger"], min_seq, record).start()

    # 16 records of a kind in RAM: both incarnations spill most of the run to files (the second
    # while it books the journal again), and the results read them back
    run = run_arena(parse_config(_raw(ledger={"journal": journal, "memory_rows": 16})), out, on_actors=on_actors)
    assert "before" in record, "the ledger was never killed"
    assert record["before"]["seq"] < BARS // CHUNK - 1  # it died mid-run
    _same_files(reference, out, "leaderboard.json")
    for table in ("trades", "equity", "decisions"):
        pd.testing.assert_frame_equal(pd.read_parquet(reference / f"{table}.parquet"),
                                      pd.read_parquet(out / f"{table}.parquet"))
    spill = Path(tempfile.gettempdir()) / f"titan-ray-ledger-{record['ledger']._actor_id.hex()}"
    assert not spill.exists()  # the spilled records are gone with the run
    assert any(a["actor"] == "ledger" and a["kind"] == "RESTARTED" for a in run.run_info["alerts"])

    # The journal holds every chunk, hence every fill, exactly once.
    if backend == "sqlite":
        j = SqliteJournal(out / "journal.sqlite")
    else:
        j = open_journal("redis", url=redis_url, stream=f"titan-ray:{run.run_info['run_id']}:journal")
    assert _journal_chunks(j) == list(range(BARS // CHUNK))
    # Replaying the journal into a fresh ledger gives back every fill of the run, each once.
    cfg = parse_config(_raw(ledger={"journal": journal}))
    first = next(iter(run.results.values()))
    fresh = Ledger(ledger=cfg.ledger, risk=cfg.risk, symbols=first.symbols, calendar="equities",
                   models={m["name"]: m["kind"] != "random" for m in MODELS})
    for _, payload in j.entries():
        _, seq, bars, decisions = decode(payload)
        fresh.apply(seq, bars, decisions)
    for name, res in fresh.results().items():
        assert res.fills == run.results[name].fills and len(set(res.fills)) == len(res.fills)
    j.close()


def test_a_killed_model_comes_back_and_the_others_never_wait(ray_session, reference, tmp_path):
    out = tmp_path / "model"
    record: dict = {}

    def on_actors(actors):
        _kill_when(actors["models"]["rsi"], 200, record).start()

    run = run_arena(parse_config(_raw(replay={"decision_timeout_s": 1.0})), out, on_actors=on_actors)
    assert "before" in record, "the model was never killed"
    ours = {r["model"]: r for r in json.loads((out / "leaderboard.json").read_text())}
    theirs = {r["model"]: r for r in json.loads((reference / "leaderboard.json").read_text())}
    skipped = run.run_info["skipped_chunks"]
    assert set(skipped) <= {"rsi"}  # only the killed model may skip chunks: the others never wait
    for name in ("sma", "hold", "random"):
        mine = {k: v for k, v in ours[name].items() if k not in ("sharpe_vs_benchmark_p", "beats_benchmark")}
        ref = {k: v for k, v in theirs[name].items() if k not in ("sharpe_vs_benchmark_p", "beats_benchmark")}
        assert mine == ref, name
    # The killed model trades exactly as in the reference run until its first skipped chunk (if its
    # restart outlasted the decision deadline), and, having rebuilt its state, it trades on after.
    eq = pd.read_parquet(out / "equity.parquet").query("model == 'rsi'")["equity"].to_numpy()
    ref_eq = pd.read_parquet(reference / "equity.parquet").query("model == 'rsi'")["equity"].to_numpy()
    if "rsi" in skipped:
        first_skip = min(skipped["rsi"]) * CHUNK
        assert np.array_equal(eq[:first_skip], ref_eq[:first_skip])
    else:
        assert np.array_equal(eq, ref_eq) and ours["rsi"] == theirs["rsi"]
    fills = pd.read_parquet(out / "trades.parquet").query("record == 'fill' and model == 'rsi'")
    assert (fills["bar"] > record["before"]["seen"] + 2 * CHUNK).any(), "the model never traded after its restart"
    assert any(a["actor"] == "rsi" and a["kind"] == "RESTARTED" for a in run.run_info["alerts"])


def test_resume_after_an_interruption_gives_the_same_results(ray_session, reference, tmp_path):
    cfg = tmp_path / "arena.yaml"
    cfg.write_text(json.dumps(_raw()))  # JSON is YAML
    out = tmp_path / "interrupted"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "titan_ray", "arena", "--config", str(cfg), "--out", str(out),
                             "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (out / "journal.sqlite").exists():
                j = SqliteJournal(out / "journal.sqlite")
                written = len(j)
                j.close()
                if written >= 20:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the first run never journaled 20 chunks")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    j = SqliteJournal(out / "journal.sqlite")
    interrupted_at = len(j)
    j.close()
    assert 20 <= interrupted_at < BARS // CHUNK and not (out / "leaderboard.json").exists()

    assert main(["arena", "--resume", str(out), "--quiet"]) == 0
    _same_files(reference, out, "leaderboard.json")
    pd.testing.assert_frame_equal(pd.read_parquet(reference / "trades.parquet"), pd.read_parquet(out / "trades.parquet"))
    info = json.loads((out / "run.json").read_text())
    assert info["resumed_from_chunk"] == interrupted_at


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(["arena", "--resume", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def _corrupted_csv(path, n=2000, seed=3):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2015-01-01", periods=n, freq="B").strftime("%Y-%m-%d"),
        "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6,
    })
    picks = rng.choice(np.arange(5, n - 5, 3), size=4 * 5, replace=False)  # 1 % of rows, apart
    nan_rows, neg_rows, swap_rows, dup_rows = picks[:5], picks[5:10], picks[10:15], picks[15:]
    frame.loc[nan_rows, "close"] = np.nan
    frame.loc[neg_rows, "open"] = -frame.loc[neg_rows, "open"]
    for i in swap_rows:  # shuffled timestamps: two neighbours out of order
        frame.iloc[[i, i + 1]] = frame.iloc[[i + 1, i]].to_numpy()
    copies = np.ones(n, dtype=int)
    copies[dup_rows] = 2  # duplicated rows
    frame = frame.loc[frame.index.repeat(copies)].reset_index(drop=True)
    frame.to_csv(path, index=False)
    return {"MISSING_VALUE": 5, "NON_POSITIVE_PRICE": 5, "OUT_OF_ORDER_TIMESTAMP": 5, "DUPLICATE_TIMESTAMP": 5}


def test_one_percent_corrupted_rows_run_to_the_end(ray_session, tmp_path):
    expected = _corrupted_csv(tmp_path / "ACME.csv")
    cfg = parse_config({"data": {"provider": "csv", "path": str(tmp_path / "ACME.csv")}, "models": MODELS})
    run = run_arena(cfg, tmp_path / "out")
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["rejected_bars_by_rule"] == expected
    assert info["rejected_bars"] == 20 and info["n_timestamps"] == 2000 - 15
    assert all(s.split(": ")[1] in expected for s in info["rejected_bars_sample"])
    assert len(run.leaderboard) == 4


def test_bars_fills_and_leaderboard_are_published_on_redis(ray_session, redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe("titan-ray:*")
    time.sleep(0.2)
    run = run_arena(parse_config(_raw(replay={"pace": None}, redis={"url": redis_url})), tmp_path / "out")
    kinds: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg is None:
            if kinds.get("leaderboard", 0) >= BARS // CHUNK:
                break
            continue
        if msg["type"] != "pmessage":
            continue
        body = json.loads(msg["data"])
        assert body["schema"] == 1 and body["run_id"] == run.run_info["run_id"]
        assert msg["channel"].decode() == f"titan-ray:{body['run_id']}:{body['type']}"
        kinds[body["type"]] = kinds.get(body["type"], 0) + 1
    pubsub.close()
    assert kinds.get("bars") == BARS // CHUNK
    assert kinds.get("leaderboard") == BARS // CHUNK
    n_fills = len(pd.read_parquet(tmp_path / "out" / "trades.parquet").query("record == 'fill'"))
    assert 0 < kinds.get("fills", 0) <= n_fills


def test_redis_down_is_a_warning_and_the_arena_goes_on(ray_session, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    run = run_arena(parse_config(_raw(replay={"pace": None}, redis={"url": f"redis://127.0.0.1:{closed}/0"})))
    assert len(run.leaderboard) == 4 and all(r["final_equity"] > 0 for r in run.leaderboard)


def test_a_crash_looping_model_is_taken_out_and_flattened(ray_session, tmp_path):
    killed: list[int] = []

    def on_actors(actors):
        model, watchdog = actors["models"]["random"], actors["watchdog"]

        def restarts_seen() -> int:
            return sum(a["kind"] == "RESTARTED" and a["actor"] == "random"
                       for a in ray.get(watchdog.alerts.remote()))

        def loop() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(killed) < 3:
                try:
                    beat = ray.get(model.heartbeat.remote(), timeout=5)
                except Exception:  # noqa: BLE001 - restarting: any error means try again
                    time.sleep(0.05)
                    continue
                # Kill again only once the watchdog has seen the last restart: a crash loop it can count.
                if beat["seen"] > 0 and beat["pid"] not in killed and restarts_seen() == len(killed):
                    os.kill(beat["pid"], signal.SIGKILL)
                    killed.append(beat["pid"])
                time.sleep(0.05)

        threading.Thread(target=loop, daemon=True).start()

    raw = _raw(replay={"decision_timeout_s": 1.0}, watchdog={"max_restarts": 1, "window_s": 60, "interval_s": 0.2})
    run = run_arena(parse_config(raw), tmp_path / "out", on_actors=on_actors)
    assert len(killed) >= 2
    kinds = [(a["kind"], a["actor"]) for a in run.run_info["alerts"]]
    assert ("CRASH_LOOP", "random") in kinds
    res = run.results["random"]
    assert res.halted == "KILL_SWITCH" and res.positions == {}  # taken out and flattened
    assert {name for name, r in run.results.items() if r.halted} == {"random"}
