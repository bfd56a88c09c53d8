"""A minimal device client for the interop suite: connects to a gateway with
an Ed25519 device identity (kept in KEYFILE) and prints the connect response
as JSON. Used to create real pairing requests for the openclaw CLI to act on.

usage: device_client.py PORT TOKEN KEYFILE [SCOPE ...]
"""
import asyncio
import base64
import hashlib
import json
import os
import sys
import time

import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def load_key(path: str) -> Ed25519PrivateKey:
    if os.path.exists(path):
        return Ed25519PrivateKey.from_private_bytes(open(path, "rb").read())
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(raw)
    return key


async def main() -> None:
    port, token, keyfile = sys.argv[1], sys.argv[2], sys.argv[3]
    scopes = sys.argv[4:]
    key = load_key(keyfile)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    device_id = hashlib.sha256(raw).hexdigest()
    # An Origin header makes a loopback CLI client ineligible for silent pairing.
    headers = {"Origin": f"http://127.0.0.1:{port}"}
    async with websockets.connect(f"ws://127.0.0.1:{port}/", additional_headers=headers) as ws:
        challenge = json.loads(await ws.recv())
        nonce = challenge["payload"]["nonce"]
        signed_at = int(time.time() * 1000)
        client = {"id": "cli", "version": "1", "platform": "linux", "mode": "cli",
                  "displayName": "interop-device"}
        payload = "|".join(["v3", device_id, "cli", "cli", "operator", ",".join(scopes),
                            str(signed_at), token, nonce, "linux", ""])
        params = {
            "minProtocol": 4, "maxProtocol": 4, "client": client, "role": "operator",
            "scopes": scopes, "auth": {"token": token},
            "device": {"id": device_id, "publicKey": b64url(raw),
                       "signature": b64url(key.sign(payload.encode())),
                       "signedAt": signed_at, "nonce": nonce},
        }
        await ws.send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params}))
        print(json.dumps(json.loads(await ws.recv())))


asyncio.run(main())
