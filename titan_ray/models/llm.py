"""An LLM (or a committee of them) as an arena competitor: kind ``llm``.

Every ``every`` bars (the global bars that are multiples of it, so the decisions never depend on
the chunk size), the model shows each LLM the causal features and recent closes of its symbols at
the decision bar (``llm_prompt.py``), asks for structured JSON (target weight per symbol,
confidence, rationale) and checks the answer. All requests of a chunk (decision bars × symbol
batches × committee members) run concurrently, ``max_concurrency`` at a time, each inside its own
deadline (``timeout_s``) with back-off on 429/5xx (``llm_client.py``). The prompt never holds the
position, so the requests of one chunk do not wait on one another.

- An invalid, late, refused or failed answer keeps the previous target (per symbol) and is recorded
  in the model's account (``account()``: per request, its status and error).
- A committee's target is the **mean of the valid members' weights** for each symbol (a member whose
  answer failed is left out; none valid: the previous target). Each member's weight is a feature of
  the decision (``vote:MEMBER``, attribution weight / voters), its rationale is in the sentence.
- Absolute weights summing over 1 are scaled down to 1.
- ``knowledge_cutoff``: decisions on bars before it are counted (``contaminated_bars``) and say so in
  their sentence: the LLM may have been trained on what came after them.

``account()`` is what the leaderboard shows (``llm_tokens``, ``llm_latency_s`` mean per request,
``llm_cost``, ``contaminated``, ``contaminated_bars``) and, under ``calls``, every request's record.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions, Feature, action_phrase
from titan_ray.features.pipeline import FeatureEngine
from titan_ray.models.base import Reasons, TradingModel, hold_forward
from titan_ray.models.llm_client import (
    ChatCache,
    ChatClient,
    ChatOutcome,
    LlmCacheMiss,
    LlmEndpointError,
    LlmKeyMissing,
    cache_only_from_env,
)
from titan_ray.models.llm_prompt import (
    Answer,
    InvalidAnswer,
    Shown,
    check_answer,
    messages,
    response_format,
    shown_number,
    shown_time,
)
from titan_ray.models.params import LlmParams

DEFAULT_CACHE = "llm_cache"


class LlmModel(TradingModel):
    kind = "llm"
    method = "llm"
    Params = LlmParams

    def __init__(self, name: str, params: dict[str, Any], symbols: tuple[str, ...], *, seed: int) -> None:
        super().__init__(name, params, symbols, seed=seed)
        p: LlmParams = self.params
        n = len(self.symbols)
        self.long_only = not p.allow_short
        self._stream = FeatureEngine(p.features).stream()
        self._closes = np.full((p.bars_shown - 1, n), np.nan)  # the closes before the chunk
        self._weight = np.zeros(n)
        self._shown_names = tuple(f"SYM{i + 1}" for i in range(n)) if p.anonymise_symbols else self.symbols
        per = p.symbols_per_request or n
        self._batches = [np.arange(i, min(i + per, n)) for i in range(0, n, per)]
        self._batch_of = np.repeat(np.arange(len(self._batches)), [len(b) for b in self._batches])
        voters = p.voters()
        self._labels = _labels([v.model for v in voters])
        # a model listed again at the same endpoint is sampled again: its requests are cached apart
        seen: dict[tuple[str, str], int] = {}
        self._samples = []
        for v in voters:
            at = (v.model, v.base_url or p.base_url)
            self._samples.append(seen.get(at, 0))
            seen[at] = seen.get(at, 0) + 1
        cache = ChatCache(Path(p.cache_dir or DEFAULT_CACHE))
        cache_only = p.cache_only or cache_only_from_env()
        self._clients = [ChatClient(v.base_url or p.base_url, v.api_key_env, cache, timeout_s=p.timeout_s,
                                    max_retries=p.max_retries, backoff_s=p.backoff_s, cache_only=cache_only)
                         for v in voters]
        self._voters = voters
        self._cutoff_ns = (None if p.knowledge_cutoff is None else
                           int(datetime.fromisoformat(p.knowledge_cutoff).replace(tzinfo=UTC).timestamp()) * 10**9)
        self._calls: list[dict[str, Any]] = []  # one record per request, in (bar, batch, member) order
        self._decision_bars: list[int] = []
        self._contaminated: list[int] = []
        self._why: dict[int, dict[str, Any]] = {}  # decision bar -> what was shown and answered
        self._error: str | None = None  # the first error that needs a person (a cache miss, a bad key, ...)

    # --- the arena's hooks ----------------------------------------------------------------------

    def observe(self, bars: BarBatch) -> None:
        self._advance(bars)  # warm-up: features and closes move on, nobody is asked

    def feature_names(self) -> tuple[str, ...]:
        return (*self.params.features, "close", "confidence", *(f"vote:{label}" for label in self._labels))

    def account(self) -> dict[str, Any]:
        """The leaderboard's LLM keys and every request's record (``calls``)."""
        calls = self._calls
        n = len(calls)
        prompt = sum(c["prompt_tokens"] for c in calls)
        completion = sum(c["completion_tokens"] for c in calls)
        cost = 0.0
        for c in calls:
            cost += c["cost"]
        latency = 0.0
        for c in calls:
            latency += c["latency_s"]
        board = {
            "llm_calls": n,
            "llm_failures": sum(c["status"] != "ok" for c in calls),
            "llm_tokens": prompt + completion,
            "llm_prompt_tokens": prompt,
            "llm_completion_tokens": completion,
            "llm_latency_s": round(latency / n, 6) if n else None,
            "llm_cost": round(cost, 9),
            "knowledge_cutoff": self.params.knowledge_cutoff,
            "contaminated": bool(self._contaminated),
            "contaminated_bars": len(self._contaminated),
        }
        return {"leaderboard": board, "calls": list(calls), "decision_bars": list(self._decision_bars),
                "contaminated_bars": list(self._contaminated), "error": self._error}

    # --- deciding -------------------------------------------------------------------------------

    def _advance(self, bars: BarBatch) -> tuple[np.ndarray, np.ndarray]:
        """The chunk's features (T, S, F), and its closes with the ``bars_shown - 1`` before (T + n - 1, S)."""
        feats = self._stream.update(bars)
        ext = np.vstack([self._closes, bars.close])
        keep = self.params.bars_shown - 1
        self._closes = ext[len(ext) - keep:] if keep else self._closes
        return feats, ext

    def _weights(self, bars: BarBatch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        feats, ext = self._advance(bars)
        rows = list(range((-bars.start) % p.every, len(bars), p.every))
        jobs = []
        for t in rows:
            for b, idx in enumerate(self._batches):
                shown = self._shown(t, idx, feats, ext, int(bars.timestamps[t]))
                for v in range(len(self._clients)):
                    jobs.append((t, b, v, shown, self._body(v, shown)))
        answers = self._ask(jobs, bars)
        events = np.full((len(bars), len(self.symbols)), np.nan)
        current = self._weight.copy()
        for t in rows:
            bar = bars.start + t
            votes = np.full((len(self.symbols), len(self._clients)), np.nan)
            conf = np.full((len(self._batches), len(self._clients)), np.nan)
            rationale: dict[tuple[int, int], str] = {}  # (voter, batch) -> text
            for b, idx in enumerate(self._batches):
                for v in range(len(self._clients)):
                    ans = answers.get((t, b, v))
                    if ans is not None:
                        votes[idx, v] = ans.weights
                        conf[b, v] = ans.confidence
                        rationale[v, b] = ans.rationale
            valid = ~np.isnan(votes).all(axis=1)
            if valid.any():
                mean = current.copy()
                mean[valid] = np.nanmean(votes[valid], axis=1)  # the committee: mean of the valid votes
                gross = float(np.abs(mean).sum())
                target = mean / gross if gross > 1.0 else mean
                events[t] = target
                current = target
            self._decision_bars.append(bar)
            ts = int(bars.timestamps[t])
            if self._cutoff_ns is not None and ts < self._cutoff_ns:
                self._contaminated.append(bar)
            self._why[bar] = {"votes": votes, "conf": conf, "rationale": rationale,
                              "values": self._values_shown(t, feats, ext)}
        weights = hold_forward(events, self._weight)
        self._weight = weights[-1].copy()
        return weights, {}

    def _ask(self, jobs: list[tuple[int, int, int, Shown, dict[str, Any]]], bars: BarBatch
             ) -> dict[tuple[int, int, int], Answer]:
        """Every job's request, concurrently; the valid answers by (row, batch, voter), each request recorded."""
        if not jobs:
            return {}
        workers = min(self.params.max_concurrency, len(jobs))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"llm-{self.name}") as pool:
                outcomes = list(pool.map(lambda job: self._clients[job[2]].complete(job[4], self._samples[job[2]]),
                                         jobs))
        except (LlmCacheMiss, LlmKeyMissing, LlmEndpointError) as err:
            self._error = self._error or str(err)  # needs a person: the run reads it from the account and fails
            raise
        answers = {}
        for (t, b, v, shown, _), (key, outcome) in zip(jobs, outcomes, strict=True):
            answer, status, error = self._check(outcome, shown)
            if answer is not None:
                answers[t, b, v] = answer
            self._record(bars.start + t, int(bars.timestamps[t]), b, v, key, outcome, answer, status, error)
        return answers

    def _check(self, outcome: ChatOutcome, shown: Shown) -> tuple[Answer | None, str, str | None]:
        if outcome.content is None:
            return None, "failed", outcome.error
        try:
            return check_answer(outcome.content, shown.names, self.params.allow_short), "ok", None
        except InvalidAnswer as err:
            return None, "invalid", str(err)

    def _record(self, bar: int, ts: int, b: int, v: int, key: str, outcome: ChatOutcome, answer: Answer | None,
                status: str, error: str | None) -> None:
        p = self.params
        cost = outcome.prompt_tokens / 1000 * p.cost_per_1k_prompt + \
            outcome.completion_tokens / 1000 * p.cost_per_1k_completion
        idx = self._batches[b]
        self._calls.append({
            "bar": bar, "timestamp": ts, "member": self._labels[v], "batch": b, "request": key, "status": status,
            "error": error, "attempts": outcome.attempts, "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens, "latency_s": outcome.latency_s, "cost": cost,
            "weights": None if answer is None else dict(zip([self.symbols[i] for i in idx], answer.weights,
                                                            strict=True)),
            "confidence": None if answer is None else answer.confidence,
            "rationale": None if answer is None else answer.rationale,
        })

    def _shown(self, t: int, idx: np.ndarray, feats: np.ndarray, ext: np.ndarray, ts: int) -> Shown:
        n = self.params.bars_shown
        closes = ext[t: t + n]  # the n closes ending at row t (ext starts n - 1 rows before the chunk)
        return Shown(
            names=tuple(self._shown_names[i] for i in idx),
            features=tuple(self.params.features),
            values=tuple(tuple(shown_number(x) for x in feats[t, i]) for i in idx),
            closes=tuple(tuple(shown_number(x) for x in closes[:, i]) for i in idx),
            when=shown_time(ts, self.params.shift_days),
        )

    def _values_shown(self, t: int, feats: np.ndarray, ext: np.ndarray) -> np.ndarray:
        """(S, F + 1): each symbol's features and close at row t, as shown (NaN for a missing one)."""
        last = ext[t + self.params.bars_shown - 1]
        raw = np.column_stack([feats[t], last])
        return np.vectorize(lambda x: np.nan if shown_number(x) is None else shown_number(x), otypes=[float])(raw)

    def _body(self, v: int, shown: Shown) -> dict[str, Any]:
        p = self.params
        return {"model": self._voters[v].model, "messages": messages(shown, p.allow_short),
                "response_format": response_format(shown.names, p.allow_short), "temperature": p.temperature,
                "max_tokens": p.max_tokens, "seed": self.seed}

    # --- explaining -----------------------------------------------------------------------------

    def _explain(self, rows, cols, old, new, info, bars) -> Reasons:
        names = self.feature_names()
        values = np.full((len(rows), len(names)), np.nan)
        attributions = np.zeros((len(rows), len(names)))
        k = len(self.params.features) + 1
        for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
            why = self._why.get(bars.start + int(r))
            if why is None:
                continue
            votes = why["votes"][c]
            n_valid = int(np.isfinite(votes).sum())
            values[i, :k] = why["values"][c]
            conf = why["conf"][self._batch_of[c]][np.isfinite(votes)]
            values[i, k] = float(conf.mean()) if len(conf) else np.nan
            values[i, k + 1:] = votes
            if n_valid:
                attributions[i, k + 1:] = np.where(np.isfinite(votes), votes / n_valid, 0.0)
        return Reasons(names, values, attributions, np.nan)

    def _decide_piece(self, bars: BarBatch) -> Decisions:
        out = super()._decide_piece(bars)
        batch = out.explanations
        if batch is None:
            return out
        sentences = tuple(self._sentence_of(int(b), int(s), float(o), float(n)) for b, s, o, n in
                          zip(batch.bar, batch.symbol, batch.old_weight, batch.new_weight, strict=True))
        return replace(out, explanations=replace(batch, sentences=sentences))

    def _sentence_of(self, bar: int, s: int, old: float, new: float) -> str:
        head = action_phrase(self.symbols[s], old, new)
        why = self._why.get(bar)
        if why is None:
            return f"{head}: LLM decision."
        b = int(self._batch_of[s])
        parts = []
        for v, label in enumerate(self._labels):
            text = why["rationale"].get((v, b))
            if text is None:
                continue
            vote = why["votes"][s, v]
            parts.append(text if len(self._labels) == 1 else f"{label} ({vote:.3g}): {text}")
        body = " | ".join(parts) if parts else "no valid answer; previous target kept"
        if bar in self._contaminated:
            body += f" [before knowledge cutoff {self.params.knowledge_cutoff}: the LLM may know what came next]"
        return f"{head}: {body}"

    @classmethod
    def render(cls, symbol: str, old: float, new: float, features: tuple[Feature, ...]) -> str:
        return f"{action_phrase(symbol, old, new)}: LLM decision."


def _labels(models: Sequence[str]) -> list[str]:
    """Each member's name on the decisions: its model, with #2, #3 for a model listed again."""
    seen: dict[str, int] = {}
    out = []
    for m in models:
        seen[m] = seen.get(m, 0) + 1
        out.append(m if seen[m] == 1 else f"{m}#{seen[m]}")
    return out
