"""Referral events that concern the receiving agency, sent the way that agency takes them.

``dispatch`` is called next to every ``publish`` of a referral event the agency should hear
about (sent, status changed, claimed, commented, overdue). The agency's ``delivery`` decides:

- ``api``: nothing to push, the agency system polls ``GET /referrals/changes``;
- ``webhook``: a row in ``webhook_deliveries`` per matching subscription (webhooks.py), POSTed
  by the delivery job after commit;
- ``amqp``: a message staged for the agency's own queue (agency_channel.py);
- ``link``: nothing here: notifications emails/SMSes the signed link from the bus event.

All of it is written in the caller's transaction, so a rolled-back change sends nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy.orm import Session

from services.referrals import webhooks
from services.referrals.models import Agency, Referral

log = logging.getLogger(__name__)


def concerns_agency(referral: Referral, event_name: str, data: dict[str, Any]) -> bool:
    """Only referrals the agency has been sent: a draft, or a draft cancelled or entered in
    error before it left, never reached it."""
    if referral.agency_id is None or referral.status == "draft":
        return False
    if event_name == "referrals.referral.status_changed":
        return not (data.get("previous_status") == "draft" and data.get("status") != "requested")
    return True


def dispatch(
    session: Session,
    referral: Referral,
    event_name: str,
    data: dict[str, Any],
    *,
    now: dt.datetime | None = None,
) -> None:
    if not concerns_agency(referral, event_name, data):
        return
    agency = session.get(Agency, referral.agency_id)
    if agency is None or not agency.active:
        return
    if agency.delivery == "webhook":
        webhooks.enqueue(session, agency, referral, event_name, data, now=now)
    elif agency.delivery == "amqp":
        from services.referrals.agency_channel import stage_for_agency  # it imports this module

        stage_for_agency(session, agency, referral, event_name, data)
