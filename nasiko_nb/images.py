"""Image references parsed the way the container runtime normalizes them (distribution/reference).

The registry host decides which pull-secret entry the kubelet uses, so it must be derived exactly as the
runtime does: a first path component is a host only if it has a '.' or ':' or is "localhost".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nasiko_nb.redact import DOCKER_HUB, normalize_host

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"(?::[0-9]+)?|\[[0-9A-Fa-f:]+\](?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_MAX_NAME = 255


@dataclass(frozen=True)
class ImageRef:
    original: str
    registry: str          # normalized host, "docker.io" for Docker Hub
    repository: str        # path inside the registry, "library/nginx" for official images
    tag: str | None        # "latest" when neither tag nor digest is given
    digest: str | None
    problem: str | None    # why the runtime would reject the reference (InvalidImageName)

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def is_docker_hub_library(self) -> bool:
        return self.registry == DOCKER_HUB and self.repository.startswith("library/")

    @property
    def name(self) -> str:
        """Fully qualified name without tag/digest, as containerd prints it."""
        return f"{self.registry}/{self.repository}"

    @property
    def canonical(self) -> str:
        """Fully qualified reference: registry/repository[:tag][@digest]."""
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_image(reference: str) -> ImageRef:
    """Split `reference` into registry, repository, tag and digest; never raises (see ImageRef.problem)."""
    ref = (reference or "").strip()
    remainder, _, digest = ref.partition("@")
    first, slash, rest = remainder.partition("/")
    # distribution/reference also takes an upper-case first component for a host
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, remainder
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
    registry = normalize_host(domain)
    if registry == DOCKER_HUB and path and "/" not in path:
        path = f"library/{path}"
    problem = _problem(ref, domain, path, tag, digest or None)
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(original=reference, registry=registry, repository=path, tag=tag, digest=digest or None,
                    problem=problem)


def _problem(ref: str, domain: str, path: str, tag: str | None, digest: str | None) -> str | None:
    if not ref:
        return "empty image reference"
    if any(c.isspace() for c in ref):
        return "invalid reference format: whitespace in reference"
    if not _DOMAIN.fullmatch(domain):
        return f"invalid reference format: bad registry host {domain!r}"
    if not path:
        return "invalid reference format: no repository"
    components = path.split("/")
    if path.lower() != path and all(_COMPONENT.fullmatch(c.lower()) for c in components):
        return "invalid reference format: repository name must be lowercase"
    if not all(_COMPONENT.fullmatch(c) for c in components):
        return "invalid reference format: repository name may only contain a-z, 0-9, '.', '_', '-' and '/'"
    if len(domain) + 1 + len(path) > _MAX_NAME:
        return f"invalid reference format: repository name longer than {_MAX_NAME} characters"
    if tag is not None and not _TAG.fullmatch(tag):
        return f"invalid reference format: bad tag {tag!r}"
    if digest is not None and not _DIGEST.fullmatch(digest):
        return "invalid reference format: bad digest"
    return None
