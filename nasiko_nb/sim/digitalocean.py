"""A simulated DigitalOcean: the API, its registry token service and registry.digitalocean.com.

DigitalOcean ships no server one could run locally, yet the registry runbooks must be exercised end to end:
an API token that reads the account, docker-credentials that are read-only or expire, a registry that
grants pull but refuses push. This fake answers in the shapes of DigitalOcean's OpenAPI contract (a copy is
in ``data/digitalocean-openapi.json``; request bodies are checked against its schemas), over HTTPS on
127.0.0.1, with all three services sharing one :class:`DOWorld`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import ssl
import sys
import tempfile
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import jwt
from cryptography import x509

from nasiko_nb.sim.registry_tokens import TokenIssuer, parse_scope
from nasiko_nb.sim.tls import Certificate, make_certificate

REGISTRY_HOST = "registry.digitalocean.com"
SPEC_PATH = Path(__file__).parent / "data" / "digitalocean-openapi.json"
TOKEN_ISSUER = "api.digitalocean.com"
MAX_REGISTRIES = {"starter": 1, "basic": 1, "professional": 10}
REGISTRY_TOKEN_TTL_S = 300
RATE_LIMIT_PER_HOUR = 5000
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_TIERS = {
    "starter": {"name": "Starter", "slug": "starter", "included_repositories": 1, "included_storage_bytes": 524288000,
                "allow_storage_overage": False, "included_bandwidth_bytes": 524288000, "monthly_price_in_cents": 0,
                "storage_overage_price_in_cents": 0},
    "basic": {"name": "Basic", "slug": "basic", "included_repositories": 5, "included_storage_bytes": 5368709120,
              "allow_storage_overage": True, "included_bandwidth_bytes": 5368709120, "monthly_price_in_cents": 500,
              "storage_overage_price_in_cents": 2},
    "professional": {"name": "Professional", "slug": "professional", "included_repositories": 0,
                     "included_storage_bytes": 107374182400, "allow_storage_overage": True,
                     "included_bandwidth_bytes": 107374182400, "monthly_price_in_cents": 2000,
                     "storage_overage_price_in_cents": 2},
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DOError(Exception):
    """A refusal of the simulated API, rendered as DigitalOcean's error body ``{"id", "message", "request_id"}``."""

    def __init__(self, status: int, error_id: str, message: str):
        super().__init__(message)
        self.status, self.error_id, self.message = status, error_id, message


@dataclass
class DOToken:
    value: str = field(repr=False)
    account: str
    read_write: bool
    expires_at: datetime | None
    revoked: bool = False
    kind: str = "api"          # "api" (DIGITALOCEAN_TOKEN) or "registry" (issued by docker-credentials)

    def usable(self, now: datetime | None = None) -> bool:
        return not self.revoked and (self.expires_at is None or (now or _now()) < self.expires_at)


@dataclass
class DOManifest:
    digest: str
    size_bytes: int
    updated: datetime
    tags: list[str]
    body: bytes = field(default=b"", repr=False)     # the image manifest the registry endpoint serves


@dataclass
class DORegistry:
    name: str
    region: str
    created: datetime
    repositories: dict[str, list[DOManifest]] = field(default_factory=dict)

    @property
    def storage_bytes(self) -> int:
        return sum(m.size_bytes for manifests in self.repositories.values() for m in manifests)


@dataclass
class DOAccount:
    email: str
    uuid: str
    registries: list[DORegistry] = field(default_factory=list)
    tier: str = "basic"        # only "professional" may hold several registries (through /v2/registries)
    created: datetime = field(default_factory=_now)

    @property
    def registry(self) -> DORegistry | None:
        """The account's registry as ``/v2/registry`` sees it (the first one when there are several)."""
        return self.registries[0] if self.registries else None


@dataclass
class DONode:
    """One droplet of a node pool; its name is the Kubernetes Node's name."""
    name: str
    created: datetime


@dataclass
class DONodePool:
    id: str
    name: str
    size: str
    nodes: list[DONode] = field(default_factory=list)
    auto_scale: bool = False
    min_nodes: int = 0
    max_nodes: int = 0
    nodes_created: int = 0     # ever, so a new droplet never takes the name of one removed earlier

    @property
    def count(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class NodePoolChange:
    """The droplets a resize added to or removed from a pool, as the cluster behind it must see them."""
    cluster_id: str
    pool_id: str
    pool_name: str
    size: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


NodePoolListener = Callable[[NodePoolChange], None]
_NODE_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def pool_node_name(pool_name: str, seed: str) -> str:
    """A DOKS node name, `<pool>-<5 characters>`, stable per seed."""
    digest = hashlib.sha256(seed.encode()).digest()
    return f"{pool_name}-" + "".join(_NODE_NAME_ALPHABET[b % len(_NODE_NAME_ALPHABET)] for b in digest[:5])


@dataclass
class DOCluster:
    id: str
    account: str
    name: str
    region: str
    version: str
    node_pools: list[DONodePool]
    created: datetime
    registries: list[str] = field(default_factory=list)   # registries integrated with the cluster


class DOWorld:
    """Accounts, tokens, registries and clusters, shared thread-safely by the API, token service and registry."""

    def __init__(self):
        self.accounts: dict[str, DOAccount] = {}
        self.tokens: dict[str, DOToken] = {}
        self.clusters: dict[str, DOCluster] = {}
        self.uploads: dict[str, str] = {}          # pending blob upload id -> repository
        self.lock = threading.RLock()
        self._faults: list[int] = []
        self.node_pool_listener: NodePoolListener | None = None   # the cluster that follows pool resizes
        self._pool_changes: list[NodePoolChange] = []
        self._delivery_lock = threading.Lock()

    # -- accounts and tokens -------------------------------------------------------------------------
    def add_account(self, email: str, tier: str = "basic") -> DOAccount:
        with self.lock:
            account = DOAccount(email=email, uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"do-account:{email}")), tier=tier)
            self.accounts[email] = account
            return account

    def _account(self, email: str) -> DOAccount:
        try:
            return self.accounts[email]
        except KeyError:
            raise DOError(404, "not_found", "The resource you were accessing could not be found.") from None

    def api_token(self, email: str, read_write: bool = True) -> str:
        """A new personal access token (``dop_v1_...``) of the account: what DIGITALOCEAN_TOKEN holds."""
        return self._add_token(email, "dop_v1_" + secrets.token_hex(32), read_write, None, "api")

    def registry_credentials(self, email: str, read_write: bool, expiry_seconds: int | None, now=None) -> str:
        """A registry token as ``docker-credentials`` issues it; expiry 0 or None never expires."""
        expires_at = (now or _now()) + timedelta(seconds=expiry_seconds) if expiry_seconds else None
        return self._add_token(email, secrets.token_hex(32), read_write, expires_at, "registry")

    def _add_token(self, email: str, value: str, read_write: bool, expires_at, kind: str) -> str:
        with self.lock:
            self._account(email)
            self.tokens[value] = DOToken(value=value, account=email, read_write=read_write,
                                         expires_at=expires_at, kind=kind)
            return value

    def revoke(self, token: str) -> None:
        with self.lock:
            self.tokens[token].revoked = True

    def expire(self, token: str) -> None:
        with self.lock:
            self.tokens[token].expires_at = _now() - timedelta(seconds=1)

    def usable_token(self, value: str, kinds=("api", "registry")) -> DOToken | None:
        with self.lock:
            token = self.tokens.get(value)
            return token if token and token.kind in kinds and token.usable() else None

    # -- faults --------------------------------------------------------------------------------------
    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next `count` API requests with `status` (429 rate limit, 500, 503), whoever asks."""
        with self.lock:
            self._faults.extend([status] * count)

    def take_fault(self) -> int | None:
        with self.lock:
            return self._faults.pop(0) if self._faults else None

    # -- registries ----------------------------------------------------------------------------------
    def create_registry(self, email: str, name: str, region: str = "fra1", several: bool = False) -> DORegistry:
        """One registry per account (``/v2/registry``); `several` is ``/v2/registries``, Professional tier only."""
        with self.lock:
            account = self._account(email)
            limit = MAX_REGISTRIES[account.tier] if several else 1
            if len(account.registries) >= limit:
                raise DOError(422, "unprocessable_entity", "user already has a registry")
            if self.find_registry(name) is not None:
                raise DOError(409, "conflict", "name already exists")
            registry = DORegistry(name=name, region=region, created=_now())
            account.registries.append(registry)
            return registry

    def delete_registry(self, email: str, name: str) -> None:
        with self.lock:
            account = self._account(email)
            account.registries = [r for r in account.registries if r.name != name]

    def find_registry(self, name: str) -> DORegistry | None:
        with self.lock:
            return next((r for a in self.accounts.values() for r in a.registries if r.name == name), None)

    def owner_of(self, registry_name: str) -> DOAccount | None:
        with self.lock:
            return next((a for a in self.accounts.values() if any(r.name == registry_name for r in a.registries)),
                        None)

    def push(self, registry_name: str, repository: str, tag: str, size_bytes: int,
             updated: datetime | None = None) -> DOManifest:
        """Store an image under `tag`, moving the tag off the manifest that held it (left untagged)."""
        updated = updated or _now()
        with self.lock:
            registry = self.find_registry(registry_name)
            if registry is None:
                raise DOError(404, "not_found", f"registry {registry_name} not found")
            body = _manifest_body(f"{registry_name}/{repository}:{tag}@{updated.isoformat()}", size_bytes)
            manifest = DOManifest(digest="sha256:" + hashlib.sha256(body).hexdigest(), size_bytes=size_bytes,
                                  updated=updated, tags=[tag], body=body)
            manifests = registry.repositories.setdefault(repository, [])
            for older in manifests:
                if tag in older.tags:
                    older.tags.remove(tag)
            manifests.append(manifest)
            return manifest

    # -- clusters ------------------------------------------------------------------------------------
    def add_cluster(self, email: str, name: str, region: str = "fra1", version: str = "1.34.1-do.0",
                    node_pools=(("pool-default", "s-2vcpu-4gb", 3),), *, pool_ids: Sequence[str] = (),
                    node_names: Sequence[Sequence[str]] = (), registries: Sequence[str] = (),
                    created: datetime | None = None) -> DOCluster:
        """A cluster with ``node_pools`` as (name, size, count); ``pool_ids`` and ``node_names`` (per pool, in
        order) match a Kubernetes cluster's Node labels and names, ``registries`` are the integrated ones."""
        created = created or _now()
        with self.lock:
            self._account(email)
            pools = []
            for index, (pool_name, size, count) in enumerate(node_pools):
                given = list(node_names[index])[:count] if index < len(node_names) else []
                pool = DONodePool(id=pool_ids[index] if index < len(pool_ids) else str(uuid.uuid4()), name=pool_name,
                                  size=size, nodes=[DONode(node, created) for node in given], nodes_created=len(given))
                self._add_nodes(pool, count - pool.count, created)
                pools.append(pool)
            cluster = DOCluster(id=str(uuid.uuid4()), account=email, name=name, region=region, version=version,
                                node_pools=pools, created=created, registries=list(registries))
            self.clusters[cluster.id] = cluster
            return cluster

    def _add_nodes(self, pool: DONodePool, count: int, created: datetime) -> list[str]:
        taken = {node.name for node in pool.nodes}
        added = []
        while len(added) < count:
            name = pool_node_name(pool.name, f"{pool.id}/{pool.nodes_created}")
            pool.nodes_created += 1
            if name not in taken:
                taken.add(name)
                added.append(name)
                pool.nodes.append(DONode(name, created))
        return added

    def resize_node_pool(self, cluster: DOCluster, pool: DONodePool, count: int) -> NodePoolChange:
        """Add droplets to (or remove the newest from) ``pool`` until it has ``count``; the change reaches
        ``node_pool_listener`` at the next :meth:`deliver_node_pool_changes`."""
        if count < 0:
            raise ValueError(f"a node pool cannot have {count} nodes")
        with self.lock:
            removed = tuple(node.name for node in pool.nodes[count:])
            del pool.nodes[count:]
            added = tuple(self._add_nodes(pool, count - pool.count, _now()))
            change = NodePoolChange(cluster.id, pool.id, pool.name, pool.size, added, removed)
            if added or removed:
                self._pool_changes.append(change)
            return change

    def deliver_node_pool_changes(self) -> None:
        """Hand pending resizes to the listener, in order; call it without holding ``lock``, since the
        listener writes to a Kubernetes store whose own writers may wait for this world's lock."""
        with self._delivery_lock:
            with self.lock:
                changes, self._pool_changes = self._pool_changes, []
                listener = self.node_pool_listener
            if listener is not None:
                for change in changes:
                    listener(change)


def _manifest_body(seed: str, size_bytes: int) -> bytes:
    config = hashlib.sha256(f"config:{seed}".encode()).hexdigest()
    layer = hashlib.sha256(f"layer:{seed}".encode()).hexdigest()
    config_size = 1469
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config_size,
                   "digest": f"sha256:{config}"},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": max(size_bytes - config_size, 0), "digest": f"sha256:{layer}"}],
    }, indent=3).encode()


# -- contract ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_spec() -> dict:
    """DigitalOcean's OpenAPI contract (the subset this fake serves), parsed once."""
    return json.loads(SPEC_PATH.read_text())


def _inline(node, components: dict):
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(components[node["$ref"].rsplit("/", 1)[1]], components)
        return {key: _inline(value, components) for key, value in node.items() if key != "example"}
    if isinstance(node, list):
        return [_inline(item, components) for item in node]
    return node


@lru_cache(maxsize=None)
def _schema(name: str) -> dict:
    return _inline(load_spec()["components"]["schemas"][name], load_spec()["components"]["schemas"])


def _check_body(body, schema_name: str) -> dict:
    """The request body if it satisfies the contract's schema; a 422 like the real API otherwise."""
    if not isinstance(body, dict):
        raise DOError(422, "unprocessable_entity", "request body must be a JSON object")
    try:
        jsonschema.validate(body, _schema(schema_name))
    except jsonschema.ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path) or "body"
        raise DOError(422, "unprocessable_entity", f"{where}: {error.message}") from None
    return body


# -- renderings (shapes of the contract's schemas) ------------------------------------------------------------
def _registry_json(registry: DORegistry, tier: str) -> dict:
    return {"name": registry.name, "created_at": _timestamp(registry.created), "region": registry.region,
            "storage_usage_bytes": registry.storage_bytes, "storage_usage_bytes_updated_at": _timestamp(_now()),
            "subscription": {"tier": _TIERS[tier], "created_at": _timestamp(registry.created),
                             "updated_at": _timestamp(registry.created)}}


def _manifest_json(registry: str, repository: str, manifest: DOManifest) -> dict:
    return {"registry_name": registry, "repository": repository, "digest": manifest.digest,
            "compressed_size_bytes": manifest.size_bytes, "size_bytes": manifest.size_bytes,
            "updated_at": _timestamp(manifest.updated), "tags": list(manifest.tags), "blobs": []}


def _repository_json(registry: str, repository: str, manifests: list[DOManifest]) -> dict:
    latest = max(manifests, key=lambda m: m.updated)
    return {"registry_name": registry, "name": repository,
            "latest_manifest": _manifest_json(registry, repository, latest),
            "tag_count": sum(len(m.tags) for m in manifests), "manifest_count": len(manifests)}


def _tag_json(registry: str, repository: str, tag: str, manifest: DOManifest) -> dict:
    return {"registry_name": registry, "repository": repository, "tag": tag, "manifest_digest": manifest.digest,
            "compressed_size_bytes": manifest.size_bytes, "size_bytes": manifest.size_bytes,
            "updated_at": _timestamp(manifest.updated)}


def _node_pool_json(cluster: DOCluster, pool: DONodePool) -> dict:
    nodes = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pool.id}/{node.name}")), "name": node.name,
              "status": {"state": "running"},
              "droplet_id": str(400000000 + int(hashlib.sha256(node.name.encode()).hexdigest()[:7], 16)),
              "created_at": _timestamp(node.created), "updated_at": _timestamp(node.created)}
             for node in pool.nodes]
    return {"id": pool.id, "name": pool.name, "size": pool.size, "count": pool.count,
            "tags": ["k8s", f"k8s:{cluster.id}", "k8s:worker"], "labels": None, "taints": [],
            "auto_scale": pool.auto_scale, "min_nodes": pool.min_nodes, "max_nodes": pool.max_nodes, "nodes": nodes}


def _cluster_json(cluster: DOCluster) -> dict:
    return {"id": cluster.id, "name": cluster.name, "region": cluster.region, "version": cluster.version,
            "cluster_subnet": "10.244.0.0/16", "service_subnet": "10.245.0.0/16",
            "vpc_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"vpc:{cluster.region}")), "ipv4": "127.0.0.1",
            "endpoint": f"https://{cluster.id}.k8s.ondigitalocean.com", "tags": ["k8s", f"k8s:{cluster.id}"],
            "node_pools": [_node_pool_json(cluster, pool) for pool in cluster.node_pools],
            "maintenance_policy": {"start_time": "00:00", "duration": "4h0m0s", "day": "any"},
            "auto_upgrade": False, "status": {"state": "running"}, "created_at": _timestamp(cluster.created),
            "updated_at": _timestamp(cluster.created), "surge_upgrade": False, "ha": False,
            "registry_enabled": bool(cluster.registries), "registries": list(cluster.registries)}


def _page(items: list, query: dict, key: str, base_url: str, path: str) -> dict:
    """One page of a list in DigitalOcean's envelope: ``{key: [...], "meta": {"total"}, "links": {"pages"}}``."""
    try:
        per_page = int(query.get("per_page", 20))
        page = int(query.get("page", 1))
    except ValueError:
        raise DOError(400, "bad_request", "page and per_page must be integers") from None
    if not 1 <= per_page <= 200 or page < 1:
        raise DOError(400, "bad_request", "per_page must be 1..200 and page at least 1")
    last = max((len(items) + per_page - 1) // per_page, 1)
    link = f"{base_url}{path}?page={{}}&per_page={per_page}".format
    pages = {}
    if page > 1:
        pages.update(first=link(1), prev=link(page - 1))
    if page < last:
        pages.update(next=link(page + 1), last=link(last))
    return {key: items[(page - 1) * per_page: page * per_page], "meta": {"total": len(items)},
            "links": {"pages": pages}}


@dataclass
class Exchange:
    """One request the API answered, kept so tests can hold every answer against the contract (no credentials)."""
    method: str
    path: str                      # as sent, percent-encoding kept
    query: dict[str, str]
    authorized: bool               # whether an Authorization header was sent (never its value)
    request_body: bytes
    status: int
    response_body: bytes


# -- HTTP ------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nasiko-sim-digitalocean"
    sim: "DigitalOceanServer"

    def log_message(self, format, *args):     # the fake is quiet; tests read exchanges instead
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict | None = None, head: bool = False):
        self.send_response(status)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class _ApiHandler(_Handler):
    """The DigitalOcean API (``/v2/...``) and the registry token service at ``/v2/registry/auth``."""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        request_body = self._read_body()
        if url.path == "/v2/registry/auth" and method == "GET":
            return self._token_service(query)
        world = self.sim.world
        status, headers, body = 500, {}, {}
        try:
            fault = world.take_fault()
            if fault:
                raise DOError(fault, *{429: ("too_many_requests", "API rate limit exceeded."),
                                       500: ("server_error", "Unexpected server-side error")}.get(
                    fault, ("service_unavailable", "Service unavailable")))
            token = self._api_token()
            status, body = self.sim.api.handle(method, url.path, query, _json_body(request_body), token)
        except DOError as error:
            status, body = error.status, {"id": error.error_id, "message": error.message,
                                          "request_id": str(uuid.uuid4())}
        raw = json.dumps(body).encode() if body is not None else b""
        headers.update({"ratelimit-limit": str(RATE_LIMIT_PER_HOUR), "ratelimit-remaining": str(RATE_LIMIT_PER_HOUR - 1),
                        "ratelimit-reset": str(int(_now().timestamp()) + 3600)})
        self.sim.exchanges.append(Exchange(method, url.path, query, "Authorization" in self.headers,
                                           request_body, status, raw))
        self._send(status, raw, headers=headers)

    def _api_token(self) -> DOToken:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        token = self.sim.world.usable_token(value.strip(), kinds=("api",)) if scheme.lower() == "bearer" else None
        if token is None:
            raise DOError(401, "unauthorized", "Unable to authenticate you")
        return token

    def _token_service(self, query: dict):
        """Docker token auth: Basic <token>:<token> in, a JWT granting pull (push if read-write) on own repos out."""
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        token = None
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
            except ValueError:
                password = ""
            token = self.sim.world.usable_token(password)
        if token is None:
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
            return self._send(401, body, headers={"WWW-Authenticate": f'Basic realm="{REGISTRY_HOST}"'})
        account = self.sim.world.accounts[token.account]
        own = {registry.name for registry in account.registries}
        allowed = {"pull", "push"} if token.read_write else {"pull"}
        access = []
        for entry in parse_scope(query.get("scope", "")):
            granted = [a for a in entry["actions"] if a in allowed] if (
                entry["type"] == "repository" and entry["name"].split("/", 1)[0] in own
                and "/" in entry["name"]) else []
            if granted:
                access.append({"type": entry["type"], "name": entry["name"], "actions": granted})
        ttl = REGISTRY_TOKEN_TTL_S
        if token.expires_at is not None:
            ttl = max(1, min(ttl, int((token.expires_at - _now()).total_seconds())))
        issued = self.sim.issuer.issue(token.account, access, ttl_s=ttl)
        self._send(200, json.dumps(issued).encode())


class _RegistryHandler(_Handler):
    """registry.digitalocean.com: Docker Registry HTTP API v2 behind Bearer tokens from the token service."""

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _error(self, status: int, code: str, message: str, scope: str = "", head: bool = False):
        headers = {"Docker-Distribution-API-Version": "registry/2.0"}
        if status == 401:
            challenge = f'Bearer realm="{self.sim.api_url}/v2/registry/auth",service="{REGISTRY_HOST}"'
            if scope:
                challenge += f',scope="{scope}"'
            headers["WWW-Authenticate"] = challenge
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        self._send(status, body, headers=headers, head=head)

    def _granted(self) -> dict[str, set[str]] | None:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims = jwt.decode(value.strip(), self.sim.public_key, algorithms=["RS256"], audience=REGISTRY_HOST,
                                issuer=TOKEN_ISSUER)
        except jwt.InvalidTokenError:
            return None
        return {entry["name"]: set(entry["actions"]) for entry in claims.get("access", [])
                if entry.get("type") == "repository"}

    def _dispatch(self, method: str):
        head = method == "HEAD"
        path = urlsplit(self.path).path
        self._read_body()
        granted = self._granted()
        if path in ("/v2/", "/v2"):
            if granted is None:
                return self._error(401, "UNAUTHORIZED", "authentication required", head=head)
            return self._send(200, b"{}", headers={"Docker-Distribution-API-Version": "registry/2.0"}, head=head)
        match = (re.fullmatch(r"/v2/(?P<name>.+)/(?P<what>tags/list)", path)
                 or re.fullmatch(r"/v2/(?P<name>.+)/(?P<what>manifests)/(?P<ref>[^/]+)", path)
                 or re.fullmatch(r"/v2/(?P<name>.+)/(?P<what>blobs/uploads)/(?P<ref>[^/]*)", path))
        if match is None:
            return self._error(404, "NOT_FOUND", "not found", head=head)
        name, what, ref = match["name"], match["what"], match.groupdict().get("ref") or ""
        action = "push" if what == "blobs/uploads" else "pull"
        if granted is None or action not in granted.get(name, set()):
            scope = f"repository:{name}:{'pull,push' if action == 'push' else 'pull'}"
            return self._error(401, "UNAUTHORIZED", "authentication required", scope=scope, head=head)
        registry_name, _, repository = name.partition("/")
        world = self.sim.world
        with world.lock:
            registry = world.find_registry(registry_name)
            manifests = list(registry.repositories.get(repository, [])) if registry else []
            if what == "blobs/uploads":
                return self._upload(method, name, ref)
        if not manifests:
            return self._error(404, "NAME_UNKNOWN", "repository name not known to registry", head=head)
        if what == "tags/list":
            tags = sorted(tag for manifest in manifests for tag in manifest.tags)
            return self._send(200, json.dumps({"name": name, "tags": tags}).encode(), head=head)
        manifest = next((m for m in manifests if ref == m.digest or ref in m.tags), None)
        if manifest is None or method not in ("GET", "HEAD"):
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown", head=head)
        self._send(200, manifest.body, content_type=MANIFEST_MEDIA_TYPE, head=head,
                   headers={"Docker-Content-Digest": manifest.digest,
                            "Docker-Distribution-API-Version": "registry/2.0"})

    def _upload(self, method: str, name: str, upload_id: str):
        world = self.sim.world
        if method == "POST" and not upload_id:
            upload_id = str(uuid.uuid4())
            world.uploads[upload_id] = name
            return self._send(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload_id}",
                                            "Docker-Upload-UUID": upload_id, "Range": "0-0",
                                            "Docker-Distribution-API-Version": "registry/2.0"})
        if method == "DELETE" and world.uploads.get(upload_id) == name:
            del world.uploads[upload_id]
            return self._send(204)
        self._error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")


class _Api:
    """Routes of the DigitalOcean API onto the world; each answers (status, body) or raises DOError."""

    def __init__(self, sim: "DigitalOceanServer"):
        self.sim = sim
        self.world = sim.world
        segment = r"(?P<{}>[^/]+)"
        registry, repo = segment.format("registry"), segment.format("repository")
        self.routes = [(method, re.compile(pattern.replace("{registry}", registry).replace("{repository}", repo)
                                           .replace("{tag}", segment.format("tag"))
                                           .replace("{digest}", segment.format("digest"))
                                           .replace("{cluster}", segment.format("cluster"))
                                           .replace("{pool}", segment.format("pool")) + "$"), handler)
                       for method, pattern, handler in [
            ("GET", "/v2/account", self.account),
            ("GET", "/v2/registry", self.get_registry),
            ("POST", "/v2/registry", self.create_registry),
            ("DELETE", "/v2/registry", self.delete_registry),
            ("GET", "/v2/registry/docker-credentials", self.docker_credentials),
            ("GET", "/v2/registry/{registry}/repositoriesV2", self.repositories),
            ("GET", "/v2/registry/{registry}/repositories/{repository}/tags", self.tags),
            ("DELETE", "/v2/registry/{registry}/repositories/{repository}/tags/{tag}", self.delete_tag),
            ("GET", "/v2/registries", self.list_registries),
            ("POST", "/v2/registries", self.create_registries_entry),
            ("GET", "/v2/registries/{registry}", self.get_named_registry),
            ("DELETE", "/v2/registries/{registry}", self.delete_named_registry),
            ("GET", "/v2/registries/{registry}/docker-credentials", self.named_docker_credentials),
            ("GET", "/v2/registries/{registry}/repositoriesV2", self.repositories),
            ("DELETE", "/v2/registries/{registry}/repositories/{repository}", self.delete_repository),
            ("GET", "/v2/registries/{registry}/repositories/{repository}/tags", self.tags),
            ("DELETE", "/v2/registries/{registry}/repositories/{repository}/tags/{tag}", self.delete_tag),
            ("GET", "/v2/registries/{registry}/repositories/{repository}/digests", self.manifests),
            ("DELETE", "/v2/registries/{registry}/repositories/{repository}/digests/{digest}", self.delete_manifest),
            ("GET", "/v2/kubernetes/clusters", self.clusters),
            ("GET", "/v2/kubernetes/clusters/{cluster}", self.cluster),
            ("GET", "/v2/kubernetes/clusters/{cluster}/node_pools", self.node_pools),
            ("PUT", "/v2/kubernetes/clusters/{cluster}/node_pools/{pool}", self.update_node_pool),
        ]]

    def handle(self, method: str, path: str, query: dict, body, token: DOToken):
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                if method != "GET" and not token.read_write:
                    raise DOError(403, "forbidden", "You do not have access for the attempted action.")
                params = {key: unquote(value) for key, value in match.groupdict().items()}
                with self.world.lock:
                    answer = handler(token=token, query=query, body=body, path=path, **params)
                self.world.deliver_node_pool_changes()
                return answer
        raise DOError(404, "not_found", "The resource you were accessing could not be found.")

    # -- account and the single registry of /v2/registry ---------------------------------------------------
    def account(self, token, **_):
        account = self.world.accounts[token.account]
        return 200, {"account": {"droplet_limit": 25, "floating_ip_limit": 3, "email": account.email,
                                 "name": account.email.split("@")[0], "uuid": account.uuid,
                                 "email_verified": True, "status": "active", "status_message": "",
                                 "team": {"uuid": account.uuid, "name": "My Team"}}}

    def _only_registry(self, token) -> tuple[DOAccount, DORegistry]:
        account = self.world.accounts[token.account]
        if len(account.registries) > 1:
            raise DOError(412, "precondition_failed",
                          "This API is not supported if you have created multiple registries. Please use "
                          "'/v2/registries/{registry_name}' instead.")
        if not account.registries:
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        return account, account.registries[0]

    def get_registry(self, token, **_):
        account, registry = self._only_registry(token)
        return 200, {"registry": _registry_json(registry, account.tier)}

    def create_registry(self, token, body, **_):
        request = _check_body(body, "registry_create")
        account = self.world.accounts[token.account]
        registry = self.world.create_registry(token.account, request["name"], request.get("region", "fra1"))
        account.tier = request["subscription_tier_slug"]
        return 201, {"registry": _registry_json(registry, account.tier)}

    def delete_registry(self, token, **_):
        _, registry = self._only_registry(token)
        self.world.delete_registry(token.account, registry.name)
        return 204, None

    def docker_credentials(self, token, query, **_):
        read_write = _boolean(query.get("read_write", "false"), "read_write")
        try:
            expiry = int(query.get("expiry_seconds") or 0)
        except ValueError:
            raise DOError(400, "bad_request", "expiry_seconds must be an integer") from None
        if expiry < 0:
            raise DOError(400, "bad_request", "expiry_seconds must not be negative")
        value = self.world.registry_credentials(token.account, read_write, expiry)
        auth = base64.b64encode(f"{value}:{value}".encode()).decode()
        return 200, {"auths": {REGISTRY_HOST: {"auth": auth}}}

    # -- registries by name ---------------------------------------------------------------------------------
    def _own(self, token, registry: str) -> DORegistry:
        found = next((r for r in self.world.accounts[token.account].registries if r.name == registry), None)
        if found is None:
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        return found

    def list_registries(self, token, **_):
        account = self.world.accounts[token.account]
        return 200, {"registries": [_registry_json(r, account.tier) for r in account.registries]}

    def create_registries_entry(self, token, body, **_):
        request = _check_body(body, "multiregistry_create")
        account = self.world.accounts[token.account]
        if request.get("subscription_tier_slug"):
            account.tier = request["subscription_tier_slug"]
        registry = self.world.create_registry(token.account, request["name"], request.get("region", "fra1"),
                                              several=True)
        return 201, {"registry": _registry_json(registry, account.tier)}

    def get_named_registry(self, token, registry, **_):
        return 200, {"registry": _registry_json(self._own(token, registry), self.world.accounts[token.account].tier)}

    def delete_named_registry(self, token, registry, **_):
        self.world.delete_registry(token.account, self._own(token, registry).name)
        return 204, None

    def named_docker_credentials(self, token, registry, query, **_):
        self._own(token, registry)
        return self.docker_credentials(token=token, query=query)

    def repositories(self, token, registry, query, path, **_):
        found = self._own(token, registry)
        items = [_repository_json(found.name, name, manifests)
                 for name, manifests in sorted(found.repositories.items()) if manifests]
        return 200, _page(items, query, "repositories", self.sim.api_url, path)

    def _manifests(self, token, registry, repository) -> tuple[DORegistry, list[DOManifest]]:
        found = self._own(token, registry)
        if not found.repositories.get(repository):
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        return found, found.repositories[repository]

    def tags(self, token, registry, repository, query, path, **_):
        found, manifests = self._manifests(token, registry, repository)
        items = sorted((_tag_json(found.name, repository, tag, m) for m in manifests for tag in m.tags),
                       key=lambda item: item["updated_at"], reverse=True)
        return 200, _page(items, query, "tags", self.sim.api_url, path)

    def manifests(self, token, registry, repository, query, path, **_):
        found, manifests = self._manifests(token, registry, repository)
        items = [_manifest_json(found.name, repository, m) for m in sorted(manifests, key=lambda m: m.updated,
                                                                            reverse=True)]
        return 200, _page(items, query, "manifests", self.sim.api_url, path)

    def delete_tag(self, token, registry, repository, tag, **_):
        _, manifests = self._manifests(token, registry, repository)
        holder = next((m for m in manifests if tag in m.tags), None)
        if holder is None:
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        holder.tags.remove(tag)
        return 204, None

    def delete_manifest(self, token, registry, repository, digest, **_):
        found, manifests = self._manifests(token, registry, repository)
        remaining = [m for m in manifests if m.digest != digest]
        if len(remaining) == len(manifests):
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        found.repositories[repository] = remaining
        return 204, None

    def delete_repository(self, token, registry, repository, **_):
        found, _ = self._manifests(token, registry, repository)
        del found.repositories[repository]
        return 204, None

    # -- kubernetes -----------------------------------------------------------------------------------------
    def _cluster(self, token, cluster_id) -> DOCluster:
        cluster = self.world.clusters.get(cluster_id)
        if cluster is None or cluster.account != token.account:
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        return cluster

    def clusters(self, token, query, path, **_):
        own = [_cluster_json(c) for c in self.world.clusters.values() if c.account == token.account]
        return 200, _page(own, query, "kubernetes_clusters", self.sim.api_url, path)

    def cluster(self, token, cluster, **_):
        return 200, {"kubernetes_cluster": _cluster_json(self._cluster(token, cluster))}

    def node_pools(self, token, cluster, **_):
        found = self._cluster(token, cluster)
        return 200, {"node_pools": [_node_pool_json(found, pool) for pool in found.node_pools]}

    def update_node_pool(self, token, cluster, pool, body, **_):
        found = self._cluster(token, cluster)
        target = next((p for p in found.node_pools if p.id == pool), None)
        if target is None:
            raise DOError(404, "not_found", "The resource you were accessing could not be found.")
        request = _check_body(body, "kubernetes_node_pool_update")
        auto_scale = request.get("auto_scale", target.auto_scale)
        if request["count"] < (0 if auto_scale else 1):
            raise DOError(422, "unprocessable_entity", "count: a node pool without auto-scaling needs at least 1 node")
        target.name = request["name"]
        self.world.resize_node_pool(found, target, request["count"])
        target.auto_scale = auto_scale
        target.min_nodes = request.get("min_nodes", target.min_nodes)
        target.max_nodes = request.get("max_nodes", target.max_nodes)
        return 202, {"node_pool": _node_pool_json(found, target)}


def _json_body(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise DOError(400, "bad_request", "request body is not valid JSON") from None


def _boolean(text: str, name: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise DOError(400, "bad_request", f"{name} must be true or false")
    return text.lower() == "true"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Clients that hang up or refuse the certificate are part of what is simulated, not server faults."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class DigitalOceanServer:
    """The running fake: the API (+ token service) and the registry, two HTTPS listeners on 127.0.0.1."""

    def __init__(self, world: DOWorld, certificate: Certificate, scratch: Path | None = None):
        self.world, self.ca_file, self._scratch = world, certificate.cert_path, scratch
        self.exchanges: deque[Exchange] = deque(maxlen=10000)
        self.issuer = TokenIssuer(certificate, issuer=TOKEN_ISSUER, service=REGISTRY_HOST)
        self.public_key = x509.load_pem_x509_certificate(certificate.cert_pem).public_key()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        self._servers = []
        for handler in (_ApiHandler, _RegistryHandler):
            bound = type(handler.__name__, (handler,), {"sim": self})
            server = _QuietServer(("127.0.0.1", 0), bound)
            # the handshake happens in the request's thread, so a silent client cannot stall the listener
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
            self._servers.append(server)
        self.api_url = f"https://127.0.0.1:{self._servers[0].server_address[1]}"
        self.registry_url = f"https://127.0.0.1:{self._servers[1].server_address[1]}"
        self.api = _Api(self)
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_digitalocean(world: DOWorld, directory: Path | None = None) -> DigitalOceanServer:
    """Serve `world`; the certificate (also the clients' CA bundle, ``ca_file``) goes to `directory`.

    Without one, a temporary directory holds it and is removed by ``stop()``.
    """
    scratch = None if directory else Path(tempfile.mkdtemp(prefix="nasiko-do-"))
    certificate = make_certificate(Path(directory or scratch), common_name="digitalocean-sim")
    return DigitalOceanServer(world, certificate, scratch)
