"""Registry credentials read from the cluster for verification, held in memory only.

Checking what a secret's credentials may do needs the password itself; it is read here with one GET
per secret, turned into a :class:`DockerCredential` (whose repr shows a fingerprint) and handed to the
registry client. It never enters a snapshot, a finding or a record.
"""
from __future__ import annotations

import base64
import json
import os

from kubernetes.client.rest import ApiException

from nasiko_nb.cluster import Cluster
from nasiko_nb.providers.base import DockerCredential, ProviderError
from nasiko_nb.providers.registry_v2 import RegistryClient
from nasiko_nb.redact import normalize_host


def registry_endpoints() -> dict[str, str]:
    """Where to reach a registry host, from ``NASIKO_REGISTRY_ENDPOINTS`` ("host=url,host=url"); default https://host."""
    pairs = [item.split("=", 1) for item in os.environ.get("NASIKO_REGISTRY_ENDPOINTS", "").split(",") if "=" in item]
    return {normalize_host(host): url.rstrip("/") for host, url in pairs}


def tls_verify() -> str | bool:
    """A CA bundle to trust (``NASIKO_CA_BUNDLE``, e.g. a self-signed registry's), else the system's."""
    return os.environ.get("NASIKO_CA_BUNDLE") or True


def registry_client(host: str, username: str = "", password: str = "") -> RegistryClient:
    url = registry_endpoints().get(normalize_host(host), f"https://{host}")
    return RegistryClient(url, username, password, verify=tls_verify())


def read_docker_credential(cluster: Cluster, namespace: str, name: str, host: str) -> DockerCredential | None:
    """The credentials a dockerconfigjson secret holds for ``host``; None when absent or unreadable."""
    try:
        secret = cluster.get_json(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except ApiException:
        return None
    try:
        config = json.loads(base64.b64decode((secret.get("data") or {}).get(".dockerconfigjson", "")))
    except (ValueError, TypeError):
        return None
    return credential_in(config, host)


def credential_in(config: dict, host: str) -> DockerCredential | None:
    """The entry of a Docker config (``auths``) for ``host``: username/password or the ``auth`` pair."""
    for server, entry in (config.get("auths") or {}).items():
        if normalize_host(server) != normalize_host(host):
            continue
        username, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            username, _, password = base64.b64decode(entry["auth"]).decode(errors="replace").partition(":")
        return DockerCredential(normalize_host(host), username, password)
    return None


def check_secret_access(cluster: Cluster, namespace: str, name: str, host: str, repository: str) -> dict:
    """What the registry grants this secret's credentials on ``repository``, as data for the checks."""
    base = {"namespace": namespace, "secret": name, "host": host, "repository": repository}
    credential = read_docker_credential(cluster, namespace, name, host)
    if credential is None:
        return {**base, "authenticated": False, "granted": [], "status": 0,
                "detail": f"no credentials for {host} in the secret"}
    try:
        check = registry_client(host, credential.username, credential.password).check_access(repository)
    except ProviderError as exc:
        return {**base, "authenticated": False, "granted": [], "status": exc.status or 0, "detail": str(exc),
                "error": exc.code}
    return {**base, "authenticated": check.authenticated, "granted": sorted(check.granted),
            "status": check.status, "detail": check.detail}


def credential_from_file(path: str, host: str) -> DockerCredential:
    """Credentials for ``host`` from a Docker config file (e.g. `doctl registry docker-config --read-write`)."""
    try:
        config = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise ValueError(f"credentials file {path} is not a readable Docker config JSON ({type(exc).__name__})") from None
    credential = credential_in(config, host)
    if credential is None:
        raise ValueError(f"credentials file {path} has no entry for {host}")
    return credential
