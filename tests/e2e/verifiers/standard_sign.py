"""Signs a receiver's request the way a Standard Webhooks receiver would, with the official PyPI library
`standardwebhooks`: `Webhook(secret).sign(msg_id, timestamp, body)`.

Reads JSON on stdin: {"secret", "msg_id", "body"}. Prints the headers to send:
{"webhook-id", "webhook-timestamp", "webhook-signature"}.
"""

import json
import sys
from datetime import datetime, timezone
from math import floor

from standardwebhooks import Webhook


def main():
    case = json.load(sys.stdin)
    now = datetime.now(tz=timezone.utc)
    signature = Webhook(case["secret"]).sign(case["msg_id"], now, case["body"])
    print(json.dumps({
        "webhook-id": case["msg_id"],
        "webhook-timestamp": str(floor(now.timestamp())),
        "webhook-signature": signature,
    }))


if __name__ == "__main__":
    main()
