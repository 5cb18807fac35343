"""OIDC tokens as Pub/Sub signs them, made with a test key, and a certificate endpoint
serving the test certificate to google-auth: no network."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KEY_ID = "taskport-test-key"
AUDIENCE = "https://taskport.example.com/webhook/pubsub"
SERVICE_ACCOUNT = "pusher@taskport-test.iam.gserviceaccount.com"


class TestSigner:
    """A key pair and a self-signed certificate; ``token`` signs ID tokens with it."""

    __test__ = False

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskport test")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        self._private_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "sub": "1234567890",
            "email": SERVICE_ACCOUNT,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            **overrides,
        }
        return jwt.encode(claims, self._private_pem, algorithm="RS256", headers={"kid": KEY_ID})


class _Response:
    def __init__(self, status: int, data: bytes) -> None:
        self.status = status
        self.data = data
        self.headers: dict[str, str] = {}


class CertificatesRequest:
    """A ``google.auth.transport.Request`` that answers every fetch with the test
    certificate, as Google's certificate endpoint would; counts the fetches."""

    def __init__(self, signer: TestSigner) -> None:
        self._body = json.dumps({KEY_ID: signer.certificate_pem}).encode()
        self.status = 200
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", **_: Any) -> _Response:
        self.fetches += 1
        return _Response(self.status, self._body)
