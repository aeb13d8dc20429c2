"""The driver's side of the watchdog: heartbeats in, verdicts carried out.

``arena/cluster.py`` creates the ``WatchdogActor`` with the actors it watches and hands all of them
to a ``HeartbeatMonitor``: a background thread that asks every model actor (and the ledger) for a
heartbeat every ``watchdog.interval_s``, never more than one outstanding per actor, and forwards
each to the watchdog with the actor's incarnation (a restart shows as a new one; restarts closer
together than the interval count as one). The watchdog decides; this loop acts on its verdicts:

- STALLED (no heartbeat for ``stall_after_s``; a model actor answers heartbeats on a thread of its
  own, so this is a process that no longer answers, not one busy deciding or training, whose
  lateness ``replay.decision_timeout_s`` handles): the actor is killed so that Ray restarts it, and
  the restarted model rebuilds its state from the market's history;
- CRASH_LOOP (more than ``max_restarts`` restarts in ``window_s``): the model is taken out of
  the arena: it gets no more chunks and its kill switch flattens it.

The ledger is watched and reported on, never taken out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray

log = logging.getLogger("titan_ray.watchdog")


class HeartbeatMonitor:
    def __init__(self, watchdog: Any, models: dict[str, Any], ledger: Any, *, interval_s: float) -> None:
        self.watchdog = watchdog  # a WatchdogActor handle
        self._targets = {**models, "ledger": ledger}
        self._models = set(models)
        self._ledger = ledger
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="titan-ray-watchdog", daemon=True)
        self._outstanding: dict[str, Any] = {}
        self._incarnations: dict[str, dict[str, int]] = {}
        self.removed: set[str] = set()  # read by the replay loop: these models get no more chunks

    def start(self) -> None:
        # A first heartbeat from everyone before the replay: the watchdog only watches names it has
        # seen (a model that hangs on its first chunk must be flagged too), and a restart is a
        # change from this first incarnation, however early it comes.
        first = {name: actor.heartbeat.remote() for name, actor in self._targets.items()}
        for name, ref in first.items():
            self._record(name, ray.get(ref, timeout=60))
        self._thread.start()

    def stop(self) -> list[dict[str, Any]]:
        """Stop watching; the alerts raised during the run, as JSON-safe dicts."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            # One last round, so a restart late in the run is on the record too.
            self._outstanding.clear()
            for name, actor in self._targets.items():
                if name not in self.removed:
                    self._record(name, ray.get(actor.heartbeat.remote(), timeout=10))
            return list(ray.get(self.watchdog.alerts.remote(), timeout=10))
        except Exception:  # noqa: BLE001 - the run is ending; losing the alert history must not hide its results
            return []

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except Exception as err:  # noqa: BLE001 - the watchdog must never bring the arena down
                log.warning("watchdog tick failed: %s", err)

    def _record(self, name: str, beat: dict[str, Any]) -> None:
        seen = self._incarnations.setdefault(name, {})
        incarnation = seen.setdefault(beat["incarnation"], len(seen))
        ray.get(self.watchdog.beat.remote(name, incarnation))

    def _tick(self) -> None:
        for name, actor in self._targets.items():
            if name in self.removed:
                continue
            ref = self._outstanding.get(name)
            if ref is None:
                self._outstanding[name] = actor.heartbeat.remote()
                continue
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            del self._outstanding[name]
            try:
                beat = ray.get(ref)
            except Exception:  # noqa: BLE001, S112 - any failure means the same: no beat
                continue  # it died; Ray restarts it and its next heartbeat shows a new incarnation
            self._record(name, beat)
        for alert in ray.get(self.watchdog.check.remote()):  # JSON-safe dicts
            name = alert["actor"]
            if alert["kind"] == "STALLED" and name in self._models:
                log.warning("model %s stalled; restarting it", name)
                ray.kill(self._targets[name], no_restart=False)
                self._outstanding.pop(name, None)
        removed = set(ray.get(self.watchdog.removed.remote())) & self._models
        for name in sorted(removed - self.removed):
            log.warning("model %s is crash-looping; taking it out of the arena", name)
            self._ledger.kill_switch.remote(name)
        self.removed |= removed
