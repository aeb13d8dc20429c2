"""Walk-forward and purged K-fold splits: no training label ever reaches into the test block."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from titan_ray.ml.validation import label_ends, purged_kfold, walk_forward_splits


@given(n=st.integers(60, 400), k=st.integers(2, 6), h=st.integers(0, 10), emb=st.integers(0, 10))
def test_purged_kfold_never_trains_on_a_label_that_overlaps_the_test_block(n, k, h, emb):
    splits = purged_kfold(n, n_splits=k, horizon=h, embargo=emb)
    assert len(splits) == k
    assert np.array_equal(np.sort(np.concatenate([s.test for s in splits])), np.arange(n))
    ends = label_ends(n, h)
    for s in splits:
        a, b = s.test[0], s.test[-1]
        assert not np.isin(s.train, s.test).any()
        assert not ((s.train <= b) & (ends[s.train] >= a)).any()  # purged
        assert not ((s.train > b) & (s.train <= b + emb)).any()  # embargoed
        # nothing else is dropped
        expected = [t for t in range(n) if not (t <= b and t + h >= a) and not (b < t <= b + emb)]
        assert s.train.tolist() == expected


def test_purged_kfold_with_per_row_label_ends_and_share_embargo():
    h = np.zeros(100, dtype=int)
    h[45] = 20  # one label that runs into the next block
    splits = purged_kfold(100, n_splits=2, horizon=h, embargo=0.05)
    first, second = splits
    assert 45 not in second.train  # its label ends at 65, inside the second test block
    assert set(range(50, 55)).isdisjoint(first.train)  # 5 % of 100 rows embargoed after the first block
    assert 55 in first.train


@given(n=st.integers(50, 300), k=st.integers(1, 4), h=st.integers(0, 8))
def test_walk_forward_trains_only_on_the_past(n, k, h):
    splits = walk_forward_splits(n, n_splits=k, horizon=h, min_train=1)
    for s in splits:
        assert s.train.max() + h < s.test[0]
    tests = np.concatenate([s.test for s in splits])
    assert np.all(np.diff(tests) == 1) and tests[-1] == n - 1


def test_walk_forward_rolling_window_and_errors():
    splits = walk_forward_splits(100, n_splits=2, test_size=20, train_size=30, horizon=5)
    assert [s.test[0] for s in splits] == [60, 80]
    assert splits[1].train.tolist() == list(range(50, 75))
    with pytest.raises(ValueError, match="cannot hold"):
        walk_forward_splits(10, n_splits=5, test_size=2)
    with pytest.raises(ValueError, match="n_splits >= 2"):
        purged_kfold(10, n_splits=1)
