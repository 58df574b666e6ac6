"""DigitalOcean Container Registry through pydo, DigitalOcean's own client.

pydo returns some error bodies (404, 412) as if they were answers and raises azure-core exceptions for
the rest; this module turns both into :class:`ProviderError` with a provider/* code and one sentence,
so a runbook tells "token revoked" from "no registry" from "API unreachable" without a traceback.
The API token never appears in a message or repr (only its fingerprint).
"""
from __future__ import annotations

import base64
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pydo
from azure.core.exceptions import (AzureError, HttpResponseError, ServiceRequestError, ServiceRequestTimeoutError,
                                   ServiceResponseError, ServiceResponseTimeoutError)

from nasiko_nb.providers.base import (Account, DockerCredential, NodeGroup, ProviderError, RegistryInfo, Repository,
                                      Tag)
from nasiko_nb.redact import fingerprint, scrub

REGISTRY_HOST = "registry.digitalocean.com"
DEFAULT_ENDPOINT = "https://api.digitalocean.com"
PROVIDER = "digitalocean"


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _token_from_environment() -> str | None:
    if os.environ.get("DIGITALOCEAN_TOKEN"):
        return os.environ["DIGITALOCEAN_TOKEN"].strip()
    path = os.environ.get("DIGITALOCEAN_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as error:
            raise ProviderError("provider/unauthorized",
                                f"{PROVIDER}: DIGITALOCEAN_TOKEN_FILE {path} cannot be read ({error.strerror})")
    return None


class DigitalOceanProvider:
    """A DigitalOcean account's container registry (and, for later runbooks, its Kubernetes node pools)."""

    name = PROVIDER
    page_size = 200

    def __init__(self, token: str | None = None, endpoint: str | None = None, verify=True, timeout: float = 30,
                 retries: int = 2):
        token = token or _token_from_environment()
        if not token:
            raise ProviderError("provider/unauthorized",
                                f"{PROVIDER}: no API token (set DIGITALOCEAN_TOKEN or DIGITALOCEAN_TOKEN_FILE)")
        self._token = token
        self.endpoint = (endpoint or os.environ.get("NASIKO_DO_API_URL") or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self._client = pydo.Client(token=token, endpoint=self.endpoint,
                                   connection_verify=str(verify) if isinstance(verify, Path) else verify,
                                   connection_timeout=timeout, read_timeout=timeout, timeout=timeout,
                                   retry_total=retries, retry_backoff_factor=0.5)
        self._registry_name: str | None = None

    def __repr__(self) -> str:
        return f"DigitalOceanProvider(endpoint={self.endpoint!r}, token={fingerprint(self._token)})"

    # -- calls -------------------------------------------------------------------------------------------
    def _call(self, what: str, operation, *args, **kwargs):
        """The answer's body, or ProviderError; `what` names the call in one short phrase."""
        try:
            status, body = operation(*args, cls=lambda response, body, _headers: (response.http_response.status_code,
                                                                                   body), **kwargs)
        except HttpResponseError as error:
            status, body = error.status_code or 0, _error_body(error)
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError):
            raise ProviderError("provider/unreachable",
                                f"{PROVIDER}: {what} timed out after {self.timeout:g}s ({self._host()})") from None
        except ServiceRequestError as error:
            raise ProviderError("provider/unreachable",
                                f"{PROVIDER}: {what} could not reach {self._host()}: {self._reason(error)}") from None
        except ServiceResponseError as error:
            raise ProviderError("provider/unreachable",
                                f"{PROVIDER}: {what} got no answer from {self._host()}: {self._reason(error)}") from None
        except AzureError as error:
            raise ProviderError("provider/error", f"{PROVIDER}: {what} failed: {self._reason(error)}") from None
        if status >= 400:
            raise ProviderError.from_status(PROVIDER, what, status, self._detail(body))
        return body

    def _host(self) -> str:
        return urlsplit(self.endpoint).netloc

    def _one_line(self, text: str) -> str:
        return scrub(re.sub(r"\s+", " ", text).strip(), [self._token])[:200]

    def _detail(self, body) -> str:
        if isinstance(body, dict) and body.get("message"):
            return self._one_line(f"{body.get('id', 'error')}: {body['message']}")
        return ""

    def _reason(self, error: Exception) -> str:
        text = str(error)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "TLS certificate not trusted (x509: unknown authority; give the CA bundle with verify=)"
        if "Connection refused" in text or "ConnectionRefused" in text:
            return "connection refused"
        if "Name or service not known" in text or "getaddrinfo" in text or "NameResolution" in text:
            return "host name not found"
        return self._one_line(text.splitlines()[0] if text else type(error).__name__)

    def _pages(self, what: str, key: str, operation, **kwargs) -> list[dict]:
        items, page = [], 1
        while True:
            body = self._call(what, operation, per_page=self.page_size, page=page, **kwargs)
            items.extend(body.get(key) or [])
            if not ((body.get("links") or {}).get("pages") or {}).get("next"):
                return items
            page += 1

    # -- RegistryProvider ----------------------------------------------------------------------------------
    def account(self) -> Account:
        body = self._call("account lookup", self._client.account.get)["account"]
        return Account(provider=PROVIDER, id=body["email"], uuid=body.get("uuid", ""), status=body.get("status", ""))

    def registry(self) -> RegistryInfo | None:
        """The account's registry, None when it has none; several registries are refused by the API (412)."""
        try:
            body = self._call("registry lookup", self._client.registry.get)["registry"]
        except ProviderError as error:
            if error.status == 404:
                return None
            raise
        info = _registry_info(body)
        self._registry_name = info.name
        return info

    def _own_registry(self) -> str:
        if self._registry_name is None and self.registry() is None:
            raise ProviderError("provider/not-found", f"{PROVIDER}: the account has no container registry", 404)
        return self._registry_name

    def docker_credentials(self, read_write: bool = True, expiry_seconds: int | None = None) -> DockerCredential:
        """Fresh registry credentials (read-only unless asked; never expiring unless `expiry_seconds`)."""
        issued_at = datetime.now(timezone.utc)
        body = self._call("docker-credentials", self._client.registry.get_docker_credentials,
                          read_write=read_write, expiry_seconds=expiry_seconds or 0)
        try:
            encoded = body["auths"][REGISTRY_HOST]["auth"]
            username, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (KeyError, TypeError, ValueError):
            raise ProviderError("provider/error", f"{PROVIDER}: docker-credentials answer has no {REGISTRY_HOST} auth")
        if not sep:
            raise ProviderError("provider/error", f"{PROVIDER}: docker-credentials auth is not user:token")
        expires_at = issued_at + timedelta(seconds=expiry_seconds) if expiry_seconds else None
        return DockerCredential(host=REGISTRY_HOST, username=username, password=password, expires_at=expires_at,
                                read_write=read_write)

    def repositories(self) -> list[Repository]:
        items = self._pages("repository listing", "repositories", self._client.registry.list_repositories_v2,
                            registry_name=self._own_registry())
        result = []
        for item in items:
            latest = item.get("latest_manifest") or {}
            result.append(Repository(name=item["name"], tag_count=item.get("tag_count", 0),
                                     size_bytes=latest.get("size_bytes"), updated=_parse_time(latest.get("updated_at"))))
        return result

    def tags(self, repository: str) -> list[Tag]:
        items = self._pages(f"tag listing of {repository}", "tags", self._client.registry.list_repository_tags,
                            registry_name=self._own_registry(), repository_name=repository)
        return [Tag(repository=repository, tag=item["tag"], digest=item.get("manifest_digest", ""),
                    size_bytes=item.get("size_bytes"), updated=_parse_time(item.get("updated_at"))) for item in items]

    def delete_tag(self, repository: str, tag: str) -> None:
        self._call(f"deleting tag {repository}:{tag}", self._client.registry.delete_repository_tag,
                   registry_name=self._own_registry(), repository_name=repository, repository_tag=tag)

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._call(f"deleting manifest {repository}@{digest}", self._client.registries.delete_repository_manifest,
                   registry_name=self._own_registry(), repository_name=repository, manifest_digest=digest)

    def delete_repository(self, repository: str) -> None:
        self._call(f"deleting repository {repository}", self._client.registries.delete_repository,
                   registry_name=self._own_registry(), repository_name=repository)

    # -- registry lifecycle --------------------------------------------------------------------------------
    def create_registry(self, name: str, region: str = "fra1", tier: str = "basic") -> RegistryInfo:
        body = self._call(f"creating registry {name}", self._client.registry.create,
                          body={"name": name, "region": region, "subscription_tier_slug": tier})["registry"]
        info = _registry_info(body)
        self._registry_name = info.name
        return info

    def delete_registry(self, name: str) -> None:
        self._call(f"deleting registry {name}", self._client.registries.delete, registry_name=name)
        if self._registry_name == name:
            self._registry_name = None

    # -- Kubernetes node pools -----------------------------------------------------------------------------
    def node_pools(self) -> list[NodeGroup]:
        """Every node pool of every Kubernetes cluster of the account (one paginated list)."""
        clusters = self._pages("cluster list", "kubernetes_clusters", self._client.kubernetes.list_clusters)
        return [_node_group(cluster, pool) for cluster in clusters for pool in cluster.get("node_pools") or []]

    def node_pool(self, group: NodeGroup) -> NodeGroup:
        """The pool as DigitalOcean sees it now."""
        body = self._call(f"node pool list of {group.cluster}", self._client.kubernetes.list_node_pools,
                          group.cluster_id)
        pool = next((p for p in body.get("node_pools") or [] if p.get("id") == group.id), None)
        if pool is None:
            raise ProviderError("provider/not-found", f"{PROVIDER}: node pool {group.name} is gone from {group.cluster}")
        return _node_group({"name": group.cluster, "id": group.cluster_id, "status": {"state": group.status}}, pool)

    def scale_node_pool(self, group: NodeGroup, count: int) -> NodeGroup:
        """Set the pool's node count (DigitalOcean adds or removes droplets asynchronously)."""
        body = self._call(f"node pool update of {group.name}", self._client.kubernetes.update_node_pool,
                          group.cluster_id, group.id, body={"name": group.name, "count": count})
        return _node_group({"name": group.cluster, "id": group.cluster_id, "status": {"state": group.status}},
                           body["node_pool"])


def _node_group(cluster: dict, pool: dict) -> NodeGroup:
    return NodeGroup(provider=PROVIDER, cluster=cluster.get("name", ""), cluster_id=cluster.get("id", ""),
                     name=pool.get("name", ""), id=pool.get("id", ""),
                     status=((cluster.get("status") or {}).get("state") or ""), min_size=pool.get("min_nodes") or 0,
                     max_size=pool.get("max_nodes") or 0, desired_size=pool.get("count") or 0,
                     auto_scale=bool(pool.get("auto_scale")), instance_types=(pool.get("size", ""),),
                     created=_parse_time(cluster.get("created_at")))


def _registry_info(body: dict) -> RegistryInfo:
    return RegistryInfo(provider=PROVIDER, name=body["name"], host=REGISTRY_HOST, region=body.get("region", ""),
                        created=_parse_time(body.get("created_at")), storage_bytes=body.get("storage_usage_bytes"))


def _error_body(error: HttpResponseError):
    try:
        return error.response.json() if error.response is not None else None
    except (ValueError, AttributeError):
        return None
