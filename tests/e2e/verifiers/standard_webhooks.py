"""Verifies one real Hookline delivery the way a Standard Webhooks receiver does, with the official PyPI
library `standardwebhooks` (HMAC `v1,`), and shows that tampered variants fail.

Reads JSON on stdin: {"secret", "wrong_secret", "headers": {name: value}, "body": text}. Prints one JSON
object: for each case, "ok" or the library's error text. Cases:
  valid         the delivery as received;
  wrong_secret  verified with another whsec_ secret;
  body_changed  the body with one byte changed;
  stale         the delivery as received, verified by a clock 10 minutes later (the library's 5-minute
                tolerance), so only the timestamp is wrong.
"""

import json
import sys
from datetime import datetime, timedelta

import standardwebhooks.webhooks as sw


def attempt(secret, headers, body):
    try:
        sw.Webhook(secret).verify(body.encode(), headers)
        return "ok"
    except Exception as e:  # the library's WebhookVerificationError, or a decoding error
        return f"{type(e).__name__}: {e}"


class TenMinutesLater(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(minutes=10)


def main():
    case = json.load(sys.stdin)
    secret, headers, body = case["secret"], case["headers"], case["body"]
    # One byte changed: the last character before the closing brace.
    changed = body[:-2] + chr(ord(body[-2]) ^ 1) + body[-1:]
    out = {
        "valid": attempt(secret, headers, body),
        "wrong_secret": attempt(case["wrong_secret"], headers, body),
        "body_changed": attempt(secret, headers, changed),
    }
    real = sw.datetime
    sw.datetime = TenMinutesLater
    try:
        out["stale"] = attempt(secret, headers, body)
    finally:
        sw.datetime = real
    print(json.dumps(out))


if __name__ == "__main__":
    main()
