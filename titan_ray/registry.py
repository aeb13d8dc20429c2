"""The model registry: a folder of trained models, one sub-folder per version, each with metadata.

Layout::

    ROOT/NAME/v0001/metadata.json   kind, params, features, training window, validation metrics,
                   /...artefacts    data fingerprint, code version, created (UTC, ISO 8601)
    ROOT/NAME/v0002/...

``register`` writes a new version into a temporary folder under ``ROOT/NAME`` (the model's own
``save`` callback fills it, then ``metadata.json``), and renames it into place: a reader never
sees a half-written version, and two writers racing for the same number both succeed (the loser
takes the next number). Versions are never changed after that.

The arena loads a registered model with the ModelSpec key ``artifact: NAME`` (the latest version)
or ``NAME@VERSION``; Serve and Tune use the same class. An arena ``ppo`` with no ``artifact``
registers the policy it trains at start-up as ``NAME-startup`` and finds it there on the next run
on the same bars (``titan_ray.train.ppo.StartupTrainer``). The root is ``registry.path`` of the arena
config, else the environment variable ``TITAN_RAY_REGISTRY``, else ``registry`` in the working
directory. On a cluster put it on storage every node can read.

Aliases and stages. A model has at most one ``champion`` (what Serve's model apps and the arena load
as ``NAME@champion``) and one ``challenger`` (what a retraining job registers for evaluation,
``NAME@challenger``); a version cannot be both. Versions retired by a promotion, a rollback or a
rejection are ``archived`` (a stage, not an alias). Every change goes through one of ``set_alias``,
``clear_alias``, ``promote``, ``rollback`` or ``reject``, each with who made it, why (required) and
the evidence (any JSON-able dict), and is kept in two files next to the versions::

    ROOT/NAME/aliases.json    the current state: {"champion": 3, "challenger": 4, "archived": [1, 2]},
                              replaced atomically (temporary file + os.replace)
    ROOT/NAME/history.jsonl   one event per line, oldest first: at, who, action, alias, version
                              (the alias's new value), previous (its old value), archived, why, evidence
    ROOT/NAME/.aliases.lock   an exclusive fcntl lock held across the read-modify-write of aliases.json
                              and the append to history.jsonl, so concurrent changes never lose one

The event returned by a change is the line written to history.jsonl, parsed back: the caller holds
exactly what the history says. ``rollback`` walks back the chain of champions the history records
(each assignment or promotion pushes a champion, each rollback pops one), so two rollbacks go two
champions back. ``titan-ray registry`` is the command line for all of this.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from titan_ray.config import MODEL_ALIASES, REF_PATTERN, ArenaConfig, ConfigError
from titan_ray.domain.bars import BarBatch
from titan_ray.models.base import Persistent, TradingModel
from titan_ray.models.kinds import MODEL_KINDS
from titan_ray.models.profiles import write_profile
from titan_ray.provenance import code_version

ENV_VAR = "TITAN_RAY_REGISTRY"
DEFAULT_ROOT = "registry"
METADATA = "metadata.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")


def is_model_name(name: str) -> bool:
    """Whether a model may be called ``name``: a folder of the registry, never ``.`` or ``..``."""
    return bool(NAME_PATTERN.match(name)) and name.strip(".") != ""
ALIASES = MODEL_ALIASES
ARCHIVED = "archived"  # a stage, not an alias: versions retired by a promotion, a rollback or a rejection
USER_VAR = "TITAN_RAY_USER"
ALIAS_STATE = "aliases.json"
HISTORY = "history.jsonl"
ALIAS_LOCK = ".aliases.lock"
ACTIONS = ("assign", "clear", "promote", "rollback", "reject")  # the ``action`` of a history event


class RegistryError(LookupError):
    """A model or version that is not in the registry, or a folder that is not a registry entry."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    kind: str
    path: Path  # the version's artefact folder
    meta: dict[str, Any] = field(compare=False, hash=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def default_root(configured: str | Path | None = None) -> Path:
    """The registry folder: ``configured`` (registry.path), else $TITAN_RAY_REGISTRY, else ./registry."""
    return Path(configured or os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def default_actor() -> str:
    """Who makes a registry change when nobody is named: $TITAN_RAY_USER, else the login name, else 'unknown'."""
    if os.environ.get(USER_VAR):
        return os.environ[USER_VAR]
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def parse_ref(ref: str) -> tuple[str, int | str | None]:
    """'NAME' -> (NAME, None); 'NAME@3' -> (NAME, 3); 'NAME@champion' -> (NAME, 'champion')."""
    if not isinstance(ref, str) or not re.match(REF_PATTERN, ref):
        raise RegistryError(f"bad model reference {ref!r}: write NAME (the latest version), NAME@VERSION "
                            f"(version 1, 2, ...) or NAME@ALIAS ({' or '.join(ALIASES)})")
    name, _, version = ref.partition("@")
    if not version:
        return name, None
    return name, version if version in ALIASES else int(version)


def fingerprint(bars: BarBatch) -> str:
    """A short hash of the bars a model was trained on (symbols, timestamps, OHLCV)."""
    h = hashlib.sha256()
    h.update("\x1f".join(bars.symbols).encode())
    for arr in (bars.timestamps, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ModelRegistry:
    def __init__(self, root: str | Path | None = None, *,
                 clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.root = default_root(root)
        self._clock = clock  # stamps alias events (``at``); tests pass a fixed one

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # --- writing ------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        kind: str,
        params: dict[str, Any],
        *,
        save: Callable[[Path], None],
        features: Sequence[str],
        training_window: dict[str, Any],
        metrics: dict[str, float],
        data_fingerprint: str,
        extra: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Store a new version of ``name``: ``save(folder)`` writes the artefacts, then the metadata."""
        if not is_model_name(name):
            raise ValueError(f"model name {name!r} must be 1-80 letters, digits, '_', '-' or '.' (not dots alone)")

        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            save(tmp)
            meta = {
                "name": name, "kind": kind, "params": params, "features": list(features),
                "training_window": training_window, "metrics": metrics, "data_fingerprint": data_fingerprint,
                "code_version": code_version(),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **({"extra": extra} if extra else {}),
            }
            for _attempt in range(100):
                version = self._next_version(name)
                meta["version"] = version
                (tmp / METADATA).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
                try:
                    os.rename(tmp, folder / _dirname(version))
                except OSError:
                    if (folder / _dirname(version)).exists():
                        continue  # another writer took this number: take the next one
                    raise
                return self.get(name, version)
            raise RegistryError(f"could not claim a version number for {name!r} after 100 tries")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def register_model(self, model: TradingModel, history: BarBatch, *, name: str | None = None,
                       extra: dict[str, Any] | None = None) -> ModelVersion:
        """Register a fitted ``Persistent`` model trained on ``history`` under ``name`` (default its own)."""
        if not isinstance(model, Persistent):
            raise TypeError(f"{type(model).__name__} has no save_artifacts; register it with register(...)")

        def save(folder: Path) -> None:
            model.save_artifacts(folder)
            write_profile(model, history, folder)  # the drift reference: the training window's features

        return self.register(
            name or model.name, model.kind, model.params.model_dump(mode="json"), save=save,
            features=model.features.names if model.features is not None else (),
            training_window=dict(model.training_window), metrics=dict(model.metrics),
            data_fingerprint=fingerprint(history), extra=extra,
        )

    def _next_version(self, name: str) -> int:
        return max((v.version for v in self.versions(name)), default=0) + 1

    # --- reading ------------------------------------------------------------------------------

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first ([] when there is none, or no model may be called so:
        ``..`` or a 5000-character name is never looked up as a path)."""
        folder = self.root / name
        if not is_model_name(name) or not folder.is_dir():
            return []
        out = []
        for sub in folder.iterdir():
            if sub.name.startswith("v") and sub.name[1:].isdigit() and (sub / METADATA).exists():
                out.append(self._read(name, sub))
        return sorted(out, key=lambda v: v.version)

    def get(self, name: str, version: int | str | None = None) -> ModelVersion:
        """A version of ``name``: the latest when ``version`` is None, the one an alias names when it is a str."""
        found = self.versions(name)
        if not found:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"no model named {name!r} in the registry {self.root} (registered: {known})")
        if version is None:
            return found[-1]
        if isinstance(version, str):
            if version not in ALIASES:
                raise RegistryError(f"{name!r} has no alias {version!r}: the aliases are {', '.join(ALIASES)}, "
                                    "or give a version number")
            number = self.aliases(name).get(version)
            if number is None:
                raise RegistryError(f"{name} has no {version} yet; set one: "
                                    f"titan-ray registry alias {name} {version} VERSION --why TEXT")
            version = number
        for v in found:
            if v.version == version:
                return v
        raise RegistryError(f"{name!r} has no version {version} in {self.root}; versions: "
                            f"{[v.version for v in found]}")

    def resolve(self, ref: str) -> ModelVersion:
        """'NAME' (latest), 'NAME@VERSION' or 'NAME@ALIAS' (champion, challenger)."""
        name, version = parse_ref(ref)
        return self.get(name, version)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list(self) -> list[ModelVersion]:
        """Every version of every model, by name then version."""
        return [v for n in self.names() for v in self.versions(n)]

    def load_model(self, ref: ModelVersion, *, name: str, symbols: Sequence[str], seed: int,
                   params: dict[str, Any] | None = None) -> TradingModel:
        """A ready-to-trade model from a registered version: built with its registered params (updated
        by ``params``), its artefacts loaded (a ``Persistent`` kind), so it trades without fitting."""
        if ref.kind not in MODEL_KINDS:
            raise RegistryError(f"{ref.ref} is of kind {ref.kind!r}, which this version of titan-ray does not know")
        merged = {**ref.meta.get("params", {}), **(params or {})}
        model = MODEL_KINDS[ref.kind](name, merged, tuple(symbols), seed=seed)
        if isinstance(model, Persistent):
            model.load_artifacts(ref.path)
        return model

    def _read(self, name: str, folder: Path) -> ModelVersion:
        try:
            meta = json.loads((folder / METADATA).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RegistryError(f"{folder / METADATA} cannot be read: {err}") from None
        return ModelVersion(name=name, version=int(folder.name[1:]), kind=meta.get("kind", "?"),
                            path=folder.resolve(), meta=meta)


    # --- aliases and stages -------------------------------------------------------------------

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` that are set, e.g. {'champion': 3, 'challenger': 4}."""
        state = self._state(name)
        return {a: state[a] for a in ALIASES if state.get(a) is not None}

    def archived(self, name: str) -> list[int]:
        """The versions of ``name`` retired by a promotion, a rollback or a rejection, by version number."""
        return list(self._state(name).get(ARCHIVED, []))

    def stage(self, name: str, version: int) -> str | None:
        """'champion', 'challenger', 'archived', or None for a version that has never been given a stage."""
        state = self._state(name)
        for alias in ALIASES:
            if state.get(alias) == version:
                return alias
        return ARCHIVED if version in state.get(ARCHIVED, []) else None

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every alias event of ``name``, oldest first ([] when there is none)."""
        return self._events(name)

    def set_alias(self, name: str, alias: str, version: int, *, who: str | None = None, why: str,
                  evidence: dict[str, Any] | None = None) -> dict[str, Any]:
        """Point ``alias`` at ``version`` (action ``assign``); the event records the version it pointed at."""
        alias = _check_alias(alias)
        version = _check_version(version, "version")
        with self._changing(name, why, evidence) as state:
            self.get(name, version)
            current = state.get(alias)
            if current == version:
                raise RegistryError(f"{name}@{version} is already the {alias}; nothing to change")
            other = "challenger" if alias == "champion" else "champion"
            if state.get(other) == version:
                if alias == "challenger":
                    raise RegistryError(f"{name}@{version} is the champion: a version cannot be champion and "
                                        "challenger at once; name another version")
                raise RegistryError(f"{name}@{version} is the challenger; promote it instead (it cannot be both): "
                                    f"titan-ray registry promote {name} --why TEXT")
            state[alias] = version
            return self._commit(name, state, action="assign", alias=alias, version=version, previous=current,
                                archived=None, who=who, why=why, evidence=evidence)

    def clear_alias(self, name: str, alias: str, *, who: str | None = None, why: str,
                    evidence: dict[str, Any] | None = None) -> dict[str, Any]:
        """Unset ``alias`` (action ``clear``); the version it pointed at keeps its folder and gets no stage."""
        alias = _check_alias(alias)
        with self._changing(name, why, evidence) as state:
            current = state.pop(alias, None)
            if current is None:
                raise RegistryError(f"{name} has no {alias} to clear")
            return self._commit(name, state, action="clear", alias=alias, version=None, previous=current,
                                archived=None, who=who, why=why, evidence=evidence)

    def promote(self, name: str, *, who: str | None = None, why: str, evidence: dict[str, Any] | None = None,
                version: int | None = None) -> dict[str, Any]:
        """Make the challenger (or ``version``) the champion; the champion it replaces is archived, and the
        challenger alias is cleared when the challenger is the version promoted."""
        if version is not None:
            version = _check_version(version, "version")
        with self._changing(name, why, evidence) as state:
            target = version if version is not None else state.get("challenger")
            if target is None:
                raise RegistryError(f"{name} has no challenger to promote; set one: titan-ray registry alias "
                                    f"{name} challenger VERSION --why TEXT, or name the version to promote: "
                                    "--version N")
            self.get(name, target)
            current = state.get("champion")
            if current == target:
                raise RegistryError(f"{name}@{target} is already the champion; nothing to promote")
            if state.get("challenger") == target:
                del state["challenger"]
            state["champion"] = target
            if current is not None:
                state[ARCHIVED] = [*state.get(ARCHIVED, []), current]
            return self._commit(name, state, action="promote", alias="champion", version=target, previous=current,
                                archived=current, who=who, why=why, evidence=evidence)

    def rollback(self, name: str, *, who: str | None = None, why: str, evidence: dict[str, Any] | None = None,
                 to: int | None = None) -> dict[str, Any]:
        """Make ``to`` the champion again, else the champion before the current one; the current one is archived.

        Without ``to`` the history decides: each assignment or promotion of a champion pushes it on a
        chain, each rollback pops back, so the first rollback returns to the ``previous`` of the event
        that made the current version champion, and a second one goes one further back.
        """
        if to is not None:
            to = _check_version(to, "to")
        with self._changing(name, why, evidence) as state:
            current = state.get("champion")
            if current is None:
                raise RegistryError(f"{name} has no champion to roll back; set one: "
                                    f"titan-ray registry alias {name} champion VERSION --why TEXT")
            target = to
            if target is None:
                chain = _champion_chain(self._events(name))
                if len(chain) < 2 or chain[-1] != current:
                    raise RegistryError(f"{name}@{current} has no earlier champion on record to roll back to; "
                                        f"name one: titan-ray registry rollback {name} --to VERSION --why TEXT")
                target = chain[-2]
            self.get(name, target)
            if target == current:
                raise RegistryError(f"{name}@{target} is already the champion; nothing to roll back")
            if state.get("challenger") == target:
                raise RegistryError(f"{name}@{target} is the challenger; promote it (titan-ray registry promote "
                                    f"{name}) or reject it first")
            state["champion"] = target
            state[ARCHIVED] = [*state.get(ARCHIVED, []), current]
            return self._commit(name, state, action="rollback", alias="champion", version=target, previous=current,
                                archived=current, who=who, why=why, evidence=evidence)

    def reject(self, name: str, *, who: str | None = None, why: str,
               evidence: dict[str, Any] | None = None) -> dict[str, Any]:
        """Archive the challenger and clear the alias."""
        with self._changing(name, why, evidence) as state:
            current = state.pop("challenger", None)
            if current is None:
                raise RegistryError(f"{name} has no challenger to reject; set one: "
                                    f"titan-ray registry alias {name} challenger VERSION --why TEXT")
            state[ARCHIVED] = [*state.get(ARCHIVED, []), current]
            return self._commit(name, state, action="reject", alias="challenger", version=None, previous=current,
                                archived=current, who=who, why=why, evidence=evidence)

    @contextmanager
    def _changing(self, name: str, why: str, evidence: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Check the inputs, then hold the model's lock and give the current state to change."""
        _check_why(why)
        _check_evidence(evidence)
        self.get(name)  # the model exists (and its folder, where the lock lives)
        fd = os.open(self.root / name / ALIAS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # flock locks an open file description, so threads of one process exclude each other too
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._state(name)
        finally:
            os.close(fd)  # releases the lock

    def _commit(self, name: str, state: dict[str, Any], *, action: str, alias: str | None, version: int | None,
                previous: int | None, archived: int | None, who: str | None, why: str,
                evidence: dict[str, Any] | None) -> dict[str, Any]:
        """Append the event to history.jsonl, then replace aliases.json; the caller holds the lock."""
        event = {"at": self._clock().astimezone(dt.UTC).isoformat(timespec="seconds"),
                 "who": who or default_actor(), "action": action, "alias": alias, "version": version,
                 "previous": previous, "archived": archived, "why": why.strip(), "evidence": evidence}
        line = json.dumps(event, default=_json_default)
        folder = self.root / name
        # The history first: a crash between the two writes leaves an event whose change did not land
        # (visible, repairable by redoing it), never a change that nobody recorded.
        with open(folder / HISTORY, "a+b") as handle:
            torn = False  # a last line without its newline (a crash mid-append) stays a line of its own
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                torn = handle.read(1) != b"\n"
            handle.write((("\n" if torn else "") + line + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        aliases = {a: state[a] for a in ALIASES if state.get(a) is not None}
        out = {**aliases, ARCHIVED: sorted(set(state.get(ARCHIVED, [])) - set(aliases.values()))}
        tmp = folder / f".{ALIAS_STATE}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "w") as handle:
                handle.write(json.dumps(out) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / ALIAS_STATE)
        finally:
            tmp.unlink(missing_ok=True)
        return json.loads(line)

    def _state(self, name: str) -> dict[str, Any]:
        path = self.root / name / ALIAS_STATE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return {ARCHIVED: []}
        except (OSError, json.JSONDecodeError) as err:
            raise RegistryError(f"{path} cannot be read: {err}; repair it from {HISTORY} next to it") from None
        ok = isinstance(raw, dict) and all(isinstance(raw.get(a), int | None) for a in ALIASES) \
            and isinstance(raw.get(ARCHIVED, []), list) and all(isinstance(v, int) for v in raw.get(ARCHIVED, []))
        if not ok:
            raise RegistryError(f"{path} must look like {{\"champion\": 3, \"challenger\": 4, \"archived\": [1, 2]}}; "
                                f"repair it from {HISTORY} next to it")
        return {**{a: raw[a] for a in ALIASES if raw.get(a) is not None}, ARCHIVED: sorted(raw.get(ARCHIVED, []))}

    def _events(self, name: str) -> list[dict[str, Any]]:
        path = self.root / name / HISTORY
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        out = []
        # a line without its newline is being appended right now (or was torn by a crash): not an event yet
        for number, line in enumerate(text.split("\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RegistryError(f"{path}, line {number}, is not a JSON event ({err}); repair or delete "
                                    "that line") from None
        return out

def _dirname(version: int) -> str:
    return f"v{version:04d}"


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def _check_why(why: str) -> None:
    if not isinstance(why, str) or not why.strip():
        raise ValueError("why: say why this change is made (e.g. --why 'beats the champion: p=0.01 over "
                         "5000 bars'); every alias change is recorded with its reason")


def _check_evidence(evidence: dict[str, Any] | None) -> None:
    if evidence is None:
        return
    if not isinstance(evidence, dict):
        raise TypeError(f"evidence: give a dict (e.g. {{'p_value': 0.01, 'n_bars': 5000}}), not "
                         f"{type(evidence).__name__}")
    try:
        json.dumps(evidence, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f"evidence: must be JSON-able (numbers, strings, lists, dicts): {err}") from None


def _check_alias(alias: str) -> str:
    if alias not in ALIASES:
        raise ValueError(f"alias {alias!r}: use one of {', '.join(ALIASES)} ({ARCHIVED} is a stage that "
                         "promote, rollback and reject set)")
    return alias


def _check_version(version: Any, field_name: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int | np.integer) or version < 1:
        raise ValueError(f"{field_name}: a version number (1, 2, ...), not {version!r}")
    return int(version)


def _champion_chain(events: Sequence[dict[str, Any]]) -> list[int]:
    """The champions on record, the current one last: an assignment or promotion pushes (and starts a new
    chain when there was no champion), a rollback pops back to its version, a clear empties the chain."""
    chain: list[int] = []
    for e in events:
        if e.get("alias") != "champion":
            continue
        version = e.get("version")
        if e.get("action") == "clear" or version is None:
            chain = []
        elif e.get("action") == "rollback":
            earlier = [i for i, v in enumerate(chain[:-1]) if v == version]
            chain = chain[: earlier[-1] + 1] if earlier else [*chain[:-1], version]
        elif e.get("previous") is None:
            chain = [version]
        else:
            chain.append(version)
    return chain

def registered_models(config: ArenaConfig, symbols: Sequence[str]) -> dict[str, TradingModel]:
    """The arena's models that come from the registry (ModelSpec ``artifact``), loaded and ready.

    Errors name the field: ``models[i].artifact`` for a missing model or version, a kind that
    differs from the registered one.
    """
    out: dict[str, TradingModel] = {}
    wanted = [(i, m) for i, m in enumerate(config.models) if m.artifact is not None]
    if not wanted:
        return out
    registry = ModelRegistry(config.registry.path)
    for i, spec in wanted:
        where = f"models[{i}].artifact ({spec.name})"
        try:
            version = registry.resolve(spec.artifact)
        except RegistryError as err:
            # an unset alias of a model that exists carries its own fix (set the alias); the rest this one
            name, _, suffix = spec.artifact.partition("@")
            aliased = suffix in ALIASES and bool(registry.versions(name))
            fix = "" if aliased else "; register one first (titan_ray.registry) or fix the name"
            raise ConfigError(f"{where}: {err}{fix}") from None
        if version.kind != spec.kind:
            raise ConfigError(f"{where}: {version.ref} is a {version.kind!r} model but models[{i}].kind is "
                              f"{spec.kind!r}; set kind: {version.kind}")
        try:
            out[spec.name] = registry.load_model(version, name=spec.name, symbols=symbols, seed=config.seed,
                                                 params=spec.params)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"{where}: {version.ref} cannot be loaded: {err}") from None
    return out
