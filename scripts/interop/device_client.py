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
import json
import sys
import time

import websockets

from devicekit import Device, signed_payload


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
    dev = Device.from_file(keyfile)
    # An Origin header makes a loopback CLI client ineligible for silent pairing.
    headers = {"Origin": f"http://127.0.0.1:{port}"} if origin else {}
    async with websockets.connect(f"ws://127.0.0.1:{port}/", additional_headers=headers) as ws:
        challenge = json.loads(await ws.recv())
        nonce = challenge["payload"]["nonce"]
        signed_at = int(time.time() * 1000)
        client = {"id": "cli", "version": "1", "platform": "linux", "mode": "cli",
                  "displayName": "interop-device"}
        payload = signed_payload("v3", dev.id, client, role, scopes, signed_at, token, nonce)
        params = {
            "minProtocol": 4, "maxProtocol": 4, "client": client, "role": role,
            "scopes": scopes, "auth": {"token": token},
            "device": {"id": dev.id, "publicKey": dev.public_key,
                       "signature": dev.sign(payload),
                       "signedAt": signed_at, "nonce": nonce},
        }
        await ws.send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params}))
        print(json.dumps(json.loads(await ws.recv())))


asyncio.run(main())
