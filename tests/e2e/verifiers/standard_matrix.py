"""Verifies several real Hookline deliveries against several secrets with the official PyPI library
`standardwebhooks`, as receivers holding each secret would (the rotation test: a receiver may switch
secrets at any moment).

Reads JSON on stdin: {"secrets": [whsec_…], "deliveries": [{"headers": {…}, "body": text}]}. Prints a list
(one per delivery) of lists (one per secret) of "ok" or the library's error text.
"""

import json
import sys

from standardwebhooks import Webhook


def attempt(secret, headers, body):
    try:
        Webhook(secret).verify(body.encode(), headers)
        return "ok"
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def main():
    case = json.load(sys.stdin)
    print(json.dumps([
        [attempt(s, d["headers"], d["body"]) for s in case["secrets"]] for d in case["deliveries"]
    ]))


if __name__ == "__main__":
    main()
