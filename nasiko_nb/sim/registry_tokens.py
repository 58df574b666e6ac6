"""The issuing half of a Docker registry token service (the "realm" of a Bearer challenge).

docker/distribution's token auth accepts a JWT signed by a key whose certificate is in its
`rootcertbundle`; the certificate travels in the JWT header (x5c). The simulated DigitalOcean and the
tests' token service both issue tokens here so the real registry and the fakes verify the same thing.
"""
from __future__ import annotations

import base64
import secrets
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nasiko_nb.sim.tls import Certificate


def parse_scope(scope: str) -> list[dict]:
    """`repository:nasiko-images/agent:pull,push` (several space-separated) -> access entries of a token.

    The name may hold a port-like colon (`repository:host:5000/x:pull`): type is before the first colon,
    actions after the last.
    """
    access = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            continue
        access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


class TokenIssuer:
    """Signs registry bearer tokens the way a token service does for docker/distribution."""

    def __init__(self, certificate: Certificate, issuer: str, service: str):
        self.issuer, self.service = issuer, service
        self._key = serialization.load_pem_private_key(certificate.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(certificate.cert_pem)
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]

    def issue(self, subject: str, access: list[dict], ttl_s: int = 300) -> dict:
        """A token granting `access` to `subject`, in the response shape of Docker Hub and DigitalOcean."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + ttl_s, "nbf": now - 1,
                  "iat": now, "jti": secrets.token_hex(16), "access": access}
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": self._x5c})
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": ttl_s, "issued_at": issued_at}
