"""Torch's intra-op thread count, set for a block and restored after it.

Gradient attributions (``gradients``), the nets' training and scoring (``titan_ray.models.nets``)
and the PPO policy all run torch on a fixed number of threads: the arena runs many models on a
few cores, and the thread count is part of what makes float results repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads inside the block, and restore the count after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
