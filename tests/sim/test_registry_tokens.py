"""The token issuer signs what docker/distribution verifies: RS256, x5c chain to the bundle, claims."""
import base64
import ssl
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nasiko_nb.sim.registry_tokens import TokenIssuer, parse_scope
from nasiko_nb.sim.tls import make_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_parse_scope_single_and_several():
    assert parse_scope("repository:nasiko-images/agent:pull,push") == [
        {"type": "repository", "name": "nasiko-images/agent", "actions": ["pull", "push"]}]
    assert parse_scope("repository:a:pull registry:catalog:*") == [
        {"type": "repository", "name": "a", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]}]


def test_parse_scope_name_with_port_and_empty_actions():
    assert parse_scope("repository:localhost:5000/app:pull") == [
        {"type": "repository", "name": "localhost:5000/app", "actions": ["pull"]}]
    assert parse_scope("repository:app:") == [{"type": "repository", "name": "app", "actions": []}]
    assert parse_scope("") == []


def test_certificate_covers_hosts_and_loads_into_ssl(certificate):
    cert = x509.load_pem_x509_certificate(certificate.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert certificate.cert_path.read_bytes() == certificate.cert_pem
    assert certificate.key_path.stat().st_mode & 0o077 == 0
    context = ssl.create_default_context(cafile=str(certificate.cert_path))
    context.load_cert_chain(certificate.cert_path, certificate.key_path)


def test_issued_token_verifies_with_the_certificate_key(certificate):
    issuer = TokenIssuer(certificate, issuer="nasiko-token", service="nasiko-registry")
    access = parse_scope("repository:team/app:pull")
    answer = issuer.issue("alice", access, ttl_s=120)
    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == 120
    assert answer["issued_at"].endswith("Z")
    public_key = x509.load_pem_x509_certificate(certificate.cert_pem).public_key()
    claims = jwt.decode(answer["token"], public_key, algorithms=["RS256"], audience="nasiko-registry",
                        issuer="nasiko-token")
    assert claims["sub"] == "alice"
    assert claims["access"] == access
    assert claims["nbf"] <= time.time() < claims["exp"] == claims["iat"] + 120
    assert len(claims["jti"]) == 32


def test_token_header_carries_the_certificate_chain(certificate):
    token = TokenIssuer(certificate, "i", "s").issue("bob", [])["token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    der = x509.load_pem_x509_certificate(certificate.cert_pem).public_bytes(serialization.Encoding.DER)
    assert header["x5c"] == [base64.b64encode(der).decode()]


def test_tokens_are_unique_and_signed_by_this_key_only(certificate, tmp_path):
    issuer = TokenIssuer(certificate, "i", "s")
    first, second = issuer.issue("bob", [])["token"], issuer.issue("bob", [])["token"]
    assert jwt.decode(first, options={"verify_signature": False})["jti"] != \
        jwt.decode(second, options={"verify_signature": False})["jti"]
    other = x509.load_pem_x509_certificate(make_certificate(tmp_path).cert_pem).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(first, other, algorithms=["RS256"], audience="s")
