#!/usr/bin/env python3
"""A minimal campuspay POS terminal (reverse scan) in Python, using pika.

It does what a real till does when the cashier presses "charge":
  1. checks the scanned payment code offline (18 digits, prefix 28, Luhn check digit);
  2. declares the terminal's durable result queue pos.<merchant>.<terminal> (with exactly the
     arguments campuspay uses) and binds it to the pay.results exchange;
  3. publishes a scan.v1 message to pay.requests with routing key
     pos.<merchant>.<terminal>.scan: persistent, mandatory, publisher-confirmed, with the
     terminal's JWT in the "authorization" header;
  4. waits for the result.v1 whose request_id matches, prints it as JSON on stdout.

Retrying after a timeout or a lost connection: run it again with the SAME --request-id (it is
printed on stderr). The same request never moves money twice and always gets the same result.

    pip install pika
    python3 examples/pos.py --merchant cafe --terminal py1 --token "$TOKEN" \
        --code 281590846294231087 --amount 12.50

Exit status: 0 approved, 1 declined, 2 no result in time or an error.
"""

import argparse
import json
import os
import re
import sys
import uuid
from datetime import datetime, timezone

import pika

REQUESTS_EXCHANGE = "pay.requests"
RESULTS_EXCHANGE = "pay.results"

# Must be exactly campuspay's result_queue_args() (src/broker/topology.rs): the queue may already
# exist (`campuspay admin terminal add` creates it), and re-declaring it with different arguments
# fails with PRECONDITION_FAILED and closes the channel.
RESULT_QUEUE_ARGS = {
    "x-queue-type": "classic",
    "x-message-ttl": 86_400_000,  # results wait one day for an offline terminal
    "x-max-length": 10_000,
    "x-overflow": "reject-publish",
}

AMOUNT_RE = re.compile(r"^(0|[1-9][0-9]{0,5})(\.[0-9]{1,2})?$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:  # every second digit from the right, the check digit being i = 0
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def code_ok(code: str) -> bool:
    return (
        len(code) == 18
        and code.isascii()
        and code.isdigit()
        and code.startswith("28")
        and luhn_ok(code)
    )


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main() -> int:
    p = argparse.ArgumentParser(description="Charge a campus card by scanning its payment code.")
    p.add_argument("--merchant", required=True)
    p.add_argument("--terminal", required=True)
    p.add_argument(
        "--token",
        default=os.environ.get("CAMPUSPAY_TERMINAL_TOKEN"),
        help="terminal JWT from `campuspay admin terminal add` (or $CAMPUSPAY_TERMINAL_TOKEN)",
    )
    p.add_argument("--code", required=True, help="the 18-digit payment code shown by the phone")
    p.add_argument("--amount", required=True, help='yuan, a decimal string such as "12.50"')
    p.add_argument("--request-id", help="reuse the request id of an earlier attempt to retry it")
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
    args = p.parse_args()

    if not args.token:
        p.error("--token (or CAMPUSPAY_TERMINAL_TOKEN) is required")
    for name in ("merchant", "terminal"):
        if not ID_RE.match(getattr(args, name)):
            p.error(f"--{name} must be 1-32 characters of A-Z a-z 0-9 _ -")
    # Offline checks a till should make before bothering the gateway. The gateway checks again
    # (and declines with invalid_amount / unknown_code), so skipping them is safe, only slower.
    if not code_ok(args.code):
        p.error("not a payment code (18 digits starting with 28, Luhn check digit): rescan it")
    if not AMOUNT_RE.match(args.amount) or float(args.amount) <= 0 or float(args.amount) > 100000:
        p.error('amount must look like "12.50": > 0, at most 100000, at most 2 decimals')

    request_id = args.request_id or str(uuid.uuid4())
    try:
        uuid.UUID(request_id)
    except ValueError:
        p.error("--request-id must be a UUID")
    print(f"request_id {request_id}", file=sys.stderr)

    result_queue = f"pos.{args.merchant}.{args.terminal}"
    scan = {
        "type": "scan.v1",
        "request_id": request_id,
        "merchant_id": args.merchant,
        "terminal_id": args.terminal,
        "payment_code": args.code,
        "amount": args.amount,  # a string, never a float
        "sent_at": rfc3339_now(),
    }

    conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    try:
        ch = conn.channel()
        # Declare and bind the result queue BEFORE publishing, so the result cannot miss it.
        ch.queue_declare(queue=result_queue, durable=True, arguments=RESULT_QUEUE_ARGS)
        ch.queue_bind(queue=result_queue, exchange=RESULTS_EXCHANGE, routing_key=result_queue)

        # Publisher confirms: basic_publish returns only once the broker has the message on
        # disk; it raises if the broker nacks it or returns it as unroutable.
        ch.confirm_delivery()
        try:
            ch.basic_publish(
                exchange=REQUESTS_EXCHANGE,
                routing_key=f"{result_queue}.scan",
                body=json.dumps(scan).encode(),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,  # 2
                    headers={"authorization": f"Bearer {args.token}"},
                ),
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            print("not routed: is the campuspay topology declared?", file=sys.stderr)
            return 2
        except pika.exceptions.NackError:
            print(f"broker refused the request; retry with --request-id {request_id}", file=sys.stderr)
            return 2

        # Wait for our result. Anything else on the queue is a late result of an earlier
        # request (e.g. one that timed out): a real till would reconcile it; here we log it.
        for method, _props, body in ch.consume(result_queue, inactivity_timeout=args.timeout):
            if method is None:
                print(
                    f"no result within {args.timeout:.0f} s; retry with --request-id {request_id}",
                    file=sys.stderr,
                )
                return 2
            try:
                result = json.loads(body)
            except ValueError:
                result = None
            ch.basic_ack(method.delivery_tag)
            if not isinstance(result, dict) or result.get("request_id") != request_id:
                print(f"(other result on {result_queue}: {body.decode(errors='replace')})", file=sys.stderr)
                continue
            print(json.dumps(result, indent=2, ensure_ascii=False))
            status, reason = result["status"], result.get("reason")
            print(
                f"{status.upper()}{f' ({reason})' if reason else ''}: amount {result.get('amount')}"
                f" + fee {result['fee']} = total {result.get('total')}",
                file=sys.stderr,
            )
            return 0 if status == "approved" else 1
        return 2
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
