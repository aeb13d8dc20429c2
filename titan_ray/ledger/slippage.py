"""Slippage models: the price an order fills at, from the bar's reference price.

- ``fixed_bps``: a buy fills at ``price * (1 + bps/1e4)``, a sell at ``price * (1 - bps/1e4)``.
- ``sqrt_impact``: the square-root law of market impact on participation of the bar's volume,
  ``price * (1 +/- (bps/1e4 + coefficient * sqrt(quantity / volume)))``; a bar with no volume
  cannot absorb an order (``None``). Impact is capped at 50 % so that a sell price stays positive.
"""

from __future__ import annotations

import math

from titan_ray.config import FixedBpsSlippage, SqrtImpactSlippage

_MAX_IMPACT = 0.5


def base_fraction(model: FixedBpsSlippage | SqrtImpactSlippage) -> float:
    """The part of slippage that does not depend on the order's size."""
    return model.bps / 1e4


def slipped_price(
    model: FixedBpsSlippage | SqrtImpactSlippage,
    reference: float,
    direction: int,
    quantity: float,
    volume: float,
) -> float | None:
    """Fill price for ``quantity`` (> 0) in ``direction`` (+1 buy, -1 sell); None when no liquidity."""
    frac = model.bps / 1e4
    if isinstance(model, SqrtImpactSlippage):
        if not volume > 0:
            return None
        frac = min(frac + model.coefficient * math.sqrt(quantity / volume), _MAX_IMPACT)
    return reference * (1 + direction * frac)
