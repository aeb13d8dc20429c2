"""The model contract: params apart from the code, sentences written when deciding, persistence declared."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from titan_ray.config import DataConfig
from titan_ray.data.synthetic import SyntheticProvider
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import action_phrase
from titan_ray.models.base import Persistent
from titan_ray.models.kinds import BASELINE_KINDS, MODEL_KINDS, build_model
from titan_ray.models.params import MODEL_PARAMS


@pytest.fixture(scope="module")
def market() -> BarBatch:
    return SyntheticProvider(DataConfig(n_symbols=4, bars=600), seed=2).load().bars


def test_every_kind_has_its_params_in_the_torch_free_module():
    assert list(MODEL_PARAMS) == list(MODEL_KINDS)
    for kind, params in MODEL_PARAMS.items():
        assert MODEL_KINDS[kind].Params is params, kind


def test_min_history_is_answered_by_the_params_alone():
    for kind in BASELINE_KINDS:
        assert MODEL_PARAMS[kind]().min_history() == 0
    lgb = MODEL_PARAMS["lightgbm"](features=["ret_1", "ret_5"], horizon=7)
    assert lgb.min_history() == 6 + 7 + 100  # ret_5 needs 6 bars, the label 7 after, 100 rows to learn
    assert MODEL_KINDS["lightgbm"].min_history(lgb.model_dump()) == lgb.min_history()
    assert MODEL_KINDS["sma_crossover"].min_history({}) == 0


def test_the_params_module_imports_no_model_code():
    code = ("import sys, titan_ray.models.params\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightgbm', 'ray')"
            " or m.startswith('titan_ray.models.') and m != 'titan_ray.models.params'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", BASELINE_KINDS)
def test_every_explanation_carries_the_sentence_of_its_kind(market, kind):
    model = build_model("m", kind, {}, market.symbols, seed=4)
    decided = [model.decide(c) for c in market.chunks(97)]
    batches = [d.explanations for d in decided if d.explanations is not None]
    assert batches
    for batch in batches:
        # a rule model's sentences are written from the rows when read, by its class, by reference
        assert batch.sentences is None and batch.writer == MODEL_KINDS[kind].write_sentences
        texts = batch.texts(market.symbols)
        assert len(texts) == len(batch) and pickle.loads(pickle.dumps(batch)).texts(market.symbols) == texts
        for record, text in zip(batch.records(market.symbols), texts, strict=True):
            r = record
            assert r.sentence == text == MODEL_KINDS[kind].render(r.symbol, r.old_weight, r.new_weight, r.features)
            assert r.sentence.startswith(action_phrase(r.symbol, r.old_weight, r.new_weight) + ": ")


def test_persistence_is_declared_by_the_kinds_that_have_it():
    learned = build_model("l", "lightgbm", {}, ("A", "B"), seed=1)
    assert isinstance(learned, Persistent)
    for kind in BASELINE_KINDS:
        assert not isinstance(build_model("r", kind, {}, ("A", "B"), seed=1), Persistent)


def test_explain_leaves_the_model_as_it_was(market):
    model = build_model("m", "rsi_reversion", {"period": 5}, market.symbols, seed=4)
    first = model.decide(market.slice(0, 300)).weights
    model.explain(market.slice(0, 300))
    rest = model.decide(market.slice(300, len(market))).weights
    again = build_model("m", "rsi_reversion", {"period": 5}, market.symbols, seed=4)
    assert np.array_equal(np.vstack([first, rest]), again.decide(market).weights)
