"""Canary credentials for the leak tests: realistic values planted in a cluster, a kubeconfig and the environment,
searched for afterwards in plain, base64 (both alphabets, with and without padding) and URL-encoded form."""
import base64
import json
import urllib.parse

from nasiko_nb.sim.platform import PLATFORM_REGISTRY

CANARY_USER = "canary-robot"
CANARY_PASSWORD = "Canary-Pa55w0rd/with+symbols=1"
CANARY_DO_TOKEN = "dop_v1_" + "c4a7e1" * 10 + "beef"
CANARY_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYCANARY00001"
CANARIES = (CANARY_PASSWORD, CANARY_DO_TOKEN, CANARY_AWS_SECRET, f"{CANARY_USER}:{CANARY_PASSWORD}")


def canary_forms(value: str) -> set[str]:
    encoded = base64.b64encode(value.encode()).decode()
    return {value, encoded, encoded.rstrip("="), base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
            urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}


def bearer_token(name: str) -> str:
    """A kubeconfig bearer token that looks like a service-account JWT."""
    return f"eyJhbGciOiJSUzI1NiJ9.canary-{name}-bearer.c2lnbmF0dXJl"


def canaries_in(text: str, extra=()) -> list[str]:
    """The canary forms found in ``text`` (shortened, so a failing test does not print them whole)."""
    return [form[:8] + "..." for value in (*CANARIES, *extra) for form in canary_forms(value) if form in text]


def encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plant_canaries(server) -> None:
    """A registry secret for the platform's registry and a provider-credentials secret, read by the triage."""
    host = PLATFORM_REGISTRY.split("/")[0]
    config = {"auths": {host: {"username": CANARY_USER, "password": CANARY_PASSWORD,
                               "auth": encode(f"{CANARY_USER}:{CANARY_PASSWORD}")}}}
    server.store.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                         "metadata": {"name": "canary-regcred", "namespace": "nasiko-agents"},
                         "data": {".dockerconfigjson": encode(json.dumps(config))}})
    server.store.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": "canary-provider", "namespace": "nasiko"},
                         "data": {"DIGITALOCEAN_TOKEN": encode(CANARY_DO_TOKEN),
                                  "AWS_SECRET_ACCESS_KEY": encode(CANARY_AWS_SECRET)}})
