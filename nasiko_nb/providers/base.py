"""What every registry provider answers, and how provider failures are reported.

DigitalOcean (pydo), AWS ECR (boto3) and any Docker Registry v2 answer in these shapes, so checks can
take provider answers as plain data and runbooks can treat the providers alike. Every provider error
becomes a :class:`ProviderError` carrying a cause code and one sentence; no traceback leaves a provider.
Credentials are held in :class:`DockerCredential`, whose repr never shows the password.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from nasiko_nb.redact import fingerprint

#: HTTP status of a provider answer -> cause code of the provider/* family.
STATUS_CODES = {401: "provider/unauthorized", 403: "provider/forbidden", 404: "provider/not-found",
                429: "provider/rate-limited"}


class ProviderError(Exception):
    """A provider call that failed, as a cause code plus one sentence (never a secret, never a traceback)."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code, self.status = code, status

    def _render_traceback_(self):
        return [f"ProviderError ({self.code}): {self}"]

    @classmethod
    def from_status(cls, provider: str, what: str, status: int, detail: str = "") -> "ProviderError":
        code = STATUS_CODES.get(status, "provider/error" if status < 500 else "provider/unavailable")
        return cls(code, f"{provider}: {what} answered {status}{': ' + detail if detail else ''}", status)


@dataclass(frozen=True)
class Account:
    provider: str
    id: str            # email (DigitalOcean) or account number (AWS)
    uuid: str = ""
    status: str = ""


@dataclass(frozen=True)
class RegistryInfo:
    provider: str
    name: str          # DigitalOcean registry name, ECR registry id
    host: str          # registry.digitalocean.com, <account>.dkr.ecr.<region>.amazonaws.com
    region: str = ""
    created: datetime | None = None
    storage_bytes: int | None = None


@dataclass(frozen=True)
class Repository:
    name: str
    tag_count: int
    size_bytes: int | None = None
    updated: datetime | None = None


@dataclass(frozen=True)
class Tag:
    repository: str
    tag: str
    digest: str = ""
    size_bytes: int | None = None
    updated: datetime | None = None


@dataclass(frozen=True)
class NodeGroup:
    """A cloud node pool (DigitalOcean) or managed node group (EKS) and its scaling bounds."""

    cluster: str
    name: str
    status: str
    min_size: int
    max_size: int
    desired_size: int
    instance_types: tuple[str, ...] = ()
    created: datetime | None = None
    provider: str = ""
    id: str = ""              # DigitalOcean's node pool id (the nodes' doks.digitalocean.com/node-pool-id)
    cluster_id: str = ""      # DigitalOcean's cluster id
    auto_scale: bool = False  # DigitalOcean's autoscaler owns the count


@dataclass(frozen=True)
class DockerCredential:
    """Registry credentials as a provider issues them; ``repr`` and ``summary`` show no secret."""

    host: str
    username: str
    password: str = field(repr=False)
    expires_at: datetime | None = None
    read_write: bool | None = None

    def __repr__(self) -> str:
        return f"DockerCredential({self.summary()})"

    def summary(self) -> str:
        user = fingerprint(self.username) if self.username == self.password else self.username
        until = self.expires_at.isoformat(timespec="minutes") if self.expires_at else "no expiry"
        access = {True: "read-write", False: "read-only", None: "access unknown"}[self.read_write]
        return f"{self.host} user {user} password {fingerprint(self.password)}, {access}, {until}"

    def dockerconfigjson(self) -> str:
        """The value of a kubernetes.io/dockerconfigjson secret's ``.dockerconfigjson`` key."""
        auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": auth}}})


class RegistryProvider(Protocol):
    """A registry account: who it is, its registry, what it stores, and fresh credentials for it."""

    name: str

    def account(self) -> Account: ...

    def registry(self) -> RegistryInfo | None: ...

    def docker_credentials(self, read_write: bool = True, expiry_seconds: int | None = None) -> DockerCredential: ...

    def repositories(self) -> list[Repository]: ...

    def tags(self, repository: str) -> list[Tag]: ...

    def delete_tag(self, repository: str, tag: str) -> None: ...

    def delete_repository(self, repository: str) -> None: ...
