"""Any Docker Registry HTTP API v2 (Debian's docker-registry, DigitalOcean, ECR, Harbor), over requests.

An image pull fails on the node with little more than "unauthorized"; asking the registry the same
question with the same credentials tells apart a wrong password, a read-only token, an expired token,
a missing repository and a registry that cannot be reached or trusted.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import jwt
import requests

from nasiko_nb.providers.base import ProviderError
from nasiko_nb.redact import fingerprint, scrub

PROVIDER = "registry"
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_TLS_REASON = re.compile(r"certificate verify failed: ([^(')\"]+)")
_MAX_DETAIL = 160


@dataclass(frozen=True)
class Challenge:
    """How the registry wants to be authenticated, from the WWW-Authenticate of its /v2/ answer."""

    scheme: str          # "bearer" | "basic" | "none"
    realm: str = ""
    service: str = ""


@dataclass(frozen=True)
class AccessCheck:
    """What the credentials may do on one repository, and the answer that decided it."""

    host: str
    repository: str
    authenticated: bool
    granted: frozenset[str]
    status: int
    detail: str          # one line, never a secret


class RegistryClient:
    """Reads a v2 registry with one set of credentials; every failure becomes a ProviderError."""

    def __init__(self, base_url: str, username: str = "", password: str = "", verify=True, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self._username, self._password = username, password
        self._timeout = timeout
        self._verify = verify      # passed per request: requests lets REQUESTS_CA_BUNDLE override Session.verify
        self._session = requests.Session()
        self._challenge: Challenge | None = None
        self._tokens: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url}, user {self._shown_user()})"

    def ping(self) -> Challenge:
        """The registry's authentication challenge (GET /v2/ without credentials)."""
        response = self._send("GET", self.base_url + "/v2/", "ping")
        if response.status_code == 401:
            self._challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        elif response.ok:
            self._challenge = Challenge("none")
        else:
            raise self._status_error("ping /v2/", response)
        return self._challenge

    def check_access(self, repository: str, actions=("pull", "push")) -> AccessCheck:
        """Which of `actions` the credentials get on `repository`, without changing the registry."""
        challenge = self._challenge or self.ping()
        if challenge.scheme == "bearer":
            answer = self._request_token(challenge, repository, actions)
            if isinstance(answer, requests.Response):
                return self._check(repository, False, (), answer.status_code,
                                   f"token service {urlsplit(challenge.realm).netloc} refused user "
                                   f"{self._shown_user()}: {self._server_message(answer)}")
            claims = _jwt_claims(answer)
            if claims is not None:
                granted = {action for entry in claims.get("access") or []
                           if entry.get("type") == "repository" and entry.get("name") == repository
                           for action in entry.get("actions") or []} & set(actions)
                return self._check(repository, True, granted, 200,
                                   f"token for user {self._shown_user()} grants "
                                   f"{', '.join(sorted(granted)) or 'nothing'} on {repository}")
            return self._probe(repository, actions, {"Authorization": f"Bearer {answer}"})
        return self._probe(repository, actions, self._basic_headers() if challenge.scheme == "basic" else {})

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository`, following the registry's pagination."""
        url, tags = f"{self.base_url}/v2/{repository}/tags/list", []
        while url:
            response = self._authorized("GET", url, repository, f"tags of {repository}")
            if not response.ok:
                raise self._status_error(f"tags of {repository}", response)
            tags.extend(response.json().get("tags") or [])
            next_link = response.links.get("next", {}).get("url")
            url = urljoin(url, next_link) if next_link else ""
        return tags

    def manifest_exists(self, repository: str, reference: str) -> bool:
        """Whether `repository` has a manifest for the tag or digest `reference` (what a pull resolves first)."""
        what = f"manifest {repository}:{reference}"
        response = self._authorized("HEAD", f"{self.base_url}/v2/{repository}/manifests/{reference}", repository,
                                    what, headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return False
        if not response.ok:
            raise self._status_error(what, response)
        return True

    def _check(self, repository: str, authenticated: bool, granted, status: int, detail: str) -> AccessCheck:
        return AccessCheck(host=self.host, repository=repository, authenticated=authenticated,
                           granted=frozenset(granted), status=status, detail=self._clean(detail))

    def _probe(self, repository: str, actions, headers: dict) -> AccessCheck:
        """Try each action harmlessly: list tags for pull, open and cancel an upload for push."""
        granted, outcomes, statuses = set(), [], []
        if "pull" in actions:
            response = self._send("GET", f"{self.base_url}/v2/{repository}/tags/list", f"tags of {repository}",
                                  headers=headers)
            self._raise_unless_answer(f"tags of {repository}", response)
            if response.ok or response.status_code == 404:   # 404: authorized, the repository does not exist yet
                granted.add("pull")
            statuses.append(response.status_code)
            outcomes.append(f"pull {response.status_code}"
                            + (f" {self._server_message(response)}" if not response.ok else ""))
        if "push" in actions:
            response = self._send("POST", f"{self.base_url}/v2/{repository}/blobs/uploads/",
                                  f"upload to {repository}", headers=headers)
            self._raise_unless_answer(f"upload to {repository}", response)
            statuses.append(response.status_code)
            if response.status_code == 202:
                granted.add("push")
                self._cancel_upload(response, headers)
                outcomes.append("push 202 (probe upload cancelled)")
            else:
                outcomes.append(f"push {response.status_code} {self._server_message(response)}")
        authenticated = 401 not in statuses
        status = next((s for s in statuses if s in (401, 403)), statuses[0] if statuses else 200)
        return self._check(repository, authenticated, granted, status,
                           f"user {self._shown_user()}: " + "; ".join(outcomes))

    def _cancel_upload(self, response: requests.Response, headers: dict) -> None:
        location = response.headers.get("Location")
        if not location:
            return
        cancelled = self._send("DELETE", urljoin(response.url, location), "cancel probe upload", headers=headers)
        if cancelled.status_code not in (204, 404):
            raise self._status_error("cancel probe upload", cancelled)

    def _authorized(self, method: str, url: str, repository: str, what: str, headers=None) -> requests.Response:
        """A request with the credentials the challenge asks for (a pull-scoped token for bearer)."""
        challenge = self._challenge or self.ping()
        headers = dict(headers or {})
        if challenge.scheme == "basic":
            headers.update(self._basic_headers())
        elif challenge.scheme == "bearer":
            answer = self._request_token(challenge, repository, ("pull",))
            if isinstance(answer, requests.Response):
                raise self._status_error(f"token for {repository}", answer)
            headers["Authorization"] = f"Bearer {answer}"
        response = self._send(method, url, what, headers=headers)
        self._raise_unless_answer(what, response)
        return response

    def _request_token(self, challenge: Challenge, repository: str, actions) -> str | requests.Response:
        """A bearer token for the scope, or the realm's refusal (401/403) as a response."""
        scope = f"repository:{repository}:{','.join(actions)}"
        if scope in self._tokens:
            return self._tokens[scope]
        params = {"scope": scope, **({"service": challenge.service} if challenge.service else {})}
        auth = (self._username, self._password) if self._username or self._password else None
        response = self._send("GET", challenge.realm, "token request", params=params, auth=auth)
        if response.status_code in (401, 403):
            return response
        if not response.ok:
            raise self._status_error("token request", response)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise ProviderError("provider/error", f"{PROVIDER} {self.host}: token service answered without a token")
        self._tokens[scope] = token
        return token

    def _basic_headers(self) -> dict:
        pair = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def _send(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        """One HTTP exchange; connection, TLS and timeout failures become one-line ProviderErrors."""
        where = urlsplit(url).netloc or self.host
        try:
            return self._session.request(method, url, timeout=self._timeout, verify=self._verify, **kwargs)
        except requests.exceptions.SSLError as error:
            reason = _TLS_REASON.search(str(error))
            cause = f"certificate verify failed: {reason.group(1).strip()}" if reason else "TLS handshake failed"
            raise ProviderError("provider/unreachable",
                                f"{PROVIDER} {where}: {what} failed, x509 {cause} "
                                "(give the registry's CA bundle as verify=)") from None
        except requests.exceptions.ConnectTimeout:
            raise ProviderError("provider/unreachable",
                                f"{PROVIDER} {where}: {what} could not connect within {self._timeout:g}s") from None
        except requests.exceptions.Timeout:
            raise ProviderError("provider/unavailable",
                                f"{PROVIDER} {where}: {what} got no answer within {self._timeout:g}s") from None
        except requests.exceptions.ConnectionError as error:
            cause = "connection refused" if "refused" in str(error).lower() else "connection failed"
            raise ProviderError("provider/unreachable", f"{PROVIDER} {where}: {what} failed, {cause}") from None
        except requests.exceptions.RequestException as error:
            raise ProviderError("provider/error",
                                f"{PROVIDER} {where}: {what} failed, {type(error).__name__}") from None

    def _raise_unless_answer(self, what: str, response: requests.Response) -> None:
        """Statuses that say nothing about the credentials (429, 5xx) end the check."""
        if response.status_code == 429 or response.status_code >= 500:
            raise self._status_error(what, response)

    def _status_error(self, what: str, response: requests.Response) -> ProviderError:
        error = ProviderError.from_status(f"{PROVIDER} {urlsplit(response.url).netloc or self.host}", what,
                                          response.status_code, self._server_message(response))
        return ProviderError(error.code, self._clean(str(error)), error.status)

    def _server_message(self, response: requests.Response) -> str:
        """The registry's own words for a refusal: distribution's errors[].code/message, or the body's first line."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                return " ".join(str(first.get(key)) for key in ("code", "message") if first.get(key))
        if isinstance(body, dict) and isinstance(body.get("message") or body.get("details"), str):
            return body.get("message") or body.get("details")
        lines = (response.text or "").strip().splitlines()
        return lines[0] if lines else response.reason or ""

    def _shown_user(self) -> str:
        """The user as it may be shown: DigitalOcean's user is the token itself, so it becomes a fingerprint."""
        if not self._username:
            return "(anonymous)"
        return f"(token {fingerprint(self._username)})" if self._username == self._password else self._username

    def _clean(self, text: str) -> str:
        line = " ".join(scrub(text, [self._password, self._username] if self._username == self._password
                              else [self._password]).split())
        return line if len(line) <= _MAX_DETAIL else line[:_MAX_DETAIL - 1] + "…"


def _parse_challenge(header: str) -> Challenge:
    scheme = header.strip().split(" ", 1)[0].lower()
    params = dict(_CHALLENGE_PARAM.findall(header))
    if scheme not in ("bearer", "basic"):
        return Challenge("none")
    return Challenge(scheme, realm=params.get("realm", ""), service=params.get("service", ""))


def _jwt_claims(token: str) -> dict | None:
    """The claims of a JWT without verifying it (only the registry can); None for opaque tokens."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None
