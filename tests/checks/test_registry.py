"""The registry detectors on hand-made snapshots: exact codes on exact resources, one per secret."""
import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from nasiko_nb.checks import run_checks
from nasiko_nb.checks.registry import find_push_error, secrets_table
from nasiko_nb.snapshot import Snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
DO = "registry.digitalocean.com"
TOKEN = "dop_v1_" + "c" * 64
PLATFORM = [("nasiko", "regcred"), ("buildkit", "regcred"), ("nasiko-agents", "agent-registry-credentials")]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "registry"


def dockerconfig_secret(namespace, name, token=TOKEN, host=DO, age=timedelta(days=3)):
    config = {"auths": {host: {"auth": base64.b64encode(f"{token}:{token}".encode()).decode()}}}
    return {"kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"namespace": namespace, "name": name,
                         "creationTimestamp": (NOW - age).isoformat().replace("+00:00", "Z")},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def platform_snapshot(**secret_kwargs):
    namespaces = [{"kind": "Namespace", "metadata": {"name": ns}} for ns in ("nasiko", "buildkit", "nasiko-agents")]
    return Snapshot.from_objects(namespaces + [dockerconfig_secret(ns, name, **secret_kwargs) for ns, name in PLATFORM])


def access(authenticated=True, granted=("pull", "push"), status=200, **extra):
    return [{"namespace": ns, "secret": name, "host": DO, "repository": "nasiko-images/a2a-github-agent",
             "authenticated": authenticated, "granted": list(granted), "status": status, "detail": "token service",
             **extra} for ns, name in PLATFORM]


def auth_findings(snap, checks, **params):
    params = {"access": checks, "account_registry": "nasiko-images", "requested_registry": "nasiko-images",
              "account": "owner@example.com", "now": NOW, **params}
    return sorted((f.code, f.resource) for f in run_checks(snap, params, families=["registry-auth"]))


def each_secret(code):
    return sorted((code, f"Secret {ns}/{name}") for ns, name in PLATFORM)


@pytest.mark.parametrize("case, snapshot_args, checks, expected", [
    ("read-write token", {}, access(), []),
    ("read-only token", {}, access(granted=["pull"]), each_secret("registry/read-only-token")),
    ("another account's token", {}, access(granted=[]), each_secret("registry/wrong-user")),
    ("revoked token (young secret)", {"age": timedelta(days=2)}, access(False, [], 401),
     each_secret("registry/invalid-token")),
    ("expired token (secret older than 30 days)", {"age": timedelta(days=31)}, access(False, [], 401),
     each_secret("registry/expired-token")),
    ("registry unreachable", {}, access(False, [], 0, error="provider/unreachable"),
     each_secret("provider/unreachable")),
])
def test_push_auth_causes(case, snapshot_args, checks, expected):
    assert auth_findings(platform_snapshot(**snapshot_args), checks) == expected, case


def test_name_mismatch_is_the_cause_when_nothing_is_granted():
    findings = auth_findings(platform_snapshot(), access(granted=[]), account_registry="my-registry")
    assert findings == [("registry/name-mismatch", "Registry nasiko-images")]


def test_name_mismatch_does_not_hide_a_read_only_token():
    findings = auth_findings(platform_snapshot(), access(granted=["pull"]), account_registry="my-registry")
    assert findings == [("registry/name-mismatch", "Registry nasiko-images"), *each_secret("registry/read-only-token")]


def test_no_provider_answers_no_auth_findings():
    assert run_checks(platform_snapshot(), {}, families=["registry-auth"]) == []


def test_expired_finding_says_when():
    [finding, *_] = run_checks(platform_snapshot(age=timedelta(days=31)),
                               {"access": access(False, [], 401), "now": NOW}, families=["registry-auth"])
    assert "2026-11-25T12:00" in finding.message and TOKEN not in finding.evidence


def secrets_findings(objects, **params):
    snap = Snapshot.from_objects(objects)
    return sorted((f.code, f.resource) for f in run_checks(snap, params, families=["registry-secrets"]))


NAMESPACES = [{"kind": "Namespace", "metadata": {"name": ns}} for ns in ("nasiko", "buildkit", "nasiko-agents")]


def test_consistent_platform_secrets_are_silent():
    assert secrets_findings(NAMESPACES + [dockerconfig_secret(ns, name) for ns, name in PLATFORM]) == []


def test_missing_secret():
    objects = NAMESPACES + [dockerconfig_secret(ns, name) for ns, name in PLATFORM[:2]]
    assert secrets_findings(objects) == [("registry/secret-missing", "Secret nasiko-agents/agent-registry-credentials")]


def test_secret_for_another_registry_host():
    objects = NAMESPACES + [dockerconfig_secret(ns, name) for ns, name in PLATFORM[:2]]
    objects.append(dockerconfig_secret("nasiko-agents", "agent-registry-credentials", host="harbor.example.com"))
    assert secrets_findings(objects) == [("registry/secret-wrong-registry-host",
                                          "Secret nasiko-agents/agent-registry-credentials")]


def test_different_credentials_in_the_platform_secrets():
    objects = NAMESPACES + [dockerconfig_secret(ns, name) for ns, name in PLATFORM[:2]]
    objects.append(dockerconfig_secret("nasiko-agents", "agent-registry-credentials", token="dop_v1_" + "d" * 64))
    [(code, _)] = secrets_findings(objects)
    assert code == "registry/credentials-inconsistent"


def test_unreadable_namespace_is_not_reported_missing():
    snap = Snapshot.from_objects(NAMESPACES + [dockerconfig_secret(ns, name) for ns, name in PLATFORM[:2]])
    snap.unreadable.add(("Secret", "nasiko-agents"))
    assert run_checks(snap, {}, families=["registry-secrets"]) == []


def test_secrets_table_shows_fingerprints_and_users_never_the_token():
    table = secrets_table(platform_snapshot(), {"nasiko", "buildkit", "nasiko-agents"}, now=NOW)
    assert list(table["secret"]) == ["regcred", "regcred", "agent-registry-credentials"]
    assert set(table["fingerprint"]) == {table["fingerprint"][0]} and table["fingerprint"][0].startswith("sha256:")
    text = table.to_string()
    assert TOKEN not in text and base64.b64encode(f"{TOKEN}:{TOKEN}".encode()).decode() not in text


@pytest.mark.parametrize("case", yaml.safe_load((FIXTURES / "push-errors.yaml").read_text()), ids=lambda c: c["name"])
def test_push_error_read_from_build_log(case):
    error = find_push_error(case["log"])
    if case["image"] is None:
        assert error is None
    else:
        assert (error.image, error.registry_name, error.repository) == (
            case["image"], case["registry_name"], case["repository"])
