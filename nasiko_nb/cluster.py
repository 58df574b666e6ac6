"""Connect to a cluster (kubeconfig, context, in-cluster) and make raw API calls.

Every failure to connect becomes a :class:`ClusterError` with one sentence a person at 3 a.m. can act
on. Reads go through :meth:`Cluster.get_json`, which skips the client's model deserialisation (slow
for thousands of objects) and counts the calls, so a run can prove its call count is constant.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

DEFAULT_TIMEOUT_S = 10.0
TIMEOUT_VARIABLE = "NASIKO_API_TIMEOUT_S"
UNREACHABLE, UNAUTHORIZED = "cluster/unreachable", "cluster/unauthorized"
READ_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
WRITE_RETRY_STATUSES = frozenset({429})
MAX_ATTEMPTS = 4          # the first try and three retries
BACKOFF_S = 0.25          # doubled per retry, with jitter ...
MAX_BACKOFF_S = 2.0       # ... and never longer than this, nor a Retry-After beyond it
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ClusterError(Exception):
    """A connection or API problem explained in one line (no traceback wall in notebooks).

    ``code`` is the cause code when the cluster itself is the problem (``cluster/unreachable``,
    ``cluster/unauthorized``); it is empty for a kubeconfig that cannot be used.
    """

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code

    def finding(self, context: str):
        """The run's finding for a cluster that cannot be used (only when ``code`` is set)."""
        from nasiko_nb.codes import make_finding

        return make_finding(self.code, f"cluster {context or 'current context'}", str(self),
                            context=context or "current context", error=str(self))

    def _render_traceback_(self):
        return [f"ClusterError: {self}"]


@dataclass
class ApiFailure:
    """An API error reduced to what a finding needs: status, reason and the server's message."""

    status: int
    reason: str
    message: str

    @classmethod
    def from_exception(cls, exc: ApiException) -> "ApiFailure":
        reason, message = exc.reason or "", ""
        try:
            body = json.loads(exc.body or "{}")
            reason, message = body.get("reason", reason), body.get("message", "")
        except (ValueError, TypeError):
            message = str(exc.body or "")[:200]
        return cls(status=exc.status or 0, reason=reason, message=message)


@dataclass
class Cluster:
    """An authenticated API client plus the context it came from and a count of the calls made."""

    api: client.ApiClient
    context: str
    server: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    calls: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def request_timeout(self) -> tuple[float, float]:
        """(connect, read) seconds: the client ignores a bare float, so a tuple it is."""
        return (self.timeout_s, self.timeout_s)

    def count_call(self) -> None:
        with self._lock:
            self.calls += 1

    def get_json(self, path: str, **query) -> dict:
        """GET an API path and return the parsed JSON body; raises ApiException on HTTP errors."""
        response = self._request("GET", path, query, header_params={"Accept": "application/json"})
        return json.loads(response.data)

    def get_text(self, path: str, **query) -> str:
        """GET a text endpoint such as pod logs."""
        return self._request("GET", path, query).data.decode("utf-8", errors="replace")

    def send_json(self, method: str, path: str, body=None, content_type: str = "application/json") -> dict:
        """A write (POST, PUT, PATCH, DELETE) with a JSON body; returns the parsed answer, raises ApiException."""
        response = self._request(method, path, {}, body=body,
                                 header_params={"Content-Type": content_type, "Accept": "application/json"})
        return json.loads(response.data or b"{}")

    def _request(self, method: str, path: str, query: dict, **kwargs):
        """One request, retried with bounded backoff where a retry cannot do harm.

        Reads are retried on 429, 5xx and a dropped connection; writes only on 429 (the server did not take the
        request: after a 5xx or a drop a write may have been applied, and the caller must look before trying
        again). A timeout is never retried: a slow API server would make every call of a run wait again.
        """
        params = [(k, v) for k, v in query.items() if v not in (None, "")]
        retry_statuses = READ_RETRY_STATUSES if method == "GET" else WRITE_RETRY_STATUSES
        attempt = 0
        while True:
            attempt += 1
            self.count_call()
            try:
                return self.api.call_api(path, method, query_params=params, auth_settings=["BearerToken"],
                                         _preload_content=False, _request_timeout=self.request_timeout,
                                         **kwargs)[0]
            except ApiException as exc:
                if exc.status not in retry_statuses or attempt == MAX_ATTEMPTS:
                    raise
                delay = retry_delay(attempt, (exc.headers or {}).get("Retry-After"))
            except urllib3.exceptions.HTTPError as exc:
                if method != "GET" or attempt == MAX_ATTEMPTS or _timed_out(exc) or _refused(exc):
                    raise ClusterError(describe_connection_error(self.server, exc), UNREACHABLE) from None
                delay = retry_delay(attempt)
            with self._lock:
                self.retries += 1
            time.sleep(delay)

    def server_version(self) -> str:
        return self.get_json("/version").get("gitVersion", "unknown")

    def check(self) -> str:
        """One ``/version`` call: the server's version, or a ClusterError saying why the cluster cannot be used."""
        try:
            return self.server_version()
        except ApiException as exc:
            failure = ApiFailure.from_exception(exc)
            code = UNAUTHORIZED if failure.status in (401, 403) else UNREACHABLE
            raise ClusterError(f"the API server at {self.server} refused the request: "
                               f"{failure.status} {failure.reason} {failure.message}".strip(), code) from None


def api_timeout() -> float:
    """Seconds to wait for the API server: ``$NASIKO_API_TIMEOUT_S`` (the CLI's ``--timeout`` sets it for the
    runbook kernels), else 10."""
    try:
        return float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


def retry_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds before the next attempt: the server's Retry-After when it gives one, else exponential with
    jitter; both capped, so a run's retries stay within seconds."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), MAX_BACKOFF_S)
    return min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S) * random.uniform(0.5, 1.0)


def _timed_out(exc: BaseException) -> bool:
    return "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower()


def _refused(exc: BaseException) -> bool:
    return "refused" in str(exc).lower()


def describe_connection_error(server: str, exc: BaseException) -> str:
    text = str(exc)
    if _timed_out(exc):
        return f"the API server at {server} did not answer in time (timed out)"
    if _refused(exc):
        return f"cannot reach the API server at {server}: connection refused"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return f"cannot resolve the API server's host in {server}"
    return f"cannot reach the API server at {server}: {type(exc).__name__}"


def connect(kubeconfig: str | os.PathLike | None = None, context: str | None = None,
            in_cluster: bool | None = None, timeout_s: float | None = None, check: bool = True) -> Cluster:
    """Build a Cluster from a kubeconfig (default $KUBECONFIG or ~/.kube/config) or in-cluster config.

    ``in_cluster=None`` picks in-cluster configuration when no kubeconfig is given and the pod's
    service-account token exists. ``check`` makes one ``/version`` call so a wrong server fails here.
    ``timeout_s`` defaults to :func:`api_timeout`.
    """
    configuration = client.Configuration()
    if in_cluster is None:
        in_cluster = not kubeconfig and not os.environ.get("KUBECONFIG") and IN_CLUSTER_TOKEN.exists()
    if in_cluster:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ClusterError(f"in-cluster configuration is not available: {exc}") from None
        context_name = "in-cluster"
    else:
        path, names, active = kubeconfig_contexts(kubeconfig)
        if context and context not in names:
            raise ClusterError(f"context {context!r} is not in {path}; known contexts: {', '.join(names) or 'none'}")
        context_name = context or active
        try:
            config.load_kube_config(config_file=str(path), context=context or None,
                                    client_configuration=configuration, persist_config=False)
        except (ConfigException, ValueError, KeyError, TypeError) as exc:
            raise ClusterError(f"kubeconfig {path} is not usable: {exc}") from None
    configuration.retries = 0
    cluster = Cluster(api=client.ApiClient(configuration), context=context_name,
                      server=configuration.host, timeout_s=timeout_s or api_timeout())
    if check:
        cluster.check()
    return cluster


def kubeconfig_contexts(kubeconfig=None) -> tuple[Path, list[str], str]:
    """The kubeconfig's path, its context names in file order and its current context."""
    path = _kubeconfig_path(kubeconfig)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=str(path))
    except ConfigException as exc:
        raise ClusterError(f"kubeconfig {path} is not usable: {exc}") from None
    except Exception as exc:  # YAML errors and friends: one line, not the parser's wall
        raise ClusterError(f"kubeconfig {path} is not valid YAML/kubeconfig: {type(exc).__name__}") from None
    return path, [c["name"] for c in contexts or []], (active or {}).get("name", "")


def _kubeconfig_path(kubeconfig) -> Path:
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
    else:
        env = os.environ.get("KUBECONFIG", "")
        path = Path(env.split(os.pathsep)[0]).expanduser() if env else Path.home() / ".kube" / "config"
    if not path.is_file():
        raise ClusterError(f"kubeconfig not found: {path}")
    return path
