#!/usr/bin/env python3
"""A webhook receiver for trying Hookline locally (`make run`). Standard library only.

Answers TMI's verification challenge, prints every delivery, and checks its signature when given the
subscription's secret:

    python3 scripts/dev-receiver.py --port 9000 [--secret <secret from the create response>] [--async]
"""
import argparse
import hashlib
import hmac
import json
from http.server import BaseHTTPRequestHandler, HTTPServer


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
            sig = self.headers.get("X-Webhook-Signature", "")
            verdict = "unsigned"
            if sig and args.secret:
                want = "sha256=" + hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
                verdict = "signature OK" if hmac.compare_digest(want, sig) else "signature MISMATCH"
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
