"""An Ed25519 device identity as the reference clients make one, and the
signed connect payload (server.md 5.1). Shared by device_client.py and
conformance.py."""

import base64
import hashlib
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Device:
    """A key pair, its device id (SHA-256 of the raw public key, hex) and
    the public key as base64url and PEM."""

    def __init__(self, key=None):
        self.key = key or Ed25519PrivateKey.generate()
        self.raw = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw)
        self.id = hashlib.sha256(self.raw).hexdigest()
        self.public_key = b64url(self.raw)
        self.pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @classmethod
    def from_file(cls, path):
        """The device whose raw private key is in `path`; created (0600) when missing."""
        if os.path.exists(path):
            return cls(Ed25519PrivateKey.from_private_bytes(open(path, "rb").read()))
        dev = cls()
        raw = dev.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(raw)
        return dev

    def sign(self, payload: str) -> str:
        return b64url(self.key.sign(payload.encode()))


def signed_payload(version, device_id, client, role, scopes, signed_at, token, nonce):
    """The `|`-joined string a device signs: v2, or v3 with platform and
    device family (lower-cased)."""
    fields = [version, device_id, client["id"], client["mode"], role, ",".join(scopes),
              str(signed_at), token or "", nonce]
    if version == "v3":
        fields += [client.get("platform", "").lower(), client.get("deviceFamily", "").lower()]
    return "|".join(fields)
