"""A running Kubernetes API emulator: ThreadingHTTPServer on 127.0.0.1 in a daemon thread."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from nasiko_nb.sim.apiserver import KubeApiHandler
from nasiko_nb.sim.digitalocean import REGISTRY_HOST, DigitalOceanServer
from nasiko_nb.sim.store import Store

if TYPE_CHECKING:
    from nasiko_nb.sim.aws import AwsServer
    from nasiko_nb.sim.kong import KongServer


@dataclass
class Fault:
    """An injected failure for requests whose method and path match: an error ``status`` with a Status body
    (and a ``Retry-After`` header if given), an answer after ``delay_s`` (status 0: the real answer, late), or a
    connection closed without an answer (``drop``). ``times`` makes it transient: only that many requests fail."""

    status: int
    path: str            # regular expression searched in the URL path
    method: str = "GET"
    message: str = "injected fault"
    times: int | None = None
    delay_s: float = 0.0
    drop: bool = False
    retry_after: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.search(self.path, path) is not None

    def take(self) -> bool:
        """Count one request against ``times``; False once the fault is used up."""
        with self._lock:
            if self.times is None:
                return True
            if self.times <= 0:
                return False
            self.times -= 1
            return True


class _EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, store: Store):
        super().__init__(address, KubeApiHandler)
        self.store = store
        self.stopping = threading.Event()
        self.faults: list[Fault] = []


class SimServer:
    """A started emulator; use as a context manager or call stop().

    A scenario's server also serves the fake DigitalOcean behind the cluster (``digitalocean``) or its AWS
    (``aws``), and the platform's Kong gateway (``kong``: Admin API and proxy), all stopped with it.
    """

    digitalocean: DigitalOceanServer | None = None
    aws: "AwsServer | None" = None       # an ECR scenario's moto server
    kong: "KongServer | None" = None     # a scenario's Kong (Admin API and proxy)
    scenario: str | None = None          # the scenario served (None: a snapshot or a bare store)

    def __init__(self, store: Store, port: int = 0):
        self.store = store
        self._digitalocean_token = ""
        self._registry = ""
        self._secret_values: tuple[str, ...] = ()
        self._httpd = _EmulatorHTTPServer(("127.0.0.1", port), store)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sim-apiserver-{self.port}", daemon=True)
        self._thread.start()

    def write_kubeconfig(self, path, context: str = "nasiko-sim", token: str = "nasiko-sim-token") -> Path:
        """An ordinary kubeconfig (token user) pointing at this server; kubectl and the client accept any token."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": f"{context}-user", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-user",
                                                       "namespace": "default"}}],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def attach_digitalocean(self, digitalocean: DigitalOceanServer, api_token: str, platform_registry: str) -> None:
        """Serve ``digitalocean`` with this cluster: ``api_token`` is the registry owner's DIGITALOCEAN_TOKEN."""
        self.digitalocean, self._digitalocean_token, self._registry = digitalocean, api_token, platform_registry

    def attach_aws(self, aws: "AwsServer") -> None:
        """Serve ``aws`` (an ECR scenario's moto server) with this cluster; stopped with it."""
        self.aws = aws

    def attach_kong(self, kong: "KongServer") -> None:
        """Serve ``kong`` (the scenario's gateway) with this cluster; stopped with it."""
        self.kong = kong

    def plant_secrets(self, values) -> None:
        """Record the passwords and tokens this server's Secrets hold (for leak checks)."""
        self._secret_values = tuple(values)

    def secret_values(self) -> tuple[str, ...]:
        return self._secret_values

    def environment(self) -> dict[str, str]:
        """The variables a runbook kernel needs to reach this cluster's DigitalOcean or AWS and its Kong
        (NASIKO_KONG_ADMIN_URL, NASIKO_GATEWAY_URL); empty without any."""
        env: dict[str, str] = {}
        if self.aws is not None:
            env.update(self.aws.environment())
        elif self.digitalocean is not None:
            env.update({"DIGITALOCEAN_TOKEN": self._digitalocean_token, "NASIKO_DO_API_URL": self.digitalocean.api_url,
                        "NASIKO_CA_BUNDLE": str(self.digitalocean.ca_file),
                        "NASIKO_REGISTRY_ENDPOINTS": f"{REGISTRY_HOST}={self.digitalocean.registry_url}",
                        "NASIKO_PLATFORM_REGISTRY": self._registry})
        if self.kong is not None:
            env.update(self.kong.environment())
        return env

    def inject(self, fault: Fault) -> None:
        """Make matching requests fail from now on (reliability tests, RBAC demos)."""
        self._httpd.faults.append(fault)

    def stop(self) -> None:
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        if self.digitalocean is not None:
            self.digitalocean.stop()
        if self.aws is not None:
            self.aws.stop()
        if self.kong is not None:
            self.kong.stop()

    def __enter__(self) -> "SimServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_server(store: Store, port: int = 0) -> SimServer:
    """Serve store on 127.0.0.1 (port 0 picks a free port) until stop()."""
    return SimServer(store, port)
