"""A minimal agency system on Opora's AMQP channel: it receives the referrals addressed to its
agency and accepts each new one (``received``, then ``accepted``), printing ids and statuses
only (a referral's text may name people; keep it out of logs).

    python examples/agency_system.py --url amqp://127.0.0.1:5672/%2F \
        --agency-id school-1 --password "$(cat school-1.password)"

See examples/README.md for running it against ``make run``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from services.referrals.agency_client import AgencyClient, InboxMessage

NEW = "requested"


def referral_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """(id, status) from the Opora form, or from the FHIR Task of a health agency's Bundle."""
    if "referral" in body:
        return body["referral"]["id"], body["referral"]["status"]
    for entry in body.get("fhir", {}).get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Task":
            return resource["id"], resource["status"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="amqp(s)://host:port/vhost of the broker")
    parser.add_argument("--agency-id", required=True, help="the agency's id in the directory")
    parser.add_argument("--password", required=True, help="the password of agency-<id>")
    parser.add_argument("--prefix", default="opora", help="OPORA_BROKER_PREFIX (default opora)")
    parser.add_argument(
        "--idle-exit", type=float, default=None, help="stop after this many idle seconds"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("agency-system")

    with AgencyClient(
        args.url, args.agency_id, password=args.password, prefix=args.prefix
    ) as client:

        def handle(message: InboxMessage) -> None:
            found = referral_of(message.body)
            if found is None:
                log.info("skipped a %s message without a referral", message.type)
                return
            referral_id, status = found
            log.info("%s: referral %s is %s", message.type, referral_id, status)
            if status == NEW:
                # message ids derived from the referral: a re-run after a crash sends duplicates
                # that Opora ignores, not a second step
                client.send_status(referral_id, "received", message_id=f"{referral_id}-received")
                client.send_status(referral_id, "accepted", message_id=f"{referral_id}-accepted")
                log.info("referral %s: received and accepted", referral_id)

        log.info("listening on %s", client.inbox)
        try:
            handled = client.receive(handle, inactivity_timeout=args.idle_exit)
        except KeyboardInterrupt:
            return 0
    log.info("idle for %ss after %d messages; bye", args.idle_exit, handled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
