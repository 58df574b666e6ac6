"""Test-only starters for real registry software: Debian's docker-registry (distribution 2.8) and a token service.

The registry runs as a child process on 127.0.0.1 with TLS, filesystem storage in a temporary
directory, and either htpasswd (bcrypt) or token authentication; the token service is a small HTTPS
server issuing tokens with nasiko_nb.sim.registry_tokens.TokenIssuer from a table of test users.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import bcrypt
import requests

from nasiko_nb.sim.registry_tokens import TokenIssuer, parse_scope
from nasiko_nb.sim.tls import Certificate, make_certificate

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
SERVICE = "nasiko-registry"
ISSUER = "nasiko-token"
_STARTUP_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class TokenUser:
    """A row of the token service's credentials table."""

    password: str
    actions: frozenset[str] = frozenset({"pull", "push"})
    expired: bool = False
    revoked: bool = False


@dataclass
class TokenService:
    url: str                     # the realm: https://127.0.0.1:<port>/token
    certificate: Certificate     # serves TLS and signs tokens
    issuer: TokenIssuer
    users: dict[str, TokenUser]
    requests_seen: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_token_service(certificate: Certificate, users: dict[str, TokenUser]) -> TokenService:
    """A token realm: Basic credentials in, a token with the user's allowed actions per requested scope out."""
    service = TokenService(url="", certificate=certificate, issuer=TokenIssuer(certificate, ISSUER, SERVICE),
                           users=users)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            query = parse_qs(urlsplit(self.path).query)
            service.requests_seen.append(" ".join(query.get("scope", [])))
            name, password = _basic_credentials(self.headers.get("Authorization", ""))
            user = service.users.get(name)
            if user is None or not secrets.compare_digest(user.password, password):
                return self._refuse("invalid username or password")
            if user.revoked:
                return self._refuse("credentials revoked")
            if user.expired:
                return self._refuse("credentials expired")
            access = [{**entry, "actions": [a for a in entry["actions"] if a in user.actions]}
                      for entry in parse_scope(" ".join(query.get("scope", []))) if entry["type"] == "repository"]
            self._answer(200, service.issuer.issue(name, access))

        def _refuse(self, message: str):
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]},
                         {"WWW-Authenticate": 'Basic realm="nasiko-token"'})

        def _answer(self, status: int, body: dict, headers=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                               **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_path, certificate.key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service._server = server
    service.url = f"https://127.0.0.1:{server.server_address[1]}/token"
    return service


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        name, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return "", ""
    return name, password


@dataclass
class RegistryServer:
    url: str
    ca_file: Path
    storage: Path
    log_file: Path
    process: subprocess.Popen

    def uploads(self, repository: str) -> list[str]:
        """Upload sessions the registry could still resume for `repository` (what a push probe must not leave).

        distribution resumes an upload only while its `startedat` file exists; cancelling removes it (and the
        data) but keeps an empty hash-state folder until the registry's upload purge.
        """
        folder = self.storage / "docker/registry/v2/repositories" / repository / "_uploads"
        return sorted(p.parent.name for p in folder.glob("*/startedat"))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_docker_registry(tmp: Path, auth: str = "htpasswd", *, users: dict[str, str] | None = None,
                          token_realm: str = "", token_certificate: Certificate | None = None,
                          certificate: Certificate | None = None) -> RegistryServer:
    """Run /usr/bin/docker-registry on a free 127.0.0.1 port over TLS; waits until /v2/ answers.

    auth="htpasswd": `users` name -> password, stored bcrypt-hashed. auth="token": tokens from `token_realm`
    signed with `token_certificate` (issuer/service as in start_token_service). `certificate` serves TLS
    (default: a fresh one, returned as ca_file).
    """
    tmp = Path(tmp)
    certificate = certificate or make_certificate(tmp / "tls", common_name="registry")
    storage = tmp / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    if auth == "htpasswd":
        htpasswd = tmp / "htpasswd"
        htpasswd.write_text("".join(f"{name}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"
                                    for name, password in (users or {}).items()))
        auth_config = {"htpasswd": {"realm": "nasiko-registry", "path": str(htpasswd)}}
    elif auth == "token":
        auth_config = {"token": {"realm": token_realm, "service": SERVICE, "issuer": ISSUER,
                                 "rootcertbundle": str(token_certificate.cert_path)}}
    else:
        raise ValueError(f"unknown registry auth {auth!r}")
    port = free_port()
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16),
                 "tls": {"certificate": str(certificate.cert_path), "key": str(certificate.key_path)}},
        "auth": auth_config,
    }
    config_file = tmp / "config.yml"
    config_file.write_text(json.dumps(config, indent=1))   # JSON is YAML
    log_file = tmp / "registry.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen([str(DOCKER_REGISTRY), "serve", str(config_file)], stdout=log,
                                   stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "/usr/bin")})
    server = RegistryServer(url=f"https://127.0.0.1:{port}", ca_file=certificate.cert_path, storage=storage,
                            log_file=log_file, process=process)
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log_file.read_text()[-2000:]}")
        try:
            requests.get(server.url + "/v2/", verify=str(server.ca_file), timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"docker-registry did not answer within {_STARTUP_S}s: {log_file.read_text()[-2000:]}")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tiny_layer() -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it) holding one small file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        content = b"nasiko test image\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = buffer.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, mtime=0)


def push_image(server: RegistryServer, repository: str, tag: str, authorization: str) -> str:
    """Push a config blob, one layer blob and a schema2 manifest through the HTTP API; returns the manifest digest."""
    session = requests.Session()
    session.headers["Authorization"] = authorization
    ca = str(server.ca_file)   # per request: REQUESTS_CA_BUNDLE would override Session.verify
    tar_bytes, layer = _tiny_layer()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [_sha256(tar_bytes)]}}).encode()
    for blob in (config, layer):
        started = session.post(f"{server.url}/v2/{repository}/blobs/uploads/", verify=ca, timeout=10)
        started.raise_for_status()
        finished = session.put(urljoin(started.url, started.headers["Location"]), params={"digest": _sha256(blob)},
                               data=blob, headers={"Content-Type": "application/octet-stream"}, verify=ca,
                               timeout=10)
        finished.raise_for_status()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": _sha256(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": _sha256(layer)}],
    }).encode()
    stored = session.put(f"{server.url}/v2/{repository}/manifests/{tag}", data=manifest,
                         headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
                         verify=ca, timeout=10)
    stored.raise_for_status()
    return stored.headers["Docker-Content-Digest"]
