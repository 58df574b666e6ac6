"""The simulated DigitalOcean against its contract: pydo as the client, openapi-core as the judge.

Every answer the API gives during these tests is validated (request and response) against the OpenAPI
file, so the fake cannot drift from DigitalOcean's shapes; the token service and the registry endpoint are
checked with plain HTTP the way docker and containerd talk to them.
"""
import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

import jwt
import pydo
import pytest
import requests
import yaml
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from cryptography import x509
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from nasiko_nb.sim.digitalocean import REGISTRY_HOST, DOWorld, load_spec, start_digitalocean
from nasiko_nb.sim.registry_tokens import TokenIssuer
from nasiko_nb.sim.tls import make_certificate
from tests.paths import SHARED

OPS, OTHER, PRO, EMPTY = "ops@nasiko.dev", "other@example.com", "pro@example.com", "empty@example.com"
REPO = "agents/translator"


@pytest.fixture(scope="module")
def world():
    world = DOWorld()
    for email in (OPS, OTHER, EMPTY):
        world.add_account(email)
    world.add_account(PRO, tier="professional")
    world.create_registry(OPS, "nasiko-images")
    world.create_registry(OTHER, "other-images")
    world.create_registry(PRO, "pro-one")
    world.create_registry(PRO, "pro-two", several=True)
    world.push("nasiko-images", REPO, "v1", 1000, updated=datetime(2026, 1, 1, tzinfo=timezone.utc))
    world.push("nasiko-images", REPO, "v2", 2000, updated=datetime(2026, 2, 1, tzinfo=timezone.utc))
    world.push("nasiko-images", "agents/summarizer", "latest", 500)
    world.push("other-images", "app", "v1", 300)
    world.add_cluster(OPS, "nasiko-prod", node_pools=(("workers", "s-2vcpu-4gb", 2),))
    return world


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    server = start_digitalocean(world, tmp_path_factory.mktemp("do"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def contract():
    return OpenAPI.from_dict(load_spec())


def validate(contract, exchange):
    """Hold one recorded exchange against the contract; requests the fake refused are checked for the answer only."""
    request = MockRequest("https://api.digitalocean.com", exchange.method, exchange.path, args=exchange.query,
                          headers={"Authorization": "Bearer redacted"} if exchange.authorized else {},
                          data=exchange.request_body or None)
    if exchange.status < 400:
        contract.validate_request(request)
    contract.validate_response(request, MockResponse(exchange.response_body, status_code=exchange.status))


@pytest.fixture(autouse=True)
def every_answer_follows_the_contract(server, contract):
    start = len(server.exchanges)
    yield
    for exchange in list(server.exchanges)[start:]:
        validate(contract, exchange)


def client(server, token):
    return pydo.Client(token=token, endpoint=server.api_url, connection_verify=str(server.ca_file), retry_total=0)


def status_of(operation, **kwargs):
    """(status, body) of a pydo call, including the error answers pydo hands back as bodies (404, 412)."""
    return operation(cls=lambda response, body, _headers: (response.http_response.status_code, body), **kwargs)


@pytest.fixture(scope="module")
def ops(server, world):
    return client(server, world.api_token(OPS))


def test_the_packaged_contract_is_the_shared_spec():
    shared = SHARED / "specs" / "digitalocean-registry-kubernetes.openapi.yaml"
    if not shared.exists():
        pytest.skip("shared specs not present")
    assert load_spec() == yaml.safe_load(shared.read_text())


def test_the_validator_rejects_a_drifted_answer(server, ops, contract):
    ops.account.get()
    exchange = server.exchanges[-1]
    drifted = json.loads(exchange.response_body)
    drifted["account"]["email_verified"] = "yes"
    exchange.response_body = json.dumps(drifted).encode()
    with pytest.raises(Exception, match="(?i)invalid|valid"):
        validate(contract, exchange)
    server.exchanges.pop()


def test_account(ops, world):
    account = ops.account.get()["account"]
    assert account["email"] == OPS and account["uuid"] == world.accounts[OPS].uuid and account["status"] == "active"


def test_registry_envelope_and_storage(ops):
    registry = ops.registry.get()["registry"]
    assert registry["name"] == "nasiko-images" and registry["region"] == "fra1"
    assert registry["storage_usage_bytes"] == 3500
    assert registry["subscription"]["tier"]["slug"] == "basic"


def test_one_registry_per_account(server, world):
    world.add_account("solo@example.com")
    solo = client(server, world.api_token("solo@example.com"))
    with pytest.raises(ResourceNotFoundError):
        solo.registry.get()
    created = solo.registry.create(body={"name": "solo-images", "subscription_tier_slug": "starter",
                                         "region": "ams3"})["registry"]
    assert created["name"] == "solo-images" and created["region"] == "ams3"
    with pytest.raises(HttpResponseError) as second:
        solo.registry.create(body={"name": "solo-two", "subscription_tier_slug": "basic"})
    assert second.value.status_code == 422 and "already has a registry" in str(second.value)
    assert [r.name for r in world.accounts["solo@example.com"].registries] == ["solo-images"]
    assert solo.registry.delete() is None
    assert world.accounts["solo@example.com"].registries == []


def test_registry_names_are_globally_unique(server, world):
    empty = client(server, world.api_token(EMPTY))
    with pytest.raises(ResourceExistsError) as taken:
        empty.registry.create(body={"name": "nasiko-images", "subscription_tier_slug": "basic"})
    assert taken.value.status_code == 409
    assert world.accounts[EMPTY].registries == []


def test_create_body_is_checked_against_the_contract(server, world):
    empty = client(server, world.api_token(EMPTY))
    with pytest.raises(HttpResponseError) as invalid:
        empty.registry.create(body={"name": "Not_Valid"})
    assert invalid.value.status_code == 422
    assert world.accounts[EMPTY].registries == []


def test_several_registries_make_v2_registry_answer_412(server, world):
    pro = client(server, world.api_token(PRO))
    status, body = status_of(pro.registry.get)
    assert status == 412 and body["id"] == "precondition_failed" and "/v2/registries" in body["message"]
    status, _ = status_of(pro.registry.delete)
    assert status == 412
    assert [r["name"] for r in pro.registries.list()["registries"]] == ["pro-one", "pro-two"]
    assert pro.registries.get(registry_name="pro-two")["registry"]["name"] == "pro-two"


def test_docker_credentials_default_to_read_only_and_never_expire(ops, world):
    body = ops.registry.get_docker_credentials()
    user, _, password = base64.b64decode(body["auths"][REGISTRY_HOST]["auth"]).decode().partition(":")
    assert user == password
    token = world.tokens[password]
    assert token.kind == "registry" and token.account == OPS
    assert token.read_write is False and token.expires_at is None


def test_docker_credentials_read_write_with_expiry(ops, world):
    before = datetime.now(timezone.utc)
    body = ops.registry.get_docker_credentials(read_write=True, expiry_seconds=3600)
    password = base64.b64decode(body["auths"][REGISTRY_HOST]["auth"]).decode().partition(":")[2]
    token = world.tokens[password]
    assert token.read_write is True
    assert before + timedelta(seconds=3599) <= token.expires_at <= datetime.now(timezone.utc) + timedelta(hours=1)


def test_repositories_v2_with_counts_and_latest_manifest(ops, world):
    body = ops.registry.list_repositories_v2(registry_name="nasiko-images")
    assert body["meta"] == {"total": 2}
    translator = next(r for r in body["repositories"] if r["name"] == REPO)
    assert translator["tag_count"] == 2 and translator["manifest_count"] == 2
    latest = translator["latest_manifest"]
    assert latest["size_bytes"] == 2000 and latest["updated_at"] == "2026-02-01T00:00:00Z"
    assert latest["digest"] == world.find_registry("nasiko-images").repositories[REPO][-1].digest


def test_pagination_links(ops):
    first = ops.registry.list_repositories_v2(registry_name="nasiko-images", per_page=1)
    assert len(first["repositories"]) == 1 and first["meta"]["total"] == 2
    assert "page=2" in first["links"]["pages"]["next"] and "page=2" in first["links"]["pages"]["last"]
    second = ops.registry.list_repositories_v2(registry_name="nasiko-images", per_page=1, page=2)
    assert "next" not in second["links"]["pages"] and "page=1" in second["links"]["pages"]["prev"]
    assert first["repositories"][0]["name"] != second["repositories"][0]["name"]


def test_tags_of_a_repository_with_a_slash(ops):
    tags = ops.registry.list_repository_tags(registry_name="nasiko-images", repository_name=REPO)["tags"]
    assert [(t["tag"], t["size_bytes"]) for t in tags] == [("v2", 2000), ("v1", 1000)]
    assert all(t["manifest_digest"].startswith("sha256:") and t["repository"] == REPO for t in tags)


def test_another_accounts_registry_is_not_found(ops):
    status, body = status_of(ops.registry.list_repository_tags, registry_name="other-images", repository_name="app")
    assert status == 404 and body["id"] == "not_found"
    status, _ = status_of(ops.registry.list_repositories_v2, registry_name="other-images")
    assert status == 404


def test_deleting_tags_manifests_and_repositories(server, world):
    world.add_account("cleaner@example.com")
    world.create_registry("cleaner@example.com", "cleaner")
    kept = world.push("cleaner", "web", "v1", 10)
    world.push("cleaner", "web", "v2", 20)
    world.push("cleaner", "old", "v1", 30)
    cleaner = client(server, world.api_token("cleaner@example.com"))
    cleaner.registry.delete_repository_tag(registry_name="cleaner", repository_name="web", repository_tag="v2")
    tags = cleaner.registries.list_repository_tags(registry_name="cleaner", repository_name="web")["tags"]
    assert [t["tag"] for t in tags] == ["v1"]
    manifests = cleaner.registries.list_repository_manifests(registry_name="cleaner", repository_name="web")
    untagged = [m for m in manifests["manifests"] if not m["tags"]]
    assert len(untagged) == 1
    cleaner.registries.delete_repository_manifest(registry_name="cleaner", repository_name="web",
                                                  manifest_digest=untagged[0]["digest"])
    assert [m.digest for m in world.find_registry("cleaner").repositories["web"]] == [kept.digest]
    cleaner.registries.delete_repository(registry_name="cleaner", repository_name="old")
    assert set(world.find_registry("cleaner").repositories) == {"web"}
    status, _ = status_of(cleaner.registry.delete_repository_tag, registry_name="cleaner", repository_name="web",
                          repository_tag="nope")
    assert status == 404


@pytest.mark.parametrize("spoil", ["unknown", "revoked", "expired", "registry-token"])
def test_api_refuses_unusable_tokens(server, world, spoil):
    if spoil == "unknown":
        token = "dop_v1_" + "0" * 64
    elif spoil == "registry-token":
        token = world.registry_credentials(OPS, read_write=True, expiry_seconds=None)
    else:
        token = world.api_token(OPS)
        (world.revoke if spoil == "revoked" else world.expire)(token)
    response = requests.get(f"{server.api_url}/v2/account", headers={"Authorization": f"Bearer {token}"},
                            verify=server.ca_file, timeout=5)
    assert response.status_code == 401
    body = response.json()
    assert body["id"] == "unauthorized" and body["message"] == "Unable to authenticate you" and body["request_id"]


def test_read_only_api_token_cannot_write(server, world):
    reader = client(server, world.api_token(EMPTY, read_write=False))
    with pytest.raises(HttpResponseError) as refused:
        reader.registry.create(body={"name": "reader", "subscription_tier_slug": "basic"})
    assert refused.value.status_code == 403 and refused.value.response.json()["id"] == "forbidden"
    assert reader.account.get()["account"]["email"] == EMPTY


def test_injected_rate_limit(server, world, ops):
    world.fail_next(429)
    response = requests.get(f"{server.api_url}/v2/account", verify=server.ca_file, timeout=5,
                            headers={"Authorization": f"Bearer {world.api_token(OPS)}"})
    assert response.status_code == 429 and response.json()["id"] == "too_many_requests"
    assert int(response.headers["ratelimit-limit"]) > 0
    assert ops.account.get()["account"]["email"] == OPS


def test_kubernetes_clusters_and_node_pools(ops, world):
    clusters = ops.kubernetes.list_clusters()
    assert clusters["meta"]["total"] == 1
    cluster = clusters["kubernetes_clusters"][0]
    assert ops.kubernetes.get_cluster(cluster_id=cluster["id"])["kubernetes_cluster"]["name"] == "nasiko-prod"
    pool = ops.kubernetes.list_node_pools(cluster_id=cluster["id"])["node_pools"][0]
    assert pool["count"] == 2 and len(pool["nodes"]) == 2
    status, body = status_of(ops.kubernetes.update_node_pool, cluster_id=cluster["id"], node_pool_id=pool["id"],
                             body={"name": "workers", "count": 4, "auto_scale": True, "min_nodes": 2, "max_nodes": 6})
    assert status == 202 and body["node_pool"]["count"] == 4 and len(body["node_pool"]["nodes"]) == 4
    assert world.clusters[cluster["id"]].node_pools[0].max_nodes == 6
    status, _ = status_of(ops.kubernetes.get_cluster, cluster_id="00000000-0000-4000-8000-000000000000")
    assert status == 404


# -- token service ------------------------------------------------------------------------------------------
def ask_token(server, credential: str, scope: str) -> requests.Response:
    return requests.get(f"{server.api_url}/v2/registry/auth", params={"service": REGISTRY_HOST, "scope": scope},
                        auth=(credential, credential), verify=server.ca_file, timeout=5)


def granted(server, response) -> list:
    public_key = x509.load_pem_x509_certificate(server.ca_file.read_bytes()).public_key()
    claims = jwt.decode(response.json()["token"], public_key, algorithms=["RS256"], audience=REGISTRY_HOST)
    return claims["access"]


@pytest.mark.parametrize("read_write, actions", [(False, ["pull"]), (True, ["pull", "push"])])
def test_token_service_grants_by_credential_access(server, world, read_write, actions):
    credential = world.registry_credentials(OPS, read_write=read_write, expiry_seconds=600)
    response = ask_token(server, credential, f"repository:nasiko-images/{REPO}:pull,push")
    assert response.status_code == 200
    assert granted(server, response) == [{"type": "repository", "name": f"nasiko-images/{REPO}", "actions": actions}]
    assert response.json()["expires_in"] <= 600


def test_token_service_grants_nothing_on_another_accounts_registry(server, world):
    credential = world.registry_credentials(OPS, read_write=True, expiry_seconds=None)
    response = ask_token(server, credential, "repository:other-images/app:pull")
    assert response.status_code == 200 and granted(server, response) == []


@pytest.mark.parametrize("spoil", ["unknown", "revoked", "expired"])
def test_token_service_refuses_unusable_credentials(server, world, spoil):
    credential = "f" * 64
    if spoil != "unknown":
        credential = world.registry_credentials(OPS, read_write=True, expiry_seconds=None)
        (world.revoke if spoil == "revoked" else world.expire)(credential)
    assert ask_token(server, credential, f"repository:nasiko-images/{REPO}:pull").status_code == 401


# -- registry endpoint --------------------------------------------------------------------------------------
def bearer(server, world, read_write: bool, repository=f"nasiko-images/{REPO}") -> dict:
    credential = world.registry_credentials(OPS, read_write=read_write, expiry_seconds=None)
    token = ask_token(server, credential, f"repository:{repository}:pull,push").json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_registry_ping_challenges_to_the_token_service(server):
    response = requests.get(f"{server.registry_url}/v2/", verify=server.ca_file, timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="{server.api_url}/v2/registry/auth",service="{REGISTRY_HOST}"')


def test_registry_serves_tags_and_manifests_to_a_granted_token(server, world):
    headers = bearer(server, world, read_write=False)
    base = f"{server.registry_url}/v2/nasiko-images/{REPO}"
    tags = requests.get(f"{base}/tags/list", headers=headers, verify=server.ca_file, timeout=5)
    assert tags.status_code == 200 and tags.json() == {"name": f"nasiko-images/{REPO}", "tags": ["v1", "v2"]}
    head = requests.head(f"{base}/manifests/v2", headers=headers, verify=server.ca_file, timeout=5)
    expected = world.find_registry("nasiko-images").repositories[REPO][-1].digest
    assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == expected
    body = requests.get(f"{base}/manifests/{expected}", headers=headers, verify=server.ca_file, timeout=5).content
    assert "sha256:" + hashlib.sha256(body).hexdigest() == expected
    missing = requests.head(f"{base}/manifests/v9", headers=headers, verify=server.ca_file, timeout=5)
    assert missing.status_code == 404


def test_registry_refuses_pull_without_a_grant(server, world):
    headers = bearer(server, world, read_write=True, repository="other-images/app")
    response = requests.get(f"{server.registry_url}/v2/other-images/app/tags/list", headers=headers,
                            verify=server.ca_file, timeout=5)
    assert response.status_code == 401 and 'scope="repository:other-images/app:pull"' in \
        response.headers["WWW-Authenticate"]


def test_blob_upload_needs_push(server, world):
    url = f"{server.registry_url}/v2/nasiko-images/{REPO}/blobs/uploads/"
    refused = requests.post(url, headers=bearer(server, world, read_write=False), verify=server.ca_file, timeout=5)
    assert refused.status_code == 401 and refused.json()["errors"][0]["code"] == "UNAUTHORIZED"
    headers = bearer(server, world, read_write=True)
    started = requests.post(url, headers=headers, verify=server.ca_file, timeout=5)
    assert started.status_code == 202 and started.headers["Location"].startswith(f"/v2/nasiko-images/{REPO}/")
    assert world.uploads
    cancelled = requests.delete(server.registry_url + started.headers["Location"], headers=headers,
                                verify=server.ca_file, timeout=5)
    assert cancelled.status_code == 204 and not world.uploads


def test_registry_rejects_tokens_it_did_not_issue(server, tmp_path):
    forger = TokenIssuer(make_certificate(tmp_path), issuer="api.digitalocean.com", service=REGISTRY_HOST)
    token = forger.issue(OPS, [{"type": "repository", "name": f"nasiko-images/{REPO}", "actions": ["pull"]}])
    response = requests.get(f"{server.registry_url}/v2/nasiko-images/{REPO}/tags/list", verify=server.ca_file,
                            headers={"Authorization": f"Bearer {token['token']}"}, timeout=5)
    assert response.status_code == 401
