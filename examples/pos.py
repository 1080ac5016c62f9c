#!/usr/bin/env python3
"""A minimal campuspay POS terminal in Python, using pika.

It does what a real till does when the cashier presses "charge" (reverse scan, the default):
  1. checks the scanned payment code offline (18 digits, campuspay's prefix, Luhn check digit);
  2. logs in to RabbitMQ as the terminal's OWN broker user (`campuspay admin terminal add`
     prints its amqp url once). That user may publish only to pay.requests with routing keys
     pos.<merchant>.<terminal>.*, read only its result queue pos.<merchant>.<terminal> (which
     `admin terminal add` created), and declare nothing;
  3. publishes a scan.v1 message to pay.requests with routing key
     pos.<merchant>.<terminal>.scan: persistent, mandatory, publisher-confirmed, with the
     terminal's JWT in the "authorization" header and its broker user in the user_id property;
  4. waits for the answer whose request_id matches, prints it as JSON on stdout. Above the
     card's password-free amount the first answer is a `pending` result.v1 (reason
     user_confirming): the cardholder confirms on the phone, and the final one follows.

Retrying after a timeout or a lost connection: run it again with the SAME --request-id (it is
printed on stderr). The same request never moves money twice and always gets the same result.
When a retry does not help either, ask (--query) or cancel (--reverse) that request:

    pip install pika
    export CAMPUSPAY_TERMINAL_AMQP_URL='amqp://pos.cafe.py1:…@broker:5672/%2f'  # printed once
    export CAMPUSPAY_TERMINAL_TOKEN='eyJ…'                                     # printed once
    python3 examples/pos.py --merchant cafe --terminal py1 --code 881590846294231086 --amount 12.50
    python3 examples/pos.py --merchant cafe --terminal py1 --token "$TOKEN" --query --request-id ID
    python3 examples/pos.py --merchant cafe --terminal py1 --token "$TOKEN" --reverse --request-id ID
    python3 examples/pos.py --merchant cafe --terminal py1 --token "$TOKEN" --dynamic-qr --amount 8.50

Exit status (the same table as `campuspay pos`): 0 ok, 1 error, 2 usage error, 3 declined,
4 pending or unknown outcome.
  scan, --query   0 approved, 3 declined (or reversed), 4 no final result (query_status.v1:
                  unknown / processing, or no answer in time: ask again with the same
                  --request-id), 1 an error;
  --reverse       0 the customer is not charged (reversed, voided, or it was declined anyway),
                  3 the reversal was refused (query_status.v1 rejected), 4 no answer in time,
                  1 an error;
  --dynamic-qr    0 issued (the EMV payload is in the JSON), 3 declined, 4 no answer in time,
                  1 an error.
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
# Payment codes start with the campus's prefix: 88 unless it set CAMPUSPAY_CODE_PREFIX; 28 for
# codes issued before the prefix changed, until they expire.
CODE_PREFIXES = (os.environ.get("CAMPUSPAY_CODE_PREFIX") or "88", "28")

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
        and code.startswith(CODE_PREFIXES)
        and luhn_ok(code)
    )


# EXIT_USAGE is argparse's own status for a bad command line.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DECLINED, EXIT_UNKNOWN = 0, 1, 2, 3, 4


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exit_status(verb: str, answer: dict) -> int:
    """See the module docstring."""
    kind, status = answer.get("type"), answer.get("status")
    if kind == "query_status.v1":
        if verb == "reversal" or answer.get("state") == "rejected":
            return EXIT_DECLINED
        return EXIT_UNKNOWN
    if verb == "reversal":
        return EXIT_OK
    if verb == "dynamic_qr":
        return EXIT_OK if status == "issued" else EXIT_DECLINED
    return EXIT_OK if status == "approved" else EXIT_DECLINED


def main() -> int:
    p = argparse.ArgumentParser(
        description="A campus-card POS: charge a payment code (scan.v1), ask about (query.v1) or "
        "cancel (reversal.v1) an earlier request, or get a dynamic merchant QR (dynamic_qr.v1)."
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--query", action="store_true", help="ask what became of --request-id (query.v1)"
    )
    action.add_argument(
        "--reverse", action="store_true", help="cancel --request-id (reversal.v1)"
    )
    action.add_argument(
        "--dynamic-qr",
        action="store_true",
        help="ask for a one-time merchant QR code for --amount (dynamic_qr.v1)",
    )
    p.add_argument("--merchant", required=True)
    p.add_argument("--terminal", required=True)
    p.add_argument(
        "--token",
        default=os.environ.get("CAMPUSPAY_TERMINAL_TOKEN"),
        help="terminal JWT from `campuspay admin terminal add` (or $CAMPUSPAY_TERMINAL_TOKEN)",
    )
    p.add_argument("--code", help="the 18-digit payment code shown by the phone (scan)")
    p.add_argument("--amount", help='yuan, a decimal string such as "12.50" (scan, --dynamic-qr)')
    p.add_argument(
        "--request-id",
        help="reuse the request id of an earlier attempt to retry it; "
        "for --query/--reverse, the request asked about",
    )
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("CAMPUSPAY_TERMINAL_AMQP_URL"),
        help="the terminal's own broker login, printed once by `campuspay admin terminal add` "
        "(or $CAMPUSPAY_TERMINAL_AMQP_URL)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result")
    args = p.parse_args()

    if not args.token:
        p.error("--token (or CAMPUSPAY_TERMINAL_TOKEN) is required")
    if not args.amqp_url:
        p.error("--amqp-url (or CAMPUSPAY_TERMINAL_AMQP_URL) is required: the terminal's own login")
    for name in ("merchant", "terminal"):
        if not ID_RE.match(getattr(args, name)):
            p.error(f"--{name} must be 1-32 characters of A-Z a-z 0-9 _ -")
    verb = (
        "query" if args.query else
        "reversal" if args.reverse else
        "dynamic_qr" if args.dynamic_qr else
        "scan"
    )
    # Offline checks a till should make before bothering the gateway. The gateway checks again
    # (and declines with invalid_amount / unknown_code), so skipping them is safe, only slower.
    if verb == "scan" and not (args.code and code_ok(args.code)):
        p.error("--code: not a payment code (18 digits, campuspay's prefix, Luhn check digit): rescan it")
    if verb in ("scan", "dynamic_qr") and not (
        args.amount
        and AMOUNT_RE.match(args.amount)
        and 0 < float(args.amount) <= 100000
    ):
        p.error('--amount must look like "12.50": > 0, at most 100000, at most 2 decimals')
    if verb in ("query", "reversal") and not args.request_id:
        p.error(f"--{'query' if args.query else 'reverse'} needs the --request-id of the earlier request")

    request_id = args.request_id or str(uuid.uuid4())
    try:
        uuid.UUID(request_id)
    except ValueError:
        p.error("--request-id must be a UUID")
    print(f"request_id {request_id}", file=sys.stderr)

    result_queue = f"pos.{args.merchant}.{args.terminal}"
    # Exactly the fields of the schema (schemas/<type>.json): any other field is an error.
    message = {
        "type": f"{verb}.v1",
        "request_id": request_id,
        "merchant_id": args.merchant,
        "terminal_id": args.terminal,
    }
    if verb == "scan":
        message["payment_code"] = args.code
    if verb in ("scan", "dynamic_qr"):
        message["amount"] = args.amount  # a string, never a float
    message["sent_at"] = rfc3339_now()
    # What answers us: result.v1 (scan, query, reversal), query_status.v1 (query, refused
    # reversal), dynamic_qr_issued.v1 (dynamic_qr).
    answers = {
        "scan": ("result.v1",),
        "query": ("result.v1", "query_status.v1"),
        "reversal": ("result.v1", "query_status.v1"),
        "dynamic_qr": ("dynamic_qr_issued.v1",),
    }[verb]

    params = pika.URLParameters(args.amqp_url)
    # The broker checks that user_id is the user we logged in as; campuspay checks that it is
    # this terminal's user.
    broker_user = params.credentials.username
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        # No declare, no bind: `admin terminal add` made the durable result queue and bound it
        # to pay.results, and this login may not configure anything anyway.

        # Publisher confirms: basic_publish returns only once the broker has the message on
        # disk; it raises if the broker nacks it or returns it as unroutable.
        ch.confirm_delivery()
        try:
            ch.basic_publish(
                exchange=REQUESTS_EXCHANGE,
                routing_key=f"{result_queue}.{verb}",
                body=json.dumps(message).encode(),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,  # 2
                    headers={"authorization": f"Bearer {args.token}"},
                    user_id=broker_user,
                ),
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            print("not routed: is the campuspay topology declared?", file=sys.stderr)
            return EXIT_ERROR
        except pika.exceptions.NackError:
            print(f"broker refused the request; retry with --request-id {request_id}", file=sys.stderr)
            return EXIT_ERROR

        # Wait for our answer. Anything else on the queue is a late answer to an earlier
        # request (e.g. one that timed out): a real till would reconcile it; here we log it.
        for method, _props, body in ch.consume(result_queue, inactivity_timeout=args.timeout):
            if method is None:
                print(
                    f"no result within {args.timeout:.0f} s; retry with --request-id {request_id}",
                    file=sys.stderr,
                )
                return EXIT_UNKNOWN
            try:
                result = json.loads(body)
            except ValueError:
                result = None
            ch.basic_ack(method.delivery_tag)
            if (
                not isinstance(result, dict)
                or result.get("request_id") != request_id
                or result.get("type") not in answers
            ):
                print(f"(other message on {result_queue}: {body.decode(errors='replace')})", file=sys.stderr)
                continue
            if result["type"] == "result.v1" and result.get("status") == "pending":
                # Above the card's password-free amount the cardholder confirms on the phone
                # (reason user_confirming); the final result.v1 follows (or query.v1 again).
                print(
                    f"PENDING: waiting for the cardholder to confirm {result.get('total')} on the phone",
                    file=sys.stderr,
                )
                continue
            print(json.dumps(result, indent=2, ensure_ascii=False))
            reason = result.get("reason")
            why = f" ({reason})" if reason else ""
            if result["type"] == "result.v1":
                print(
                    f"{result['status'].upper()}{why}: amount {result.get('amount')}"
                    f" + fee {result['fee']} = total {result.get('total')}",
                    file=sys.stderr,
                )
            elif result["type"] == "query_status.v1":
                print(f"no final result: {result['state'].upper()}{why}", file=sys.stderr)
            else:
                print(
                    f"{result['status'].upper()}{why}: show the payload as a QR code"
                    f" until {result.get('expires_at')}",
                    file=sys.stderr,
                )
            return exit_status(verb, result)
        return EXIT_UNKNOWN
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
