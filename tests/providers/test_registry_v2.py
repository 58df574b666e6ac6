"""RegistryClient against Debian's real docker-registry (distribution 2.8), with token and htpasswd auth."""
import base64
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from nasiko_nb.providers.base import ProviderError
from nasiko_nb.providers.registry_v2 import AccessCheck, Challenge, RegistryClient
from nasiko_nb.sim.registry_tokens import parse_scope
from nasiko_nb.sim.tls import make_certificate
from tests.servers import (DOCKER_REGISTRY, SERVICE, TokenUser, free_port, push_image, start_docker_registry,
                           start_token_service)

if not DOCKER_REGISTRY.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{DOCKER_REGISTRY} is missing (apt-get install docker-registry)", pytrace=False)
    pytest.skip(f"{DOCKER_REGISTRY} is not installed", allow_module_level=True)

REPOSITORY = "nasiko-images/agent"
PASSWORDS = {"builder": "Builder-Pw-71c2e9", "reader": "Reader-Pw-4ab8d0", "expired": "Expired-Pw-93fe11",
             "revoked": "Revoked-Pw-0d5c77", "admin": "Admin-Pw-e41a2b"}


def assert_no_secret(text: str):
    for password in PASSWORDS.values():
        assert password not in text
        for user in PASSWORDS:
            pair = f"{user}:{password}".encode()
            assert base64.b64encode(pair).decode().rstrip("=") not in text
        assert base64.b64encode(password.encode()).decode().rstrip("=") not in text


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("token-registry")
    certificate = make_certificate(tmp / "tls")
    users = {"builder": TokenUser(PASSWORDS["builder"]),
             "reader": TokenUser(PASSWORDS["reader"], actions=frozenset({"pull"})),
             "expired": TokenUser(PASSWORDS["expired"], expired=True),
             "revoked": TokenUser(PASSWORDS["revoked"], revoked=True)}
    tokens = start_token_service(certificate, users)
    try:
        registry = start_docker_registry(tmp, auth="token", token_realm=tokens.url, token_certificate=certificate,
                                         certificate=certificate)
        try:
            admin = tokens.issuer.issue("admin", parse_scope(f"repository:{REPOSITORY}:pull,push"))["token"]
            yield registry, tokens, push_image(registry, REPOSITORY, "v1", f"Bearer {admin}")
        finally:
            registry.stop()
    finally:
        tokens.stop()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("basic-registry")
    registry = start_docker_registry(tmp, auth="htpasswd", users={"admin": PASSWORDS["admin"]})
    pair = base64.b64encode(f"admin:{PASSWORDS['admin']}".encode()).decode()
    try:
        push_image(registry, REPOSITORY, "v1", f"Basic {pair}")
        push_image(registry, REPOSITORY, "v2", f"Basic {pair}")
        yield registry
    finally:
        registry.stop()


def token_client(token_registry, user, password=None, **kwargs):
    registry, _, _ = token_registry
    return RegistryClient(registry.url, user, PASSWORDS[user] if password is None else password,
                          verify=str(registry.ca_file), **kwargs)


# --- token auth -------------------------------------------------------------------------------------------------

def test_ping_reads_the_bearer_challenge(token_registry):
    registry, tokens, _ = token_registry
    assert RegistryClient(registry.url, verify=str(registry.ca_file)).ping() == \
        Challenge("bearer", realm=tokens.url, service=SERVICE)


def test_token_credentials_give_distinguishable_access_checks(token_registry):
    registry, _, _ = token_registry
    host = registry.url.removeprefix("https://")
    checks = {case: token_client(token_registry, user, password).check_access(REPOSITORY)
              for case, user, password in [("good", "builder", None), ("wrong", "builder", "not-the-password"),
                                           ("read-only", "reader", None), ("expired", "expired", None),
                                           ("revoked", "revoked", None)]}
    assert checks["good"] == AccessCheck(host, REPOSITORY, True, frozenset({"pull", "push"}), 200,
                                         checks["good"].detail)
    assert (checks["read-only"].authenticated, checks["read-only"].granted, checks["read-only"].status) == \
        (True, frozenset({"pull"}), 200)
    for case in ("wrong", "expired", "revoked"):
        assert (checks[case].authenticated, checks[case].granted, checks[case].status) == (False, frozenset(), 401)
    assert "invalid username or password" in checks["wrong"].detail
    assert "credentials expired" in checks["expired"].detail
    assert "credentials revoked" in checks["revoked"].detail
    assert "grants pull, push" in checks["good"].detail and "grants pull on" in checks["read-only"].detail
    assert len({check.detail for check in checks.values()}) == len(checks)
    for check in checks.values():
        assert "\n" not in check.detail
        assert_no_secret(repr(check))


def test_token_access_covers_only_the_requested_repository_and_actions(token_registry):
    check = token_client(token_registry, "builder").check_access("nasiko-images/other", actions=("pull",))
    assert (check.authenticated, check.granted) == (True, frozenset({"pull"}))
    _, tokens, _ = token_registry
    assert tokens.requests_seen[-1] == "repository:nasiko-images/other:pull"


def test_tags_and_manifest_with_a_token(token_registry):
    _, _, digest = token_registry
    client = token_client(token_registry, "reader")
    assert client.tags(REPOSITORY) == ["v1"]
    assert client.manifest_exists(REPOSITORY, "v1")
    assert client.manifest_exists(REPOSITORY, digest)
    assert not client.manifest_exists(REPOSITORY, "v9")


def test_tags_with_refused_credentials_is_unauthorized(token_registry):
    with pytest.raises(ProviderError) as raised:
        token_client(token_registry, "expired").tags(REPOSITORY)
    assert raised.value.code == "provider/unauthorized"
    assert "credentials expired" in str(raised.value)
    assert_no_secret(str(raised.value))


def test_tags_of_a_missing_repository_is_not_found(token_registry):
    with pytest.raises(ProviderError) as raised:
        token_client(token_registry, "builder").tags("nasiko-images/absent")
    assert raised.value.code == "provider/not-found"
    assert "NAME_UNKNOWN" in str(raised.value)


def test_tls_without_the_ca_is_one_line_x509_error(token_registry):
    registry, _, _ = token_registry
    client = RegistryClient(registry.url, "builder", PASSWORDS["builder"])
    with pytest.raises(ProviderError) as raised:
        client.check_access(REPOSITORY)
    message = str(raised.value)
    assert raised.value.code == "provider/unreachable"
    assert "x509" in message and "certificate" in message and "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# --- htpasswd auth ----------------------------------------------------------------------------------------------

def test_basic_good_credentials_probe_pull_and_push(basic_registry):
    client = RegistryClient(basic_registry.url, "admin", PASSWORDS["admin"], verify=str(basic_registry.ca_file))
    assert client.ping() == Challenge("basic", realm="nasiko-registry")
    other_upload = requests.post(f"{basic_registry.url}/v2/{REPOSITORY}/blobs/uploads/",
                                 auth=("admin", PASSWORDS["admin"]), verify=str(basic_registry.ca_file), timeout=5)
    check = client.check_access(REPOSITORY)
    assert (check.authenticated, check.granted, check.status) == (True, frozenset({"pull", "push"}), 200)
    assert "probe upload cancelled" in check.detail
    assert basic_registry.uploads(REPOSITORY) == [other_upload.headers["Docker-Upload-Uuid"]]
    assert_no_secret(repr(check))


def test_basic_wrong_password_is_not_authenticated(basic_registry):
    client = RegistryClient(basic_registry.url, "admin", "wrong-password", verify=str(basic_registry.ca_file))
    check = client.check_access(REPOSITORY)
    assert (check.authenticated, check.granted, check.status) == (False, frozenset(), 401)
    assert "UNAUTHORIZED" in check.detail
    assert "wrong-password" not in repr(check)


def test_push_probe_leaves_no_upload_in_a_new_repository(basic_registry):
    client = RegistryClient(basic_registry.url, "admin", PASSWORDS["admin"], verify=str(basic_registry.ca_file))
    check = client.check_access("nasiko-images/fresh")
    assert check.granted == frozenset({"pull", "push"})    # 404 on tags: authorized, nothing pushed yet
    assert basic_registry.uploads("nasiko-images/fresh") == []


def test_basic_tags_and_manifests(basic_registry):
    client = RegistryClient(basic_registry.url, "admin", PASSWORDS["admin"], verify=str(basic_registry.ca_file))
    assert sorted(client.tags(REPOSITORY)) == ["v1", "v2"]
    assert client.manifest_exists(REPOSITORY, "v2")
    assert not client.manifest_exists(REPOSITORY, "latest")


def test_basic_wrong_password_on_tags_is_unauthorized_without_secret(basic_registry):
    client = RegistryClient(basic_registry.url, "admin", "Wrong-Pw-5f2a1c", verify=str(basic_registry.ca_file))
    with pytest.raises(ProviderError) as raised:
        client.tags(REPOSITORY)
    assert raised.value.code == "provider/unauthorized" and raised.value.status == 401
    assert "Wrong-Pw-5f2a1c" not in str(raised.value) and "Wrong-Pw-5f2a1c" not in repr(client)


# --- failures without a registry --------------------------------------------------------------------------------

def test_refused_connection_is_unreachable():
    client = RegistryClient(f"https://127.0.0.1:{free_port()}", "admin", PASSWORDS["admin"], timeout=2)
    with pytest.raises(ProviderError) as raised:
        client.check_access(REPOSITORY)
    assert raised.value.code == "provider/unreachable"
    assert "connection refused" in str(raised.value)
    assert_no_secret(str(raised.value))


@pytest.fixture
def silent_server():
    """Accepts connections and never answers, like a registry behind a stuck load balancer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_timeout_is_one_line_error(silent_server):
    client = RegistryClient(silent_server, "admin", PASSWORDS["admin"], timeout=0.3)
    with pytest.raises(ProviderError) as raised:
        client.ping()
    assert raised.value.code == "provider/unavailable"
    assert "no answer within 0.3s" in str(raised.value)


@pytest.fixture
def rate_limited_server():
    """Answers every request 429 like Docker Hub past its pull limit."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}'
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rate_limit_is_its_own_code(rate_limited_server):
    with pytest.raises(ProviderError) as raised:
        RegistryClient(rate_limited_server, "admin", PASSWORDS["admin"]).ping()
    assert (raised.value.code, raised.value.status) == ("provider/rate-limited", 429)
    assert "TOOMANYREQUESTS" in str(raised.value)


def test_real_registry_answers_become_distinct_cause_codes(token_registry):
    """good, wrong, read-only and expired credentials each end in their own code through the detector."""
    from datetime import datetime, timezone

    from nasiko_nb.checks import run_checks
    from nasiko_nb.snapshot import Snapshot

    created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    cases = [("good", "builder", None), ("wrong", "builder", "not-the-password"), ("read-only", "reader", None),
             ("expired", "expired", None)]
    secrets = [{"kind": "Secret", "type": "Opaque", "metadata": {"namespace": "nasiko-agents", "name": case,
                                                                  "creationTimestamp": created}} for case, _, _ in cases]
    access = []
    for case, user, password in cases:
        check = token_client(token_registry, user, password).check_access(REPOSITORY)
        access.append({"namespace": "nasiko-agents", "secret": case, "host": check.host, "repository": REPOSITORY,
                       "authenticated": check.authenticated, "granted": sorted(check.granted),
                       "status": check.status, "detail": check.detail})
    findings = run_checks(Snapshot.from_objects(secrets), {"access": access}, families=["registry-auth"])
    assert sorted((f.resource, f.code) for f in findings) == [
        ("Secret nasiko-agents/expired", "registry/expired-token"),
        ("Secret nasiko-agents/read-only", "registry/read-only-token"),
        ("Secret nasiko-agents/wrong", "registry/invalid-token")]
