#!/usr/bin/env python3
"""A webhook receiver for trying Hookline locally (`make run`). Standard library only.

Answers TMI's verification challenge, prints every delivery, and checks its signature when given the
subscription's secret (TMI's `X-Webhook-Signature`, or for a `standard` subscription's `whsec_` secret the
Standard Webhooks `v1,` entries of `webhook-signature`; see docs/receivers.md):

    python3 scripts/dev-receiver.py --port 9000 [--secret <secret from the create response>] [--async]
"""
import argparse
import base64
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify_tmi(secret, body, headers):
    sig = headers.get("X-Webhook-Signature", "")
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig)


def verify_standard(secret, body, headers):
    """Standard Webhooks `v1`: HMAC-SHA256 of `id.timestamp.body` under the decoded `whsec_` secret."""
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "0")
    if abs(time.time() - int(ts)) > 300:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    want = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    entries = headers.get("webhook-signature", "").split(" ")
    return any(hmac.compare_digest("v1," + want, e) for e in entries)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--secret", default="", help="subscription secret, to verify X-Webhook-Signature")
    ap.add_argument("--async", dest="is_async", action="store_true", help="answer with X-TMI-Callback: async")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            event = self.headers.get("X-Webhook-Event", "")
            if event == "webhook.challenge":
                challenge = json.loads(body or b"{}").get("challenge", "")
                out = json.dumps({"challenge": challenge}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                print(f"challenge answered for subscription {self.headers.get('X-Webhook-Subscription-Id')}")
                return
            sig = self.headers.get("X-Webhook-Signature") or self.headers.get("webhook-signature")
            verdict = "unsigned"
            if sig and args.secret:
                check = verify_standard if args.secret.startswith("whsec_") else verify_tmi
                ok = check(args.secret, body, self.headers)
                verdict = "signature OK" if ok else "signature MISMATCH"
            elif sig:
                verdict = "signed (pass --secret to verify)"
            print(f"{event} delivery {self.headers.get('X-Webhook-Delivery-Id')} ({verdict})")
            print("  " + body.decode(errors="replace"))
            self.send_response(200)
            if args.is_async:
                self.send_header("X-TMI-Callback", "async")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    print(f"receiver listening on http://127.0.0.1:{args.port}/hook")
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
