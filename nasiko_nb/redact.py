"""Masking of secret material in everything shown or recorded.

Runbooks show who and where (user, registry host, a short fingerprint), never the credential itself
nor any base64 form of it. Secrets are summarized as soon as they are read so the raw data never
travels further than this module.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

MASK = "[REDACTED]"
DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
_MIN_SECRET_LENGTH = 4   # shorter values would mask ordinary words; no real credential is that short


@dataclass(frozen=True)
class DockerAuth:
    host: str
    username: str
    fingerprint: str     # of the password/token; "" when the entry has none


@dataclass(frozen=True)
class SecretSummary:
    namespace: str
    name: str
    type: str
    keys: tuple[str, ...]
    created: str
    docker_auths: tuple[DockerAuth, ...] = ()
    problem: str | None = None     # why the docker config could not be read; never contains data
    replaced: str = ""             # when a fix last replaced its credentials in place (annotation REPLACED_AT)

    @property
    def issued(self) -> str:
        """When its credentials were written: the in-place replacement if any, else the creation."""
        return self.replaced or self.created

    def auth_for(self, host: str) -> DockerAuth | None:
        wanted = normalize_host(host)
        return next((auth for auth in self.docker_auths if auth.host == wanted), None)

    @property
    def hosts(self) -> list[str]:
        return [auth.host for auth in self.docker_auths]


# Set by the credential fixes when they replace a Secret's data in place: its creationTimestamp then no longer
# says how old the credentials are (registry tokens that expire, like ECR's 12-hour logins).
REPLACED_AT = "nasiko-nb/credentials-replaced-at"


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible name for a secret value."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def normalize_host(server: str) -> str:
    """Registry host as the container runtime matches it: no scheme, no path, lowercase, Docker Hub unified."""
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", server.strip().lower()).split("/", 1)[0]
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def _b64decode(value: str) -> bytes:
    """Decode std or urlsafe base64, padded or not; binascii.Error when it is neither."""
    text = value.strip()
    text += "=" * (-len(text) % 4)
    altchars = b"-_" if re.search(r"[-_]", text) else None
    return base64.b64decode(text, altchars=altchars, validate=True)


def summarize_secret(raw: dict) -> SecretSummary:
    """Who/where a Secret grants access to, without its values; tolerant of malformed data."""
    meta = raw.get("metadata") or {}
    data = raw.get("data") or {}
    string_data = raw.get("stringData") or {}
    secret_type = raw.get("type") or "Opaque"
    keys = tuple(sorted(set(data) | set(string_data)))
    auths: list[DockerAuth] = []
    problem = None
    config_key = {"kubernetes.io/dockerconfigjson": ".dockerconfigjson",
                  "kubernetes.io/dockercfg": ".dockercfg"}.get(secret_type)
    if config_key is None and (".dockerconfigjson" in keys or ".dockercfg" in keys):
        config_key = ".dockerconfigjson" if ".dockerconfigjson" in keys else ".dockercfg"
    if config_key:
        try:
            auths, problem = _docker_auths(config_key, data, string_data)
        except Exception:   # never let a decoding error carry the data into a traceback
            auths, problem = [], f"{config_key} could not be read"
    return SecretSummary(namespace=meta.get("namespace", ""), name=meta.get("name", ""), type=secret_type,
                         keys=keys, created=str(meta.get("creationTimestamp", "")),
                         docker_auths=tuple(auths), problem=problem,
                         replaced=str((meta.get("annotations") or {}).get(REPLACED_AT, "")))


def _docker_auths(config_key: str, data: dict, string_data: dict) -> tuple[list[DockerAuth], str | None]:
    if config_key in string_data:
        text = string_data[config_key]
    elif config_key in data:
        try:
            text = _b64decode(data[config_key] or "").decode()
        except (binascii.Error, ValueError):
            return [], f"{config_key} is not valid base64"
    else:
        return [], f"secret has no {config_key} key"
    try:
        config = json.loads(text)
    except ValueError:
        return [], f"{config_key} is not valid JSON"
    if not isinstance(config, dict):
        return [], f"{config_key} is not a JSON object"
    entries = config.get("auths") if config_key == ".dockerconfigjson" else config
    if not isinstance(entries, dict) or not entries:
        return [], f"{config_key} has no auths entries"
    auths, problems = [], []
    for server, entry in entries.items():
        host = normalize_host(server)
        if not isinstance(entry, dict):
            problems.append(f"entry for {host} is not an object")
            continue
        username, password = entry.get("username") or "", entry.get("password") or ""
        if entry.get("auth"):
            try:
                username, sep, password = _b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, ValueError):
                problems.append(f"auth of {host} is not valid base64")
                continue
            if not sep:
                problems.append(f"auth of {host} is not user:password")
                continue
        password = password or entry.get("identitytoken") or ""
        if password and username == password:  # DigitalOcean issues <token>:<token>: the user IS the secret
            username = f"(token {fingerprint(password)})"
        auths.append(DockerAuth(host=host, username=username, fingerprint=fingerprint(password) if password else ""))
    return auths, "; ".join(problems) or None


def _base64_forms(value: str) -> set[str]:
    raw = value.encode()
    forms = set()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
    return forms


_JSON_SECRET_FIELD = re.compile(
    r"""(?P<head>["'](?:auth|password|token|identitytoken|registrytoken|access_token|refresh_token|"""
    r"""secret|\.dockerconfigjson|\.dockercfg)["']\s*:\s*["'])(?P<value>[^"']*)(?P<tail>["'])""",
    re.IGNORECASE)
_YAML_DOCKERCONFIG = re.compile(r"(?P<head>\.docker(?:configjson|cfg)\s*:\s*)(?P<value>[A-Za-z0-9+/=_-]{8,})")
_AUTHORIZATION = re.compile(r"(?P<head>\bAuthorization\s*[:=]\s*(?:Bearer|Basic|Token)\s+)(?P<value>[^\s\"',;]+)",
                            re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/-]{8,}=*)")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:)(?P<value>[^@\s/'\"]+)(?P<tail>@)",
                           re.IGNORECASE)
_CLI_PASSWORD = re.compile(r"(?P<head>--(?:password|token|registry-token)[= ])(?P<value>\S+)", re.IGNORECASE)
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with known secret values, their base64 forms and credential-shaped fields masked."""
    if not text:
        return text
    values = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
    for value in values:
        text = text.replace(value, MASK)
        for form in sorted(_base64_forms(value), key=len, reverse=True):
            text = text.replace(form, MASK)
    text = _JSON_SECRET_FIELD.sub(lambda m: m["head"] + MASK + m["tail"], text)
    text = _YAML_DOCKERCONFIG.sub(lambda m: m["head"] + MASK, text)
    text = _AUTHORIZATION.sub(lambda m: m["head"] + MASK, text)
    text = _BEARER.sub(lambda m: m["head"] + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], text)
    text = _CLI_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _BASE64_TOKEN.sub(lambda m: _mask_encoded(m.group(0), values), text)


def _mask_encoded(token: str, values: list[str], depth: int = 0) -> str:
    """Mask a base64 token whose decoded form holds a secret (e.g. base64 of "user:secret" or a docker config)."""
    try:
        decoded = _b64decode(token).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return token
    if any(value in decoded for value in values) or '"auths"' in decoded or re.search(r'"auth"\s*:', decoded):
        return MASK
    if depth < 2 and any(_mask_encoded(inner, values, depth + 1) == MASK
                         for inner in _BASE64_TOKEN.findall(decoded)):
        return MASK
    return token


_SECRET_KEYS = {"auth", "password", "token", "identitytoken", "registrytoken", "access_token", "refresh_token",
                "secret", ".dockerconfigjson", ".dockercfg", "authorization"}


def scrub_obj(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of nested dicts/lists with every string scrubbed and credential-named fields masked.

    The `data`/`stringData` values of Secret objects are masked whatever their keys.
    """
    values = tuple(secrets)
    if isinstance(obj, dict):
        is_secret = obj.get("kind") == "Secret"
        result = {}
        for key, value in obj.items():
            if is_secret and key in ("data", "stringData") and isinstance(value, dict):
                result[key] = {name: MASK for name in value}
            elif isinstance(key, str) and key.lower() in _SECRET_KEYS and isinstance(value, (str, bytes)):
                result[key] = MASK
            else:
                result[key] = scrub_obj(value, values)
        return result
    if isinstance(obj, (list, tuple)):
        return type(obj)(scrub_obj(item, values) for item in obj)
    if isinstance(obj, str):
        return scrub(obj, values)
    return obj

