"""The journal stores a model's weights by the cells that changed, and gives back every bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from titan_ray.domain.decisions import Decisions
from titan_ray.ledger.journal import decode, encode

_weights = arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 6)),
                  elements=st.sampled_from([0.0, -0.0, 0.25, -0.5, 1.0, np.nan, np.inf, 1e-300]))


@given(_weights)
def test_weights_come_back_bit_for_bit(w: np.ndarray) -> None:
    entry = ("chunk", 3, None, [Decisions("m", 17, w), None])
    kind, seq, bars, (back, none) = decode(encode(entry))
    assert (kind, seq, bars, none) == ("chunk", 3, None, None)
    assert (back.model, back.start, back.explanations) == ("m", 17, None)
    assert back.weights.dtype == np.float64 and back.weights.shape == w.shape
    assert back.weights.view(np.int64).tolist() == w.view(np.int64).tolist()


def test_weights_that_rarely_change_take_few_bytes() -> None:
    w = np.zeros((256, 12))
    w[100:, 3] = 0.25
    w[200:, 7] = 0.5
    sparse = len(encode(Decisions("m", 0, w)))
    assert sparse < w.nbytes / 10  # the first row and two changes, not 256 rows
