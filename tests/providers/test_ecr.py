"""EcrProvider against moto in server mode on 127.0.0.1: real boto3 requests, real error answers."""
import base64
import hashlib
import json
import socket
from datetime import datetime

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from nasiko_nb.providers.base import ProviderError
from nasiko_nb.providers.ecr import EcrProvider

REGION = "us-east-1"
ACCOUNT = "123456789012"          # moto's default account
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
FAKE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKESECRETKEY"


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials only from the environment; no profile, no instance metadata lookups."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def provider(moto_url, aws_env):
    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    return EcrProvider(REGION, endpoint_url=moto_url)


def _ecr(moto_url):
    return boto3.client("ecr", region_name=REGION, endpoint_url=moto_url)


def _push(moto_url, repository: str, tag: str, config_size: int, layer_sizes=(2_345_678,)):
    """Register an image the way `docker push` leaves it: a schema-2 manifest naming config and layers."""
    def digest(seed: str) -> str:
        return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config_size,
                   "digest": digest(f"config-{repository}-{tag}")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size,
                    "digest": digest(f"layer-{repository}-{tag}-{index}")} for index, size in enumerate(layer_sizes)],
    }
    _ecr(moto_url).put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_account_and_registry_host(provider):
    assert provider.account().id == ACCOUNT
    registry = provider.registry()
    assert (registry.provider, registry.name, registry.host, registry.region) == ("ecr", ACCOUNT, HOST, REGION)


def test_endpoint_defaults_to_the_environment(moto_url, aws_env, monkeypatch):
    monkeypatch.setenv("NASIKO_AWS_ENDPOINT_URL", moto_url)
    assert EcrProvider(REGION).account().id == ACCOUNT


def test_docker_credentials_are_the_ecr_login_and_never_shown(provider):
    credential = provider.docker_credentials()
    assert (credential.host, credential.username) == (HOST, "AWS")
    assert credential.password == f"{ACCOUNT}-auth-token"      # what moto issues for the account
    assert isinstance(credential.expires_at, datetime) and credential.read_write is None
    auth = json.loads(credential.dockerconfigjson())["auths"][HOST]["auth"]
    assert base64.b64decode(auth).decode() == f"AWS:{credential.password}"
    for shown in (repr(credential), credential.summary(), str(credential)):
        assert credential.password not in shown and auth not in shown
        assert "AWS" in shown and HOST in shown


def test_repositories_report_tags_sizes_and_last_push(provider, moto_url):
    for name in ("nasiko-images", "stock-agent"):
        _ecr(moto_url).create_repository(repositoryName=name)
    _push(moto_url, "stock-agent", "v1766141200", config_size=7_023)
    _push(moto_url, "stock-agent", "v1766141300", config_size=7_500)
    repositories = {repo.name: repo for repo in provider.repositories()}
    assert set(repositories) == {"nasiko-images", "stock-agent"}
    stock = repositories["stock-agent"]
    # moto reports an image's config size as its size; the provider sums the images
    assert (stock.tag_count, stock.size_bytes) == (2, 14_523)
    assert isinstance(stock.updated, datetime)
    empty = repositories["nasiko-images"]
    assert (empty.tag_count, empty.size_bytes) == (0, None)


def test_tags_newest_first_with_digests(provider, moto_url):
    _ecr(moto_url).create_repository(repositoryName="stock-agent")
    _push(moto_url, "stock-agent", "v1", config_size=100)
    _push(moto_url, "stock-agent", "v2", config_size=200)
    tags = provider.tags("stock-agent")
    assert sorted(t.tag for t in tags) == ["v1", "v2"]
    assert all(t.digest.startswith("sha256:") and t.repository == "stock-agent" for t in tags)
    assert [t.updated for t in tags] == sorted((t.updated for t in tags), reverse=True)
    assert {t.tag: t.size_bytes for t in tags} == {"v1": 100, "v2": 200}


def test_create_and_delete_repository(provider):
    created = provider.create_repository("weather-agent")
    assert (created.name, created.tag_count) == ("weather-agent", 0)
    assert [repo.name for repo in provider.repositories()] == ["weather-agent"]
    provider.delete_repository("weather-agent")
    assert provider.repositories() == []


def test_delete_repository_with_images(provider, moto_url):
    _ecr(moto_url).create_repository(repositoryName="stock-agent")
    _push(moto_url, "stock-agent", "v1", config_size=100)
    provider.delete_repository("stock-agent")
    assert provider.repositories() == []


def test_delete_tag(provider, moto_url):
    _ecr(moto_url).create_repository(repositoryName="stock-agent")
    _push(moto_url, "stock-agent", "v1", config_size=100)
    _push(moto_url, "stock-agent", "v2", config_size=200)
    provider.delete_tag("stock-agent", "v1")
    assert [t.tag for t in provider.tags("stock-agent")] == ["v2"]
    with pytest.raises(ProviderError) as raised:
        provider.delete_tag("stock-agent", "v1")
    assert raised.value.code == "provider/not-found" and "ImageNotFound" in str(raised.value)


@pytest.mark.parametrize("call", [
    lambda p: p.tags("no-such-agent"),
    lambda p: p.delete_repository("no-such-agent"),
    lambda p: p.delete_tag("no-such-agent", "v1"),
])
def test_missing_repository_is_not_found(provider, call):
    with pytest.raises(ProviderError) as raised:
        call(provider)
    error = raised.value
    assert error.code == "provider/not-found"
    assert "RepositoryNotFoundException" in str(error) and "no-such-agent" in str(error)
    assert "\n" not in str(error) and error.__cause__ is None and error.__suppress_context__


def test_unreachable_endpoint(aws_env):
    endpoint = f"http://127.0.0.1:{_free_port()}"
    provider = EcrProvider(REGION, endpoint_url=endpoint, timeout=2)
    with pytest.raises(ProviderError) as raised:
        provider.repositories()
    assert raised.value.code == "provider/unreachable"
    assert endpoint in str(raised.value) and "\n" not in str(raised.value)


def test_no_credentials_is_unauthorized(moto_url, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ProviderError) as raised:
        EcrProvider(REGION, endpoint_url=moto_url).account()
    assert raised.value.code == "provider/unauthorized" and "credential chain" in str(raised.value)


@pytest.mark.parametrize("aws_code,status,expected", [
    ("UnrecognizedClientException", 400, "provider/unauthorized"),
    ("ExpiredTokenException", 400, "provider/unauthorized"),
    ("AccessDeniedException", 400, "provider/forbidden"),
    ("ThrottlingException", 400, "provider/rate-limited"),
    ("ServerException", 500, "provider/unavailable"),
    ("InvalidParameterException", 400, "provider/error"),
    ("SomethingNew", 403, "provider/forbidden"),
])
def test_aws_error_codes_map_to_provider_codes(aws_env, aws_code, status, expected):
    provider = EcrProvider(REGION, endpoint_url="http://127.0.0.1:9")
    with Stubber(provider._client("ecr")) as stub:
        stub.add_client_error("describe_repositories", service_error_code=aws_code, http_status_code=status,
                              service_message=f"signature mismatch for key {FAKE_SECRET_KEY}\nsecond line")
        with pytest.raises(ProviderError) as raised:
            provider.repositories()
    error = raised.value
    assert (error.code, error.status) == (expected, status)
    assert aws_code in str(error) and "\n" not in str(error)
    assert FAKE_SECRET_KEY not in str(error) and FAKE_SECRET_KEY not in repr(error)


def test_node_groups_describe_and_scale(provider, moto_url):
    eks = boto3.client("eks", region_name=REGION, endpoint_url=moto_url)
    role = f"arn:aws:iam::{ACCOUNT}:role/nasiko-eks"
    eks.create_cluster(name="nasiko", roleArn=role, resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    eks.create_nodegroup(clusterName="nasiko", nodegroupName="workers", nodeRole=role, subnets=["subnet-1"],
                         scalingConfig={"minSize": 1, "maxSize": 3, "desiredSize": 2}, instanceTypes=["t3.large"])
    [group] = provider.node_groups("nasiko")
    assert (group.cluster, group.name, group.min_size, group.max_size, group.desired_size) == \
        ("nasiko", "workers", 1, 3, 2)
    assert group.instance_types == ("t3.large",)
    assert provider.scale_node_group("nasiko", "workers", 2, 5, 4)
    [scaled] = provider.node_groups("nasiko")
    assert (scaled.min_size, scaled.max_size, scaled.desired_size) == (2, 5, 4)
    with pytest.raises(ValueError):
        provider.scale_node_group("nasiko", "workers", 3, 5, 2)
    with pytest.raises(ProviderError) as raised:     # (moto answers 500 for list_nodegroups of a missing cluster)
        provider.scale_node_group("nasiko", "no-such-group", 1, 2, 1)
    assert raised.value.code == "provider/not-found" and "ResourceNotFoundException" in str(raised.value)


def test_repr_shows_no_credentials(provider):
    assert FAKE_SECRET_KEY not in repr(provider) and "AKIA" not in repr(provider)
