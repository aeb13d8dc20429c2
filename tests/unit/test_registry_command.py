"""`titan-ray registry`: list, history, alias, promote, rollback and reject against a folder registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from titan_ray.cli import main
from titan_ray.registry import ModelRegistry


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("TITAN_RAY_USER", "tester")
    registry = ModelRegistry(tmp_path / "reg")
    for i in range(3):
        registry.register("lgbm", "lightgbm", {}, save=lambda folder: (folder / "x").write_text("1"), features=[],
                          training_window={}, metrics={"oof_ic": 0.05 + i / 100, "oof_rows": 100.0, "zz": 1.0},
                          data_fingerprint="f")
    registry.register("sma", "sma_crossover", {}, save=lambda folder: None, features=[], training_window={},
                      metrics={}, data_fingerprint="f")
    return registry


def _run(reg: ModelRegistry, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["registry", *argv, "--registry", str(reg.root)])
    out, err = capsys.readouterr()
    return code, out, err


def test_alias_promote_rollback_reject_print_what_changed(reg, capsys, tmp_path):
    assert _run(reg, capsys, "alias", "lgbm", "champion", "1", "--why", "first") == \
        (0, "lgbm: champion none -> 1\n", "")
    assert _run(reg, capsys, "alias", "lgbm", "challenger", "2", "--why", "nightly", "--who", "trainer")[1] == \
        "lgbm: challenger none -> 2\n"
    evidence = tmp_path / "ab.json"
    evidence.write_text(json.dumps({"p_value": 0.0123, "n_bars": 5000, "arms": ["a", "b"]}))
    assert _run(reg, capsys, "promote", "lgbm", "--why", "beats it", "--evidence", str(evidence))[:2] == \
        (0, "lgbm: champion 1 -> 2 (1 archived)\n")
    assert reg.aliases("lgbm") == {"champion": 2} and reg.archived("lgbm") == [1]
    assert _run(reg, capsys, "promote", "lgbm", "--version", "3", "--why", "hand-picked")[1] == \
        "lgbm: champion 2 -> 3 (2 archived)\n"
    assert _run(reg, capsys, "rollback", "lgbm", "--why", "fills")[1] == \
        "lgbm: champion 3 -> 2, rolled back (3 archived)\n"
    assert _run(reg, capsys, "rollback", "lgbm", "--to", "3", "--why", "after all")[1] == \
        "lgbm: champion 2 -> 3, rolled back (2 archived)\n"
    _run(reg, capsys, "alias", "lgbm", "challenger", "1", "--why", "second look")
    assert _run(reg, capsys, "reject", "lgbm", "--why", "no")[1] == "lgbm: challenger 1 rejected (1 archived)\n"
    assert reg.aliases("lgbm") == {"champion": 3} and reg.archived("lgbm") == [1, 2]
    history = reg.history("lgbm")
    assert [e["action"] for e in history] == ["assign", "assign", "promote", "promote", "rollback", "rollback",
                                              "assign", "reject"]
    assert [e["who"] for e in history][:3] == ["tester", "trainer", "tester"]
    assert history[2]["evidence"] == {"p_value": 0.0123, "n_bars": 5000, "arms": ["a", "b"]}


def test_list_shows_stage_and_metrics(reg, capsys):
    main(["registry", "alias", "lgbm", "champion", "2", "--why", "x", "--registry", str(reg.root)])
    main(["registry", "alias", "lgbm", "challenger", "3", "--why", "x", "--registry", str(reg.root)])
    capsys.readouterr()
    code, out, _ = _run(reg, capsys, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["model", "version", "kind", "created", "stage", "validation",
                                              "metrics"]
    assert len(lines) == 5 and lines[4].split()[:3] == ["sma", "1", "sma_crossover"]
    row = {line.split()[1]: line for line in lines[1:4]}
    assert "champion" in row["2"] and "challenger" in row["3"] and "champion" not in row["1"]
    assert "oof_ic=0.06" in row["2"] and "oof_rows=100" not in row["2"]  # the key metric, not every one
    code, out, _ = _run(reg, capsys, "list", "lgbm")
    assert code == 0 and len(out.splitlines()) == 4 and "sma" not in out


def test_list_of_an_empty_registry_says_how_to_fill_it(tmp_path, capsys):
    assert main(["registry", "list", "--registry", str(tmp_path / "none")]) == 0
    assert "holds no models" in capsys.readouterr().out


def test_history_as_a_table_and_as_json_lines(reg, capsys, tmp_path):
    code, out, _ = _run(reg, capsys, "history", "lgbm")
    assert code == 0 and "no alias history yet" in out
    evidence = tmp_path / "ab.json"
    evidence.write_text(json.dumps({"n_bars": 5000, "p_value": 0.012345, "sharpe_a": 1.5, "sharpe_b": 1.1}))
    main(["registry", "alias", "lgbm", "champion", "1", "--why", "first one", "--registry", str(reg.root)])
    main(["registry", "promote", "lgbm", "--version", "2", "--why", "better on 5000 bars", "--evidence", str(evidence),
          "--registry", str(reg.root)])
    capsys.readouterr()
    code, out, _ = _run(reg, capsys, "history", "lgbm")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["at", "who", "action", "alias", "version", "previous", "why",
                                              "evidence"]
    assert len(lines) == 3 and "first one" in lines[1] and "assign" in lines[1] and "tester" in lines[1]
    assert "promote" in lines[2] and "better on 5000 bars" in lines[2]
    assert "p_value=0.01235 n_bars=5000 sharpe_a=1.5 (+1 more)" in lines[2]
    code, out, _ = _run(reg, capsys, "history", "lgbm", "--json")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == reg.history("lgbm")


@pytest.mark.parametrize(("argv", "message"), [
    (["promote", "lgbm", "--why", "x"], "lgbm has no challenger to promote; set one: titan-ray registry alias"),
    (["rollback", "lgbm", "--why", "x"], "lgbm has no champion to roll back; set one"),
    (["reject", "lgbm", "--why", "x"], "lgbm has no challenger to reject; set one"),
    (["alias", "lgbm", "champion", "9", "--why", "x"], "'lgbm' has no version 9"),
    (["alias", "lgbm", "champion", "1", "--why", " "], "why: say why"),
    (["history", "gbm"], "no model named 'gbm' in the registry .* \\(registered: lgbm, sma\\)"),
    (["list", "gbm"], "no model named 'gbm'"),
])
def test_an_impossible_change_exits_2_and_names_the_fix(reg, capsys, argv, message):
    code, out, err = _run(reg, capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("titan-ray registry: ") and re.search(message, err), err
    assert reg.history("lgbm") == []


def test_a_bad_evidence_file_exits_2(reg, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[0.01]")
    code, _, err = _run(reg, capsys, "alias", "lgbm", "champion", "1", "--why", "x", "--evidence", str(bad))
    assert code == 2 and "give one JSON object" in err
    code, _, err = _run(reg, capsys, "alias", "lgbm", "champion", "1", "--why", "x", "--evidence",
                        str(tmp_path / "missing.json"))
    assert code == 2 and "cannot be read" in err and reg.aliases("lgbm") == {}


def test_why_is_required_by_the_parser(reg, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["registry", "promote", "lgbm", "--registry", str(reg.root)])
    assert exit_.value.code == 2 and "--why" in capsys.readouterr().err


def test_the_default_registry_is_the_environment_variable(reg, capsys, monkeypatch):
    monkeypatch.setenv("TITAN_RAY_REGISTRY", str(reg.root))
    assert main(["registry", "alias", "lgbm", "champion", "1", "--why", "x"]) == 0
    assert reg.aliases("lgbm") == {"champion": 1}


def test_help_explains_the_aliases_and_stages(capsys):
    with pytest.raises(SystemExit):
        main(["registry", "--help"])
    text = capsys.readouterr().out
    for word in ("champion", "challenger", "archived", "aliases.json", "history.jsonl", "TITAN_RAY_REGISTRY",
                 "examples:", "titan-ray registry promote"):
        assert word in text, word
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "registry" in capsys.readouterr().out
