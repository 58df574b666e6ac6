"""DigitalOceanProvider against the simulated DigitalOcean: every operation, and every failure as a provider/* code."""
import base64
import socket
import threading
from datetime import datetime, timedelta, timezone

import pytest
from openapi_core import OpenAPI

from nasiko_nb.providers.base import ProviderError
from nasiko_nb.providers.digitalocean import REGISTRY_HOST, DigitalOceanProvider
from nasiko_nb.sim.digitalocean import DOWorld, load_spec, start_digitalocean
from tests.sim.test_digitalocean import validate

OPS, EMPTY, PRO = "ops@nasiko.dev", "empty@example.com", "pro@example.com"
REPO = "agents/translator"


@pytest.fixture(scope="module")
def world():
    world = DOWorld()
    world.add_account(OPS)
    world.add_account(EMPTY)
    world.add_account(PRO, tier="professional")
    world.create_registry(OPS, "nasiko-images")
    world.create_registry(PRO, "pro-one")
    world.create_registry(PRO, "pro-two", several=True)
    world.push("nasiko-images", REPO, "v1", 1000, updated=datetime(2026, 1, 1, tzinfo=timezone.utc))
    world.push("nasiko-images", REPO, "v2", 2000, updated=datetime(2026, 2, 1, tzinfo=timezone.utc))
    world.push("nasiko-images", "agents/summarizer", "latest", 500)
    return world


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    server = start_digitalocean(world, tmp_path_factory.mktemp("do"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def contract():
    return OpenAPI.from_dict(load_spec())


@pytest.fixture(autouse=True)
def every_answer_follows_the_contract(server, contract):
    start = len(server.exchanges)
    yield
    for exchange in list(server.exchanges)[start:]:
        validate(contract, exchange)


@pytest.fixture
def secrets_seen(world):
    """Every token value the world has issued, to look for in messages and reprs."""
    return lambda: [token for token in world.tokens]


def provider(server, token, **kwargs):
    return DigitalOceanProvider(token=token, endpoint=server.api_url, verify=server.ca_file, retries=0, **kwargs)


@pytest.fixture(scope="module")
def ops(server, world):
    return provider(server, world.api_token(OPS))


def test_account_and_registry(ops, world):
    account = ops.account()
    assert (account.provider, account.id, account.uuid, account.status) == (
        "digitalocean", OPS, world.accounts[OPS].uuid, "active")
    registry = ops.registry()
    assert (registry.name, registry.host, registry.region, registry.storage_bytes) == (
        "nasiko-images", REGISTRY_HOST, "fra1", 3500)
    assert registry.created == world.accounts[OPS].registry.created.replace(microsecond=0)


def test_repositories_follow_pages(ops):
    ops.page_size = 1
    try:
        repositories = {r.name: r for r in ops.repositories()}
    finally:
        ops.page_size = DigitalOceanProvider.page_size
    assert set(repositories) == {REPO, "agents/summarizer"}
    translator = repositories[REPO]
    assert translator.tag_count == 2 and translator.size_bytes == 2000
    assert translator.updated == datetime(2026, 2, 1, tzinfo=timezone.utc)


def test_tags(ops, world):
    tags = ops.tags(REPO)
    digests = {m.tags[0]: m.digest for m in world.find_registry("nasiko-images").repositories[REPO]}
    assert [(t.tag, t.size_bytes, t.digest) for t in tags] == [("v2", 2000, digests["v2"]), ("v1", 1000, digests["v1"])]


def test_read_only_credentials_without_expiry(ops, world):
    credential = ops.docker_credentials(read_write=False)
    assert credential.host == REGISTRY_HOST and credential.username == credential.password
    assert credential.read_write is False and credential.expires_at is None
    token = world.tokens[credential.password]
    assert token.kind == "registry" and token.read_write is False and token.expires_at is None
    assert credential.password not in repr(credential) and credential.password not in credential.summary()


def test_read_write_credentials_with_expiry(ops, world):
    credential = ops.docker_credentials(read_write=True, expiry_seconds=1800)
    token = world.tokens[credential.password]
    assert token.read_write is True and credential.read_write is True
    assert abs((credential.expires_at - token.expires_at).total_seconds()) < 5
    assert credential.expires_at > datetime.now(timezone.utc) + timedelta(minutes=29)
    auth = base64.b64encode(f"{credential.password}:{credential.password}".encode()).decode()
    assert auth in credential.dockerconfigjson()


def test_credentials_open_the_registry_with_their_access(server, ops):
    registry_v2 = pytest.importorskip("nasiko_nb.providers.registry_v2")
    for read_write, expected in ((False, {"pull"}), (True, {"pull", "push"})):
        credential = ops.docker_credentials(read_write=read_write, expiry_seconds=600)
        client = registry_v2.RegistryClient(server.registry_url, credential.username, credential.password,
                                            verify=server.ca_file)
        check = client.check_access(f"nasiko-images/{REPO}")
        assert check.authenticated and set(check.granted) == expected


def test_registry_lifecycle_and_the_one_registry_rule(server, world):
    world.add_account("new@example.com")
    fresh = provider(server, world.api_token("new@example.com"))
    assert fresh.registry() is None
    with pytest.raises(ProviderError) as none:
        fresh.repositories()
    assert none.value.code == "provider/not-found"
    created = fresh.create_registry("new-images", region="ams3")
    assert (created.name, created.region) == ("new-images", "ams3") and fresh.registry().name == "new-images"
    with pytest.raises(ProviderError) as second:
        fresh.create_registry("new-images-2")
    assert (second.value.code, second.value.status) == ("provider/error", 422)
    assert "already has a registry" in str(second.value)
    fresh.delete_registry("new-images")
    assert fresh.registry() is None
    with pytest.raises(ProviderError) as taken:
        fresh.create_registry("nasiko-images")
    assert taken.value.status == 409 and "name already exists" in str(taken.value)


def test_several_registries_are_reported_not_guessed(server, world):
    pro = provider(server, world.api_token(PRO))
    with pytest.raises(ProviderError) as several:
        pro.registry()
    assert several.value.status == 412 and several.value.code == "provider/error"
    assert "multiple registries" in str(several.value) and "\n" not in str(several.value)


def test_deletions(server, world):
    world.add_account("cleaner@example.com")
    world.create_registry("cleaner@example.com", "cleaner")
    kept = world.push("cleaner", "web", "v1", 10)
    world.push("cleaner", "web", "v2", 20)
    world.push("cleaner", "old", "v1", 30)
    cleaner = provider(server, world.api_token("cleaner@example.com"))
    cleaner.delete_tag("web", "v2")
    assert [t.tag for t in cleaner.tags("web")] == ["v1"]
    untagged = next(m for m in world.find_registry("cleaner").repositories["web"] if not m.tags)
    cleaner.delete_manifest("web", untagged.digest)
    assert [m.digest for m in world.find_registry("cleaner").repositories["web"]] == [kept.digest]
    cleaner.delete_repository("old")
    assert [r.name for r in cleaner.repositories()] == ["web"]
    with pytest.raises(ProviderError) as missing:
        cleaner.delete_tag("web", "v9")
    assert missing.value.code == "provider/not-found"


@pytest.mark.parametrize("spoil", ["unknown", "revoked", "expired"])
def test_unusable_api_token_is_unauthorized(server, world, spoil):
    token = "dop_v1_" + "a" * 64
    if spoil != "unknown":
        token = world.api_token(OPS)
        (world.revoke if spoil == "revoked" else world.expire)(token)
    broken = provider(server, token)
    with pytest.raises(ProviderError) as refused:
        broken.account()
    assert (refused.value.code, refused.value.status) == ("provider/unauthorized", 401)
    assert str(refused.value) == "digitalocean: account lookup answered 401: unauthorized: Unable to authenticate you"
    assert token not in str(refused.value) + repr(refused.value) + repr(broken)


def test_unknown_repository_is_not_found(ops):
    with pytest.raises(ProviderError) as missing:
        ops.tags("agents/nope")
    assert (missing.value.code, missing.value.status) == ("provider/not-found", 404)


@pytest.mark.parametrize("status, code", [(429, "provider/rate-limited"), (500, "provider/unavailable"),
                                          (503, "provider/unavailable")])
def test_server_refusals(ops, world, status, code):
    world.fail_next(status)
    with pytest.raises(ProviderError) as refused:
        ops.account()
    assert (refused.value.code, refused.value.status) == (code, status)
    assert ops.account().id == OPS


def test_a_rate_limit_is_retried_when_retries_are_allowed(server, world):
    patient = DigitalOceanProvider(token=world.api_token(OPS), endpoint=server.api_url, verify=server.ca_file,
                                   retries=1)
    world.fail_next(429)
    assert patient.account().id == OPS


def test_refused_connection(server, world):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    token = world.api_token(OPS)
    gone = DigitalOceanProvider(token=token, endpoint=f"https://127.0.0.1:{closed_port}", verify=server.ca_file,
                                retries=0)
    with pytest.raises(ProviderError) as unreachable:
        gone.account()
    assert unreachable.value.code == "provider/unreachable" and "connection refused" in str(unreachable.value)
    assert token not in str(unreachable.value)


def test_untrusted_certificate(server, world):
    token = world.api_token(OPS)
    strict = DigitalOceanProvider(token=token, endpoint=server.api_url, retries=0)
    with pytest.raises(ProviderError) as untrusted:
        strict.account()
    assert untrusted.value.code == "provider/unreachable" and "unknown authority" in str(untrusted.value)


def test_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        silent = DigitalOceanProvider(token="dop_v1_" + "b" * 64, endpoint=f"https://127.0.0.1:{listener.getsockname()[1]}",
                                      verify=False, timeout=0.5, retries=0)
        with pytest.raises(ProviderError) as slow:
            silent.account()
        assert slow.value.code == "provider/unreachable" and "timed out" in str(slow.value)
    finally:
        for connection, _ in accepted:
            connection.close()
        listener.close()


def test_token_from_environment_and_file(server, world, monkeypatch, tmp_path):
    token = world.api_token(OPS)
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    monkeypatch.setenv("NASIKO_DO_API_URL", server.api_url)
    (tmp_path / "token").write_text(token + "\n")
    monkeypatch.setenv("DIGITALOCEAN_TOKEN_FILE", str(tmp_path / "token"))
    from_file = DigitalOceanProvider(verify=server.ca_file, retries=0)
    assert from_file.endpoint == server.api_url and from_file.account().id == OPS
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", token)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN_FILE", str(tmp_path / "absent"))
    assert DigitalOceanProvider(verify=server.ca_file, retries=0).account().id == OPS


def test_missing_token(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    monkeypatch.delenv("DIGITALOCEAN_TOKEN_FILE", raising=False)
    with pytest.raises(ProviderError) as none:
        DigitalOceanProvider()
    assert none.value.code == "provider/unauthorized" and "DIGITALOCEAN_TOKEN" in str(none.value)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(ProviderError) as unreadable:
        DigitalOceanProvider()
    assert unreadable.value.code == "provider/unauthorized" and "cannot be read" in str(unreadable.value)


def test_no_token_in_reprs_or_errors(server, world, ops, secrets_seen):
    shown = [repr(ops), repr(ops.docker_credentials(read_write=True, expiry_seconds=60)),
             repr(ops.docker_credentials())]
    for failing in (lambda: ops.tags("missing"), lambda: provider(server, "dop_v1_" + "c" * 64).account(),
                    lambda: DigitalOceanProvider(token=world.api_token(OPS), endpoint=server.api_url,
                                                 retries=0).account()):
        with pytest.raises(ProviderError) as error:
            failing()
        shown += [str(error.value), repr(error.value), "".join(error.value._render_traceback_())]
    text = "\n".join(shown)
    for secret in secrets_seen() + ["dop_v1_" + "c" * 64]:
        assert secret not in text
        assert base64.b64encode(f"{secret}:{secret}".encode()).decode() not in text
