"""Decision ids and the causes of orders: typed parts, the same text everywhere."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest

from titan_ray.domain.decisions import DecisionId
from titan_ray.domain.orders import ForcedBy, PendingTarget, RejectReason


def test_a_decision_id_is_its_text_with_typed_parts() -> None:
    did = DecisionId("sma", "BRK:B", 41)
    assert did == "sma:BRK:B:41"
    assert (did.model, did.symbol, did.bar) == ("sma", "BRK:B", 41)
    assert {did: 1}["sma:BRK:B:41"] == 1  # hashes as its text


def test_a_decision_id_survives_pickle_json_and_parquet() -> None:
    did = DecisionId("lgbm", "AAA", 7)
    back = pickle.loads(pickle.dumps(did))
    assert isinstance(back, DecisionId) and (back.model, back.symbol, back.bar) == ("lgbm", "AAA", 7)
    assert json.loads(json.dumps({"id": did})) == {"id": "lgbm:AAA:7"}
    assert pd.DataFrame({"id": [did]})["id"].tolist() == ["lgbm:AAA:7"]


@pytest.mark.parametrize(
    ("text", "parts"),
    [("sma:AAA:12", ("sma", "AAA", 12)), ("m:BRK:B:3", ("m", "BRK:B", 3)), ("sma:AAA:x", None),
     ("sma", None), ("risk:kill_switch", None), (":AAA:1", None), ("sma::1", None)],
)
def test_parse_reads_an_id_at_the_edge(text: str, parts: tuple | None) -> None:
    did = DecisionId.parse(text)
    assert (None if did is None else (did.model, did.symbol, did.bar)) == parts


def test_a_forced_cause_reads_as_its_rule_and_maps_to_its_reject_reason() -> None:
    assert str(ForcedBy.KILL_SWITCH) == "risk:kill_switch"
    assert json.dumps(ForcedBy.CIRCUIT_BREAKER) == '"risk:circuit_breaker"'
    assert {f.reject_reason for f in ForcedBy if f.flattens} == {
        RejectReason.KILL_SWITCH, RejectReason.CIRCUIT_BREAKER, RejectReason.DAILY_LOSS_LIMIT}
    assert [f.rule for f in ForcedBy if not f.flattens] == ["stop_loss", "take_profit", "trailing_stop"]
    with pytest.raises(ValueError, match="protective exit"):
        ForcedBy.STOP_LOSS.reject_reason  # noqa: B018
    staged = PendingTarget(0.0, ForcedBy.DAILY_LOSS_LIMIT)
    assert isinstance(staged.cause, ForcedBy) and not isinstance(staged.cause, DecisionId)
