"""MLflow experiment tracking over MLflow's REST API: Tune sweeps, PPO training, retraining jobs and arena
runs appear in the MLflow UI a team already uses, when ``tracking.mlflow_uri`` (or $MLFLOW_TRACKING_URI)
names an `mlflow server`.

The parts: ``tracking_uri`` resolves the setting (off when neither is set) and rejects what is not an
http(s) server; a ``Tracker`` holds the server's address and credentials; ``Tracker.run`` opens one MLflow
run and closes it with the outcome of the work; the ``TrackedRun`` it yields logs into that run.

What goes where (all relative to the tracking URI):

- experiment: ``POST api/2.0/mlflow/experiments/create``, or ``GET .../experiments/get-by-name`` when it
  exists already (another process may create it at the same moment);
- run: ``POST api/2.0/mlflow/runs/create`` (name, start time, tags incl. ``mlflow.source.name=titan-ray``),
  ``POST .../runs/update`` on exit (FINISHED, or FAILED when the work raised);
- params, metrics, tags: ``POST api/2.0/mlflow/runs/log-batch`` (nested params flattened with ``.``);
- artifacts: ``PUT api/2.0/mlflow-artifacts/artifacts/<path of the run's mlflow-artifacts:/ root>/<file>``,
  the artifact proxy `mlflow server` serves by default (``--serve-artifacts``).

Why no ``import mlflow``: the package is heavy (Flask, SQLAlchemy, alembic, ...) and pins pyarrow; the
REST API is small and stable, so the standard library (``urllib.request`` + ``json``) speaks it.

Failure policy: a server that cannot be reached or refuses when the run starts is a ``TrackingError``
before any work is done (a misconfigured URI shows at once). Once the run has started, tracking never
fails the work: a failed call logs one warning per run on the ``titan_ray.tracking`` logger (later ones
at DEBUG) and later calls are tried again.

Environment, as MLflow's own client reads it: $MLFLOW_TRACKING_URI (when the config sets no URI),
$MLFLOW_TRACKING_TOKEN (sent as ``Authorization: Bearer``), else $MLFLOW_TRACKING_USERNAME and
$MLFLOW_TRACKING_PASSWORD (basic auth), else a ``user:password@`` in the URI (basic auth). A password is
never printed: every message shows the URI with it masked.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import mimetypes
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from titan_ray.config import ConfigError

ENV_VAR = "MLFLOW_TRACKING_URI"
TOKEN_ENV_VAR = "MLFLOW_TRACKING_TOKEN"
USERNAME_ENV_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV_VAR = "MLFLOW_TRACKING_PASSWORD"
SOURCE_NAME = "titan-ray"

# MLflow's own limits (mlflow/utils/validation.py): a batch over them is refused whole.
MAX_PARAM_CHARS = 6000
MAX_TAG_CHARS = 8000
PARAMS_PER_BATCH = 100
TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000

_API = "api/2.0/mlflow"
_ARTIFACTS_API = "api/2.0/mlflow-artifacts/artifacts"
_PROXY_SCHEME = "mlflow-artifacts:"
_PASSWORD = re.compile(r"^([^:/?#]+://[^/?#@:]*:)[^@]*@")
_FIX = "is `mlflow server` running there? Set tracking.mlflow_uri (or $MLFLOW_TRACKING_URI) to its http URL"

logger = logging.getLogger("titan_ray.tracking")


class TrackingError(RuntimeError):
    """The tracking server cannot be reached or refused a call; the message names the URI and the fix."""


class _Refused(TrackingError):
    """The server answered with an HTTP error; ``error_code`` is MLflow's (e.g. RESOURCE_ALREADY_EXISTS)."""

    def __init__(self, message: str, status: int, error_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


def tracking_uri(configured: str | None) -> str | None:
    """``configured`` (a config's ``tracking.mlflow_uri``), else $MLFLOW_TRACKING_URI, else None (tracking
    off). Only http:// and https:// URIs are supported."""
    source = "tracking.mlflow_uri"
    uri = configured
    if not uri:
        source, uri = f"${ENV_VAR}", os.environ.get(ENV_VAR)
    if not uri:
        return None
    _parse(uri, source)
    return uri


class Tracker:
    """One MLflow tracking server: its address, credentials and timeout."""

    def __init__(self, uri: str, *, timeout_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        parts = _parse(uri, "the tracking URI")
        host = str(parts.hostname)
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        # The base URL without user:password@: requests carry credentials in a header, never in the URL.
        self.base_url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.display_uri = _mask(uri).rstrip("/")
        self.timeout_s = timeout_s
        self._clock = clock
        self._headers = {"User-Agent": SOURCE_NAME, **_auth_header(parts)}

    @classmethod
    def from_config(cls, configured: str | None) -> Tracker | None:
        """The tracker for ``configured`` (or $MLFLOW_TRACKING_URI); None when tracking is off."""
        uri = tracking_uri(configured)
        return cls(uri) if uri is not None else None

    @contextmanager
    def run(self, experiment: str, run_name: str, *, tags: dict[str, str] | None = None
            ) -> Iterator[TrackedRun]:
        """Opens an MLflow run in ``experiment`` (created when missing) and yields it; on exit the run is
        FINISHED, or FAILED when the body raised (the exception goes on). Raises TrackingError, before the
        body runs, when the server cannot be reached or refuses."""
        tracked = self._start(experiment, run_name, tags or {})
        try:
            yield tracked
        except BaseException:
            tracked._finish("FAILED")
            raise
        tracked._finish("FINISHED")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _start(self, experiment: str, run_name: str, tags: dict[str, str]) -> TrackedRun:
        all_tags = {**tags, "mlflow.runName": run_name, "mlflow.source.name": SOURCE_NAME}
        try:
            found = self._experiment(experiment)
            experiment_id = str(found["experiment_id"])
            if found.get("lifecycle_stage") != "deleted":
                info = self._call("POST", "runs/create", {
                    "experiment_id": experiment_id, "run_name": run_name, "start_time": self._now_ms(),
                    "tags": [{"key": k, "value": _clip(str(v), MAX_TAG_CHARS)} for k, v in all_tags.items()],
                })["run"]["info"]
                return TrackedRun(self, str(info["run_id"]), experiment_id, str(info.get("artifact_uri", "")))
        except (KeyError, TypeError) as exc:
            raise TrackingError(f"{self.display_uri} answered without the experiment or run ({exc!r}): "
                                "is it an `mlflow server`?") from None
        except TrackingError as exc:
            raise TrackingError(f"cannot start an MLflow run: {exc}; {_FIX}") from None
        raise TrackingError(
            f"MLflow experiment {experiment!r} (id {experiment_id}) at {self.display_uri} is deleted: "
            f"restore it in the MLflow UI (or `mlflow experiments restore --experiment-id {experiment_id}`) "
            "or use another experiment name"
        )

    def _experiment(self, name: str) -> dict[str, Any]:
        """The experiment ``name`` as the server describes it (its id, lifecycle stage), created when missing."""
        try:
            return {"experiment_id": self._call("POST", "experiments/create", {"name": name})["experiment_id"]}
        except _Refused as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # It exists (or another process created it meanwhile): look it up by name.
        return self._call("GET", "experiments/get-by-name", query={"experiment_name": name})["experiment"]

    def _call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None, *,
             query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One JSON call to ``api/2.0/mlflow/<endpoint>``; its JSON answer, or TrackingError."""
        data = json.dumps(body).encode() if body is not None else None
        raw = self._send(method, f"{_API}/{endpoint}", data, "application/json", query=query)
        try:
            return json.loads(raw or b"{}")
        except ValueError as exc:
            raise TrackingError(
                f"{self.display_uri} answered {method} {endpoint} with something that is not JSON "
                f"({raw[:80]!r}): is it an `mlflow server`?"
            ) from exc

    def _send(self, method: str, path: str, data: Any, content_type: str, *,
             query: Mapping[str, str] | None = None, length: int | None = None) -> bytes:
        """One HTTP request to ``<uri>/<path>``; the answer's bytes, or TrackingError naming what failed."""
        url = f"{self.base_url}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {**self._headers, "Content-Type": content_type}
        if length is not None:
            headers["Content-Length"] = str(length)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        what = f"{method} {self.display_uri}/{path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            status, code, message = exc.code, "", ""
            try:
                answer = json.loads(exc.read() or b"{}")
                code, message = str(answer.get("error_code", "")), str(answer.get("message", ""))
            except (ValueError, AttributeError, OSError):
                pass
            hint = (f" (set ${TOKEN_ENV_VAR}, or ${USERNAME_ENV_VAR} and ${PASSWORD_ENV_VAR})"
                    if status in (401, 403) else "")
            detail = f"{code}: {_clip(message, 300)}" if code else exc.reason
            raise _Refused(f"{what} answered HTTP {status} {detail}{hint}", status, code) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise TrackingError(f"{what} failed: {reason!r}") from None


class TrackedRun:
    """One open MLflow run. Its log calls never raise for the server's sake: a failure is a warning."""

    def __init__(self, tracker: Tracker, run_id: str, experiment_id: str, artifact_uri: str) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.artifact_uri = artifact_uri
        # What users click; the URI without the password (the browser asks for credentials itself).
        self.url = f"{tracker.base_url}/#/experiments/{experiment_id}/runs/{run_id}"
        self._tracker = tracker
        self._params: dict[str, str] = {}  # logged already: MLflow refuses to change a param
        self._warned = False
        self._warned_artifacts = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested mappings flattened with '.' ('model.params.horizon'); each value str()-ed (JSON for lists
        and dicts), clipped to 6000 characters. Params logged before with the same value are skipped; one
        logged before with another value is not sent (MLflow refuses changing a param) but warned about."""
        new: dict[str, str] = {}
        for key, value in _flatten(params, ""):
            logged = self._params.get(key)
            if logged is None:
                new[key] = value
            elif logged != value:
                logger.warning("MLflow run %s: param %r was logged as %r; MLflow does not allow changing it, "
                               "so %r is not logged", self.run_id, key, _clip(logged, 80), _clip(value, 80))
        items = list(new.items())
        for start in range(0, len(items), PARAMS_PER_BATCH):
            batch = items[start:start + PARAMS_PER_BATCH]
            if not self._log_batch(params=[{"key": k, "value": v} for k, v in batch]):
                return
            self._params.update(batch)

    def log_metrics(self, metrics: Mapping[str, float | int | None], *, step: int | None = None) -> None:
        """Finite numbers at ``step`` (0 when None); None, NaN, inf and non-numbers are skipped."""
        timestamp = self._tracker._now_ms()
        entries = []
        for key, value in metrics.items():
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                entries.append({"key": str(key), "value": number, "timestamp": timestamp, "step": step or 0})
        for start in range(0, len(entries), METRICS_PER_BATCH):
            if not self._log_batch(metrics=entries[start:start + METRICS_PER_BATCH]):
                return

    def set_tags(self, tags: Mapping[str, str]) -> None:
        entries = [{"key": str(k), "value": _clip(str(v), MAX_TAG_CHARS)} for k, v in tags.items()]
        for start in range(0, len(entries), TAGS_PER_BATCH):
            if not self._log_batch(tags=entries[start:start + TAGS_PER_BATCH]):
                return

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Uploads a file, or a folder with everything under it, to ``<artifact_path>/<its name>/...``
        (``<its name>/...`` at the run's root when ``artifact_path`` is None)."""
        base = self._proxy_path()
        if base is None:
            return
        path = Path(path).resolve()  # its own name even when given as `.`
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        if not files and not path.exists():
            logger.warning("MLflow run %s: artifact %s does not exist; nothing uploaded", self.run_id, path)
            return
        prefix = f"{artifact_path.strip('/')}/" if artifact_path and artifact_path.strip("/") else ""
        for file in files:
            name = prefix + file.relative_to(path.parent).as_posix()
            target = f"{_ARTIFACTS_API}/{base}/{urllib.parse.quote(name)}"
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            try:
                with file.open("rb") as body:
                    self._tracker._send("PUT", target, body, content_type, length=file.stat().st_size)
            except TrackingError as exc:
                self._failed(exc)
                return
            except OSError as exc:
                logger.warning("MLflow run %s: cannot read artifact %s (%s); not uploaded", self.run_id, file, exc)

    def _proxy_path(self) -> str | None:
        """The run's artifact root under the server's artifact proxy; None (warned once) when its artifact
        store is not proxied (a plain file/s3 root that this client does not write to)."""
        if not self.artifact_uri:  # runs/create answered without it: ask runs/get
            try:
                info = self._tracker._call("GET", "runs/get", query={"run_id": self.run_id})["run"]["info"]
                self.artifact_uri = str(info.get("artifact_uri", ""))
            except (TrackingError, KeyError, TypeError) as exc:
                self._failed(exc if isinstance(exc, TrackingError) else TrackingError(
                    f"GET {self._tracker.display_uri}/{_API}/runs/get answered without the run ({exc!r})"))
                return None
        if self.artifact_uri.startswith(_PROXY_SCHEME):
            rest = self.artifact_uri[len(_PROXY_SCHEME):]
            if rest.startswith("//"):  # mlflow-artifacts://host:port/path: the path is what counts here
                rest = rest[2:].partition("/")[2]
            return urllib.parse.quote(rest.strip("/"))
        if not self._warned_artifacts:
            self._warned_artifacts = True
            logger.warning(
                "MLflow run %s at %s: its artifact root %r is not the server's artifact proxy "
                "(mlflow-artifacts:/), so artifacts are not uploaded; start `mlflow server` with "
                "--serve-artifacts (the default) and no --default-artifact-root to get them",
                self.run_id, self._tracker.display_uri, self.artifact_uri,
            )
        return None

    def _log_batch(self, **entities: list[dict[str, Any]]) -> bool:
        try:
            self._tracker._call("POST", "runs/log-batch", {"run_id": self.run_id, **entities})
        except TrackingError as exc:
            self._failed(exc)
            return False
        return True

    def _finish(self, status: str) -> None:
        try:
            self._tracker._call("POST", "runs/update",
                               {"run_id": self.run_id, "status": status, "end_time": self._tracker._now_ms()})
        except TrackingError as exc:
            self._failed(exc)

    def _failed(self, exc: TrackingError) -> None:
        if self._warned:
            logger.debug("MLflow run %s: %s", self.run_id, exc)
            return
        self._warned = True
        # Every TrackingError names the (masked) URI and the call that failed.
        logger.warning("MLflow tracking failed for run %s: %s; the work goes on without it (later calls are "
                       "tried again, their failures logged at DEBUG)", self.run_id, exc)


def _flatten(params: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, (Mapping, list, tuple)):
            yield name, _clip(json.dumps(value, default=str), MAX_PARAM_CHARS)
        else:
            yield name, _clip(str(value), MAX_PARAM_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def _mask(uri: str) -> str:
    """``uri`` with the password of a ``user:password@`` replaced by ``***`` (a regex, not a URL parser:
    it masks even in a URI too malformed to parse)."""
    return _PASSWORD.sub(r"\1***@", uri)


def _parse(uri: str, source: str) -> urllib.parse.SplitResult:
    """``uri`` split; TrackingError unless it is the http(s) URL of a server."""
    try:
        parts = urllib.parse.urlsplit(uri)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a port that is no number, a broken [IPv6] host
        ok = False
    if not ok:
        raise TrackingError(
            f"{source}={_mask(uri)!r} is not supported: TitanRay logs to an MLflow tracking server over "
            "HTTP only (not file:, sqlite:, databricks or other stores). Run `mlflow server` (e.g. "
            "`mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000`) and give its http URL, "
            "e.g. http://127.0.0.1:5000"
        )
    return parts


def _auth_header(parts: urllib.parse.SplitResult) -> dict[str, str]:
    token = os.environ.get(TOKEN_ENV_VAR)
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get(USERNAME_ENV_VAR), os.environ.get(PASSWORD_ENV_VAR)
    if not (user and password) and parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
    if user and password is not None:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def checked_uri(configured: str | None, field: str = "tracking.mlflow_uri") -> str | None:
    """``tracking_uri`` for a config's setting, before the work starts: a bad one is a ``ConfigError``
    naming ``field``."""
    try:
        return tracking_uri(configured)
    except TrackingError as err:
        raise ConfigError(f"{field}: {err}") from None


def log_run(configured: str | None, experiment: str, run_name: str, *, params: Mapping[str, Any],
            metrics: Mapping[str, float | int | None], artifacts: Iterable[Path] = (),
            tags: dict[str, str] | None = None) -> str | None:
    """One finished piece of work as one MLflow run (an arena run, a sweep, a PPO training): its
    params, metrics and artefact files (those that exist). None when tracking is off, else the run's URL.

    The work is done when this is called: a server that cannot be reached is a warning, not an error
    (``tracking_uri`` checks the setting itself before the work starts)."""
    tracker = Tracker.from_config(configured)
    if tracker is None:
        return None
    try:
        with tracker.run(experiment, run_name, tags=tags) as run:
            run.log_params(params)
            run.log_metrics(metrics)
            for path in artifacts:
                if Path(path).exists():
                    run.log_artifact(Path(path))
            return run.url
    except TrackingError as err:
        logger.warning("the run was not logged to MLflow: %s", err)
        return None
