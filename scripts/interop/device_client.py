"""A minimal device client for the interop suite: connects to a gateway with
an Ed25519 device identity (kept in KEYFILE) and prints the connect response
as JSON. Used to create real pairing requests for the openclaw CLI (against
clawgate) and the clawgate CLI (against the reference gateway) to act on.

usage: device_client.py [--role ROLE] [--no-origin] PORT TOKEN KEYFILE [SCOPE ...]

  --role ROLE   connect as ROLE (default operator); the same key as `node`
                after it is paired as operator makes a role-upgrade request.
  --no-origin   send no Origin header: a new loopback operator device is then
                eligible for silent pairing on the reference gateway.
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
    args = sys.argv[1:]
    role, origin = "operator", True
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--role" and args:
            role = args.pop(0)
        elif opt == "--no-origin":
            origin = False
        else:
            sys.exit(f"device_client.py: unknown option {opt}\n{__doc__}")
    if len(args) < 3:
        sys.exit(__doc__)
    port, token, keyfile = args[0], args[1], args[2]
    scopes = args[3:]
    key = load_key(keyfile)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    device_id = hashlib.sha256(raw).hexdigest()
    # An Origin header makes a loopback CLI client ineligible for silent pairing.
    headers = {"Origin": f"http://127.0.0.1:{port}"} if origin else {}
    async with websockets.connect(f"ws://127.0.0.1:{port}/", additional_headers=headers) as ws:
        challenge = json.loads(await ws.recv())
        nonce = challenge["payload"]["nonce"]
        signed_at = int(time.time() * 1000)
        client = {"id": "cli", "version": "1", "platform": "linux", "mode": "cli",
                  "displayName": "interop-device"}
        payload = "|".join(["v3", device_id, "cli", "cli", role, ",".join(scopes),
                            str(signed_at), token, nonce, "linux", ""])
        params = {
            "minProtocol": 4, "maxProtocol": 4, "client": client, "role": role,
            "scopes": scopes, "auth": {"token": token},
            "device": {"id": device_id, "publicKey": b64url(raw),
                       "signature": b64url(key.sign(payload.encode())),
                       "signedAt": signed_at, "nonce": nonce},
        }
        await ws.send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params}))
        print(json.dumps(json.loads(await ws.recv())))


asyncio.run(main())
