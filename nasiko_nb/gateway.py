"""Kong, as the agent chat path sees it: the admin API's services, routes and plugins, and the proxy's answer.

The admin API pages its lists (``size``/``offset``, following ``next``), so reading it costs one request
per 1,000 objects at most, never one per agent. Where it lives: ``kong_admin_url`` (a parameter), else
``NASIKO_KONG_ADMIN_URL``, else the in-cluster address ``http://kong-gateway.nasiko:8001`` (from a laptop:
``kubectl port-forward -n nasiko svc/kong-gateway 8001:8001``). The gateway's proxy is probed the way the
frontend calls it: ``gateway_url`` / ``NASIKO_GATEWAY_URL``, else the LoadBalancer address of the
``kong-gateway`` Service.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

import pandas as pd
import requests
from kubernetes.client.rest import ApiException

from nasiko_nb.snapshot import Snapshot

IN_CLUSTER_ADMIN = "http://kong-gateway.nasiko:8001"
PAGE_SIZE = 1000
TIMEOUT_S = 5.0
_DISCOVERED = re.compile(r"Discovered agent service: (?P<service>\S+) at (?P<address>\S+) \(route: (?P<route>[^)]*)\)")
_SKIPPED = re.compile(r"Skipping service (?P<service>\S+): name contains '(?P<word>[^']+)'")


class GatewayError(Exception):
    """The admin API could not be read; one sentence, for a kong-unreachable finding."""

    def __init__(self, url: str, detail: str):
        super().__init__(f"{url}: {detail}")
        self.url, self.detail = url, detail

    def _render_traceback_(self):
        return [f"GatewayError: {self}"]


@dataclass
class KongState:
    """What the admin API holds (plain dicts as Kong returns them)."""

    services: list[dict] = field(default_factory=list)
    routes: list[dict] = field(default_factory=list)
    plugins: list[dict] = field(default_factory=list)

    def as_params(self) -> dict:
        return {"services": self.services, "routes": self.routes, "plugins": self.plugins}


def admin_url(parameter: str = "") -> str:
    return (parameter or os.environ.get("NASIKO_KONG_ADMIN_URL") or IN_CLUSTER_ADMIN).rstrip("/")


def gateway_url(snap: Snapshot, parameter: str = "", namespace: str = "nasiko") -> str:
    """Where the frontend sends chat requests: the parameter, the environment, or the Service's LoadBalancer."""
    if parameter or os.environ.get("NASIKO_GATEWAY_URL"):
        return (parameter or os.environ["NASIKO_GATEWAY_URL"]).rstrip("/")
    service = snap.get("Service", namespace, "kong-gateway") or {}
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}]
    host = ingress[0].get("ip") or ingress[0].get("hostname")
    return f"http://{host}" if host else f"http://kong-gateway.{namespace}"


def _get(session: requests.Session, url: str) -> dict:
    try:
        response = session.get(url, timeout=TIMEOUT_S)
    except requests.ConnectionError as exc:
        raise GatewayError(url, "connection refused or host not found" if "refused" in str(exc).lower()
                           or "resolve" in str(exc).lower() else f"no connection ({type(exc).__name__})") from None
    except requests.Timeout:
        raise GatewayError(url, f"no answer within {TIMEOUT_S:g} s") from None
    if response.status_code != 200:
        raise GatewayError(url, f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        raise GatewayError(url, "the answer is not JSON (is this Kong's admin port, 8001?)") from None


def _all_pages(session: requests.Session, base: str, collection: str) -> list[dict]:
    items, url = [], f"{base}/{collection}?size={PAGE_SIZE}"
    while url:
        body = _get(session, url)
        items += body.get("data") or []
        url = urljoin(base + "/", body["next"].lstrip("/")) if body.get("next") else None
    return items


def read_kong(url: str) -> KongState:
    """Every service, route and plugin (a few requests whatever the number of agents)."""
    with requests.Session() as session:
        session.trust_env = False    # loopback and in-cluster addresses: no proxy from the environment
        return KongState(*(_all_pages(session, url, name) for name in ("services", "routes", "plugins")))


def read_registry_log(cluster, snap: Snapshot, namespace: str = "nasiko", tail_lines: int = 200) -> str:
    """The newest k8s-service-registry pod's log (one request), kept in the snapshot for the detector."""
    pods = sorted((p for p in snap.pods_in(namespace) if ((p.get("metadata") or {}).get("labels") or {}).get("app")
                   == "k8s-service-registry"), key=lambda p: p["metadata"].get("creationTimestamp") or "")
    if not pods:
        return ""
    pod = pods[-1]
    container = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "")
    try:
        text = cluster.get_text(f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/log",
                                container=container, tailLines=tail_lines)
    except ApiException as exc:
        return f"(log of {pod['metadata']['name']} not readable: {exc.status} {exc.reason})"
    snap.logs[(namespace, pod["metadata"]["name"], container, False)] = text
    return text


def read_kong_or_finding(url: str) -> tuple[KongState, list]:
    """Kong's state, or an empty one and a routing/kong-unreachable finding saying why."""
    from nasiko_nb.codes import make_finding

    try:
        return read_kong(url), []
    except GatewayError as error:
        return KongState(), [make_finding("routing/kong-unreachable", f"Kong admin {url}", str(error), url=url,
                                          detail=error.detail)]


def routes_frame(kong: KongState) -> pd.DataFrame:
    """Each route with the path it matches and the upstream it sends to."""
    services = {s.get("id"): s for s in kong.services}
    rows = []
    for route in kong.routes:
        service = services.get((route.get("service") or {}).get("id"), {})
        rows.append({"route": route.get("name") or route.get("id"), "paths": ", ".join(route.get("paths") or []),
                     "strip_path": route.get("strip_path"), "service": service.get("name", "(none)"),
                     "upstream": f"{service.get('protocol', 'http')}://{service.get('host', '?')}:{service.get('port', '?')}"
                                 f"{service.get('path') or ''}"})
    return pd.DataFrame(rows, columns=["route", "paths", "strip_path", "service", "upstream"]).sort_values(
        "paths", ignore_index=True)


def registry_log_frame(text: str) -> pd.DataFrame:
    """The service registry's discovery and skip lines: which Service it routed at which path."""
    rows = []
    for line in (text or "").splitlines():
        if found := _DISCOVERED.search(line):
            rows.append({"service": found["service"], "route": found["route"], "address": found["address"],
                         "line": line.strip()})
        elif found := _SKIPPED.search(line):
            rows.append({"service": found["service"], "route": f"(skipped: contains {found['word']!r})",
                         "address": "", "line": line.strip()})
    return pd.DataFrame(rows, columns=["service", "route", "address", "line"])


@dataclass(frozen=True)
class Probe:
    url: str
    status: int | None
    body: str
    via_kong: bool

    def summary(self) -> str:
        if self.status is None:
            return f"GET {self.url}: no answer ({self.body})"
        return f"GET {self.url}: HTTP {self.status}{' from Kong' if self.via_kong else ''}: {self.body}"


def probe(base: str, path: str) -> Probe:
    """One GET through the gateway, as the frontend would send it; never raises."""
    url = f"{base.rstrip('/')}{path}"
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(url, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        return Probe(url, None, type(exc).__name__, False)
    via = "kong" in (response.headers.get("Via", "") + response.headers.get("Server", "")).lower() or any(
        h.lower().startswith("x-kong") for h in response.headers)
    return Probe(url, response.status_code, " ".join(response.text.split())[:200], via)
