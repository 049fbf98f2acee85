"""Verifies the `v1a,` (Ed25519) entries of one real Hookline delivery with PyPI `cryptography`, an
implementation independent of the ring code that signed it, and shows that tampered variants fail.

Reads JSON on stdin: {"public_key": "whpk_…", "other_public_key": "whpk_…", "headers": {…}, "body": text}.
Prints {case: "ok" | "fail: <why>"} for:
  valid         the delivery as received;
  wrong_key     verified with another subscription's public key;
  body_changed  the body with one byte changed;
  id_changed    another webhook-id (the id is part of the signed content).
"""

import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify(public_key, msg_id, timestamp, body, signature_header):
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    content = f"{msg_id}.{timestamp}.".encode() + body.encode()
    entries = [e.split(",", 1) for e in signature_header.split(" ")]
    v1a = [base64.b64decode(sig) for version, sig in entries if version == "v1a"]
    if not v1a:
        return "fail: no v1a entry"
    for sig in v1a:
        try:
            key.verify(sig, content)
            return "ok"
        except InvalidSignature:
            pass
    return "fail: InvalidSignature"


def main():
    case = json.load(sys.stdin)
    h, body = case["headers"], case["body"]
    msg_id, ts, sig = h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"]
    changed = body[:-2] + chr(ord(body[-2]) ^ 1) + body[-1:]
    print(json.dumps({
        "valid": verify(case["public_key"], msg_id, ts, body, sig),
        "wrong_key": verify(case["other_public_key"], msg_id, ts, body, sig),
        "body_changed": verify(case["public_key"], msg_id, ts, changed, sig),
        "id_changed": verify(case["public_key"], msg_id + "x", ts, body, sig),
    }))


if __name__ == "__main__":
    main()
