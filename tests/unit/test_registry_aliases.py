"""Registry aliases and stages: champion, challenger, archived, and the history of every change."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from titan_ray.config import ConfigError, parse_config
from titan_ray.registry import (
    ALIASES,
    ARCHIVED,
    REF_PATTERN,
    ModelRegistry,
    RegistryError,
    default_actor,
    parse_ref,
    registered_models,
)

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
EVENT_KEYS = {"at", "who", "action", "alias", "version", "previous", "archived", "why", "evidence"}


def _registry(tmp_path: Path, n: int = 4, name: str = "lgbm", kind: str = "buy_and_hold") -> ModelRegistry:
    reg = ModelRegistry(tmp_path, clock=lambda: T0)
    for i in range(n):
        reg.register(name, kind, {}, save=lambda folder: (folder / "x").write_text("1"), features=[],
                     training_window={}, metrics={"oof_ic": 0.01 * i}, data_fingerprint="f")
    return reg


def _state(reg: ModelRegistry, name: str = "lgbm") -> dict:
    return json.loads((reg.root / name / "aliases.json").read_text())


def test_the_reference_forms_and_their_error():
    assert ALIASES == ("champion", "challenger") and ARCHIVED == "archived"
    assert parse_ref("lgbm") == ("lgbm", None)
    assert parse_ref("lgbm@3") == ("lgbm", 3)
    assert parse_ref("lgbm@champion") == ("lgbm", "champion")
    assert parse_ref("my.model-2@challenger") == ("my.model-2", "challenger")
    for bad in ("lgbm@0", "lgbm@latest", "lgbm@archived", "lgbm@", "@3", "a/b"):
        with pytest.raises(RegistryError, match=r"NAME .*NAME@VERSION .*NAME@ALIAS \(champion or challenger\)"):
            parse_ref(bad)
    assert re.match(REF_PATTERN, "lgbm@champion") and not re.match(REF_PATTERN, "lgbm@champ")


def test_get_and_resolve_by_alias_and_an_unset_alias_names_the_fix(tmp_path):
    reg = _registry(tmp_path)
    with pytest.raises(RegistryError, match=r"lgbm has no champion yet; set one: titan-ray registry alias lgbm "
                                            r"champion VERSION"):
        reg.resolve("lgbm@champion")
    with pytest.raises(RegistryError, match="no challenger yet"):
        reg.get("lgbm", "challenger")
    with pytest.raises(RegistryError, match="no alias 'latest'"):
        reg.get("lgbm", "latest")
    reg.set_alias("lgbm", "champion", 2, why="first champion")
    reg.set_alias("lgbm", "challenger", 4, why="retrained")
    assert reg.get("lgbm", "champion").version == 2 and reg.resolve("lgbm@champion").ref == "lgbm@2"
    assert reg.resolve("lgbm@challenger").version == 4 and reg.get("lgbm").version == 4
    assert reg.aliases("lgbm") == {"champion": 2, "challenger": 4}
    assert [reg.stage("lgbm", v) for v in (1, 2, 3, 4)] == [None, "champion", None, "challenger"]
    assert _state(reg) == {"champion": 2, "challenger": 4, "archived": []}


def test_an_alias_needs_an_existing_version_and_cannot_name_the_champion_twice(tmp_path):
    reg = _registry(tmp_path, n=2)
    with pytest.raises(RegistryError, match=r"no version 9.*versions: \[1, 2\]"):
        reg.set_alias("lgbm", "champion", 9, why="x")
    with pytest.raises(RegistryError, match="no model named 'gbm'"):
        reg.set_alias("gbm", "champion", 1, why="x")
    with pytest.raises(ValueError, match="alias 'best'"):
        reg.set_alias("lgbm", "best", 1, why="x")
    reg.set_alias("lgbm", "champion", 1, why="x")
    with pytest.raises(RegistryError, match="lgbm@1 is the champion.*cannot be champion and challenger"):
        reg.set_alias("lgbm", "challenger", 1, why="x")
    reg.set_alias("lgbm", "challenger", 2, why="x")
    with pytest.raises(RegistryError, match="lgbm@2 is the challenger; promote it instead"):
        reg.set_alias("lgbm", "champion", 2, why="x")
    with pytest.raises(RegistryError, match="already the champion"):
        reg.set_alias("lgbm", "champion", 1, why="x")
    assert len(reg.history("lgbm")) == 2  # the refused changes left no trace


def test_why_is_required_and_evidence_must_be_json(tmp_path):
    reg = _registry(tmp_path, n=1)
    for why in ("", "   "):
        with pytest.raises(ValueError, match="why: say why"):
            reg.set_alias("lgbm", "champion", 1, why=why)
    with pytest.raises(TypeError, match="evidence: give a dict"):
        reg.set_alias("lgbm", "champion", 1, why="x", evidence=[0.01])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="evidence: must be JSON-able"):
        reg.set_alias("lgbm", "champion", 1, why="x", evidence={"f": object()})
    assert reg.history("lgbm") == [] and reg.aliases("lgbm") == {}


def test_promote_moves_the_challenger_up_and_archives_the_champion(tmp_path):
    reg = _registry(tmp_path)
    with pytest.raises(RegistryError, match="no challenger to promote; set one.*--version N"):
        reg.promote("lgbm", why="x")
    reg.set_alias("lgbm", "champion", 1, why="first")
    reg.set_alias("lgbm", "challenger", 2, why="retrained")
    event = reg.promote("lgbm", who="ana", why="beats it", evidence={"p_value": np.float64(0.01), "n_bars": 5000})
    assert event == {"at": "2025-01-02T03:04:05+00:00", "who": "ana", "action": "promote", "alias": "champion",
                     "version": 2, "previous": 1, "archived": 1, "why": "beats it",
                     "evidence": {"p_value": 0.01, "n_bars": 5000}}
    assert reg.aliases("lgbm") == {"champion": 2} and reg.archived("lgbm") == [1]
    assert [reg.stage("lgbm", v) for v in (1, 2, 3)] == ["archived", "champion", None]
    assert _state(reg) == {"champion": 2, "archived": [1]}
    # an explicit version leaves the challenger in place
    reg.set_alias("lgbm", "challenger", 4, why="next")
    reg.promote("lgbm", why="hand-picked", version=3)
    assert reg.aliases("lgbm") == {"champion": 3, "challenger": 4} and reg.archived("lgbm") == [1, 2]


def test_the_first_promotion_archives_nothing(tmp_path):
    reg = _registry(tmp_path, n=2)
    reg.set_alias("lgbm", "challenger", 2, why="x")
    event = reg.promote("lgbm", why="first")
    assert (event["version"], event["previous"], event["archived"]) == (2, None, None)
    assert reg.aliases("lgbm") == {"champion": 2} and reg.archived("lgbm") == []


def test_rollback_walks_back_through_the_champions_and_archives_each(tmp_path):
    reg = _registry(tmp_path)
    with pytest.raises(RegistryError, match="no champion to roll back"):
        reg.rollback("lgbm", why="x")
    reg.set_alias("lgbm", "champion", 1, why="first")
    for v in (2, 3):
        reg.set_alias("lgbm", "challenger", v, why="retrained")
        reg.promote("lgbm", why="better")
    assert reg.aliases("lgbm") == {"champion": 3} and reg.archived("lgbm") == [1, 2]

    event = reg.rollback("lgbm", why="live fills worse")
    assert (event["action"], event["version"], event["previous"], event["archived"]) == ("rollback", 2, 3, 3)
    assert reg.aliases("lgbm") == {"champion": 2} and reg.archived("lgbm") == [1, 3]
    event = reg.rollback("lgbm", why="still worse")  # further back, not back to 3
    assert (event["version"], event["previous"], event["archived"]) == (1, 2, 2)
    assert reg.aliases("lgbm") == {"champion": 1} and reg.archived("lgbm") == [2, 3]
    with pytest.raises(RegistryError, match="no earlier champion on record.*rollback lgbm --to VERSION"):
        reg.rollback("lgbm", why="x")
    event = reg.rollback("lgbm", why="hand-picked", to=3)
    assert (event["version"], event["previous"], event["archived"]) == (3, 1, 1)
    assert reg.aliases("lgbm") == {"champion": 3} and reg.archived("lgbm") == [1, 2]


def test_rollback_after_a_new_promotion_returns_to_the_champion_it_replaced(tmp_path):
    reg = _registry(tmp_path)
    reg.set_alias("lgbm", "champion", 1, why="first")
    reg.promote("lgbm", version=2, why="x")
    reg.rollback("lgbm", why="x")  # back to 1
    reg.promote("lgbm", version=3, why="x")  # 1 -> 3
    assert reg.rollback("lgbm", why="x")["version"] == 1
    with pytest.raises(RegistryError, match="no earlier champion"):
        reg.rollback("lgbm", why="x")


def test_rollback_goes_back_past_an_assignment_that_replaced_the_champion(tmp_path):
    reg = _registry(tmp_path)
    reg.set_alias("lgbm", "champion", 1, why="first")
    event = reg.set_alias("lgbm", "champion", 3, why="hand-set")
    assert (event["action"], event["previous"], event["archived"]) == ("assign", 1, None)
    assert reg.rollback("lgbm", why="x")["version"] == 1


def test_reject_archives_the_challenger_and_clear_unsets_an_alias(tmp_path):
    reg = _registry(tmp_path)
    with pytest.raises(RegistryError, match="no challenger to reject; set one"):
        reg.reject("lgbm", why="x")
    reg.set_alias("lgbm", "champion", 1, why="x")
    reg.set_alias("lgbm", "challenger", 2, why="x")
    event = reg.reject("lgbm", why="worse drawdown")
    assert (event["action"], event["alias"], event["version"], event["previous"], event["archived"]) == \
        ("reject", "challenger", None, 2, 2)
    assert reg.aliases("lgbm") == {"champion": 1} and reg.stage("lgbm", 2) == ARCHIVED
    # an archived version can come back as challenger: it leaves the archive
    reg.set_alias("lgbm", "challenger", 2, why="second look")
    assert reg.stage("lgbm", 2) == "challenger" and reg.archived("lgbm") == []
    event = reg.clear_alias("lgbm", "challenger", why="not now")
    assert (event["action"], event["version"], event["previous"], event["archived"]) == ("clear", None, 2, None)
    assert reg.aliases("lgbm") == {"champion": 1} and reg.stage("lgbm", 2) is None
    with pytest.raises(RegistryError, match="no challenger to clear"):
        reg.clear_alias("lgbm", "challenger", why="x")


def test_history_records_every_change_in_order_with_who_why_and_evidence(tmp_path, monkeypatch):
    monkeypatch.setenv("TITAN_RAY_USER", "ci-bot")
    assert default_actor() == "ci-bot"
    reg = _registry(tmp_path)
    assert reg.history("lgbm") == []
    reg.set_alias("lgbm", "champion", 1, why="first")
    reg.set_alias("lgbm", "challenger", 2, who="trainer", why="nightly", evidence={"n_bars": np.int64(900)})
    reg.promote("lgbm", who="ana", why="p=0.01", evidence={"p_value": 0.01})
    reg.rollback("lgbm", why="fills")
    reg.set_alias("lgbm", "challenger", 3, why="again")
    reg.reject("lgbm", why="no")
    history = reg.history("lgbm")
    assert [(e["action"], e["alias"], e["version"], e["previous"], e["archived"]) for e in history] == [
        ("assign", "champion", 1, None, None), ("assign", "challenger", 2, None, None),
        ("promote", "champion", 2, 1, 1), ("rollback", "champion", 1, 2, 2),
        ("assign", "challenger", 3, None, None), ("reject", "challenger", None, 3, 3)]
    assert [e["who"] for e in history] == ["ci-bot", "trainer", "ana", "ci-bot", "ci-bot", "ci-bot"]
    assert [e["why"] for e in history] == ["first", "nightly", "p=0.01", "fills", "again", "no"]
    assert history[1]["evidence"] == {"n_bars": 900} and history[0]["evidence"] is None
    assert all(set(e) == EVENT_KEYS and e["at"] == "2025-01-02T03:04:05+00:00" for e in history)
    lines = (reg.root / "lgbm" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert _state(reg) == {"champion": 1, "archived": [2, 3]}


def test_a_torn_history_line_is_not_an_event_and_the_next_one_starts_fresh(tmp_path):
    reg = _registry(tmp_path, n=2)
    reg.set_alias("lgbm", "champion", 1, why="x")
    path = reg.root / "lgbm" / "history.jsonl"
    with open(path, "a") as f:
        f.write('{"at": "2025')  # a crash mid-append
    assert len(reg.history("lgbm")) == 1
    reg.set_alias("lgbm", "challenger", 2, why="y")
    with pytest.raises(RegistryError, match=r"history.jsonl, line 2, is not a JSON event.*repair or delete"):
        reg.history("lgbm")


def test_versions_and_names_ignore_the_alias_files(tmp_path):
    reg = _registry(tmp_path, n=2)
    reg.set_alias("lgbm", "champion", 1, why="x")
    reg.set_alias("lgbm", "challenger", 2, why="x")
    reg.promote("lgbm", why="x")
    names = {p.name for p in (tmp_path / "lgbm").iterdir()}
    assert {"aliases.json", "history.jsonl", ".aliases.lock"} <= names
    assert not [n for n in names if ".tmp" in n]
    assert [v.version for v in reg.versions("lgbm")] == [1, 2] and reg.names() == ["lgbm"]
    assert [v.ref for v in reg.list()] == ["lgbm@1", "lgbm@2"]
    assert reg.register("lgbm", "buy_and_hold", {}, save=lambda f: None, features=[], training_window={},
                        metrics={}, data_fingerprint="f").version == 3
    assert reg.stage("lgbm", 3) is None and reg.aliases("lgbm") == {"champion": 2}  # a new version: no alias


def test_a_broken_state_file_names_itself_and_the_fix(tmp_path):
    reg = _registry(tmp_path, n=1)
    (reg.root / "lgbm" / "aliases.json").write_text('{"champion": "one"}')
    with pytest.raises(RegistryError, match=r"aliases.json must look like .*repair it from history.jsonl"):
        reg.aliases("lgbm")


def test_concurrent_changes_from_many_threads_are_all_recorded(tmp_path):
    reg = _registry(tmp_path, n=8)
    reg.set_alias("lgbm", "champion", 1, why="start")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        mine = ModelRegistry(tmp_path)  # a registry object of its own, like another process
        barrier.wait()
        for k in range(12):
            changes = (partial(mine.set_alias, "lgbm", "challenger", 2 + (i + k) % 7, who=f"t{i}", why="race"),
                       partial(mine.promote, "lgbm", who=f"t{i}", why="race"))
            for change in changes:
                try:
                    change()
                except RegistryError:
                    pass  # "already the champion", "no challenger" as the others move things: refused, not lost
                except BaseException as err:  # noqa: BLE001 - reported by the assertion below
                    errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = reg.history("lgbm")
    assert len(history) > 50
    # with every change made under the lock, each event's `previous` is what the one before left there
    holder: dict[str, int | None] = {"champion": None, "challenger": None}
    for e in history:
        assert e["previous"] == holder[e["alias"]], e
        holder[e["alias"]] = e["version"]
        if e["action"] == "promote" and holder["challenger"] == e["version"]:
            holder["challenger"] = None
    state = _state(reg)  # valid JSON, and the state the history leads to
    assert {a: state.get(a) for a in ALIASES} == holder


def test_the_arena_loads_a_champion_and_names_the_alias_fix(tmp_path, monkeypatch):
    reg = _registry(tmp_path, n=2, name="champ")
    raw = {"registry": {"path": str(tmp_path)},
           "models": [{"name": "a", "kind": "buy_and_hold", "artifact": "champ@champion"}]}
    aliased = parse_config(raw)  # the arena config takes an alias as an artifact
    with pytest.raises(ConfigError, match=r"models\[0\]\.artifact \(a\): champ has no champion yet; set one: "
                                          r"titan-ray registry alias champ champion VERSION --why TEXT$"):
        registered_models(aliased, ["AAA"])
    reg.set_alias("champ", "champion", 1, why="x")
    assert list(registered_models(aliased, ["AAA"])) == ["a"]
