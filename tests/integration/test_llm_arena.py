"""An LLM competitor in a real arena on a local Ray, against the loopback OpenAI-compatible stub: its
decisions are explained by its rationale and the numbers it was shown, its leaderboard row carries
tokens, latency, cost and the contamination flag (exactly the decision bars before the declared
knowledge cutoff), and a rerun from the response cache with the server stopped writes a byte-identical
leaderboard.json; in cache-only mode a miss fails the run, naming the cache folder."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pandas as pd
import pytest
from openai_stub import OpenAIStub

from titan_ray.arena.runner import run_arena
from titan_ray.cli import main
from titan_ray.config import ConfigError, parse_config
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.models.llm_client import CACHE_ONLY_ENV

KEY_ENV = "TITAN_TEST_LLM_ARENA_KEY"
KEY = "sk-arena-secret-9876543210"
# set at import, before the session's Ray starts, so its workers inherit it: keys live in the environment
os.environ.setdefault(KEY_ENV, KEY)

EVERY, WARM, BARS = 25, 30, 300
CUTOFF = "2024-01-09"  # the synthetic market starts on 2024-01-02: the run spans it


def raw(base_url: str, cache: str) -> dict:
    return {
        "seed": 11,
        "data": {"provider": "synthetic", "n_symbols": 3, "bars": BARS, "frequency": "15min"},
        "replay": {"warmup_bars": WARM, "decision_timeout_s": 600},
        "models": [
            {"name": "hold", "kind": "buy_and_hold"},
            {"name": "sma", "kind": "sma_crossover", "params": {"fast": 5, "slow": 20}},
            {"name": "gpt", "kind": "llm", "num_cpus": 0,
             "params": {"base_url": base_url, "model": "stub-1", "api_key_env": KEY_ENV, "every": EVERY,
                        "cache_dir": cache, "timeout_s": 20, "knowledge_cutoff": CUTOFF,
                        "cost_per_1k_prompt": 0.15, "cost_per_1k_completion": 0.6}},
        ],
    }


def test_an_llm_competes_explains_and_reruns_offline_from_its_cache(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(CACHE_ONLY_ENV, raising=False)
    cache = str(tmp_path / "cache")
    with OpenAIStub(key=KEY) as stub:
        config = parse_config(raw(stub.base_url, cache))
        first = run_arena(config, tmp_path / "a")
        n_requests = len(stub.requests)
    assert not first.run_info["skipped_chunks"] and not first.run_info["model_failures"]
    bars = SyntheticProvider(config.data, config.seed).load().bars
    decision_bars = [b for b in range(WARM, BARS) if b % EVERY == 0]
    assert n_requests == len(decision_bars)

    board = {row["model"]: row for row in json.loads((tmp_path / "a" / "leaderboard.json").read_text())}
    gpt = board["gpt"]
    assert gpt["llm_tokens"] > 0 and gpt["llm_latency_s"] > 0 and gpt["llm_cost"] > 0
    assert gpt["llm_calls"] == len(decision_bars) and gpt["llm_failures"] == 0 and gpt["n_orders"] > 0
    for other in ("hold", "sma"):  # the LLM keys are on LLM rows only
        assert not {k for k in board[other] if k.startswith(("llm_", "contaminated"))}

    # contamination: exactly the decision bars before the cutoff
    cutoff_ns = int(datetime.fromisoformat(CUTOFF).replace(tzinfo=UTC).timestamp()) * 10**9
    before = [b for b in decision_bars if bars.timestamps[b] < cutoff_ns]
    assert 0 < len(before) < len(decision_bars)
    assert gpt["contaminated"] is True and gpt["contaminated_bars"] == len(before)

    # the why: method llm, the rationale as the sentence, the numbers shown as features
    decisions = pd.read_parquet(tmp_path / "a" / "decisions.parquet")
    ours = decisions[decisions["model"] == "gpt"]
    assert len(ours) > 0 and (ours["method"] == "llm").all()
    assert ours["sentence"].str.contains("positive 5-bar momentum").all()
    assert set(ours["bar"]) <= set(decision_bars)
    flagged = ours[ours["sentence"].str.contains("knowledge cutoff")]
    assert set(flagged["bar"]) == set(ours["bar"]) & set(before)
    names = [f["name"] for f in json.loads(ours["features"].iloc[0])]
    assert names[:2] == ["ret_1", "ret_5"] and names[-1] == "vote:stub-1"
    # `titan-ray why` reads it back: the rationale and the numbers shown
    assert main(["why", str(ours["decision_id"].iloc[0]), "--run", str(tmp_path / "a"), "--json"]) == 0
    why = json.loads(capsys.readouterr().out)
    assert "positive 5-bar momentum" in json.dumps(why) and "vote:stub-1" in json.dumps(why)
    calls = json.loads((tmp_path / "a" / "llm_calls.json").read_text())
    assert [c["bar"] for c in calls["gpt"]] == decision_bars

    # keys never reach the results or the cache
    for path in [*(tmp_path / "a").rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path

    # the server is gone: the rerun answers from the cache only, and writes the same leaderboard
    monkeypatch.setenv(CACHE_ONLY_ENV, "1")
    again = run_arena(parse_config(raw(stub.base_url, cache)), tmp_path / "b")
    assert not again.run_info["model_failures"]
    assert (tmp_path / "b" / "leaderboard.json").read_bytes() == (tmp_path / "a" / "leaderboard.json").read_bytes()

    # cache-only and an empty cache: the run fails, naming the cache folder
    empty = tmp_path / "empty-cache"
    with pytest.raises(ConfigError, match=f"LLM cache miss.*{empty}"):
        run_arena(parse_config(raw(stub.base_url, str(empty))), tmp_path / "c")
