"""The id of a risk rule's flattening: ``risk:RULE:MODEL:SYMBOL:BAR``, a DecisionId with a rule."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest

from titan_ray.domain.decisions import RISK_RULES, DecisionId, ForcedId
from titan_ray.domain.orders import ForcedBy


def test_a_forced_id_is_its_text_with_typed_parts_and_survives_transport() -> None:
    fid = ForcedBy.CIRCUIT_BREAKER.decision_id("sma", "BRK:B", 812)
    assert fid == "risk:circuit_breaker:sma:BRK:B:812" and isinstance(fid, DecisionId)
    assert (fid.rule, fid.model, fid.symbol, fid.bar) == ("circuit_breaker", "sma", "BRK:B", 812)
    back = pickle.loads(pickle.dumps(fid))
    assert isinstance(back, ForcedId) and (back.rule, back.model, back.symbol, back.bar) == (
        "circuit_breaker", "sma", "BRK:B", 812)
    assert json.loads(json.dumps([fid])) == [str(fid)]
    assert pd.DataFrame({"id": [fid]})["id"].tolist() == ["risk:circuit_breaker:sma:BRK:B:812"]
    assert ForcedBy.of(fid) is ForcedBy.CIRCUIT_BREAKER
    with pytest.raises(ValueError, match="unknown risk rule 'margin_call'"):
        ForcedId("margin_call", "sma", "AAA", 1)


def test_the_rules_are_the_forced_causes() -> None:
    assert tuple(f.rule for f in ForcedBy) == RISK_RULES
    assert all(str(f.decision_id("m", "A", 3)) == f"{f.value}:m:A:3" for f in ForcedBy)


@pytest.mark.parametrize(
    ("text", "parts"),
    [("risk:kill_switch:m:AAA:12", ("kill_switch", "m", "AAA", 12)),
     ("risk:daily_loss_limit:m:BRK:B:3", ("daily_loss_limit", "m", "BRK:B", 3)),
     ("risk:circuit_breaker:m:AAA:x", None), ("risk:circuit_breaker", None), ("risk:kill_switch:m", None),
     ("risk:AAA:5", (None, "risk", "AAA", 5))],  # a model named risk decides as any model does
)
def test_parse_tells_a_forced_id_from_a_models(text: str, parts: tuple | None) -> None:
    did = DecisionId.parse(text)
    got = None if did is None else (getattr(did, "rule", None), did.model, did.symbol, did.bar)
    assert got == parts
    if did is not None:
        assert did == text and isinstance(did, ForcedId) == (parts[0] is not None)
