"""The raids HTTP API for people and series: calendar feeds, declared absences, recurring
raid series."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.raids import ical, invitations, series
from services.raids.api import (
    EVERYONE,
    OVERSEERS,
    audit_families,
    calendar_response,
    context,
    self_or,
)
from services.raids.models import Absence, Participant, Raid, RaidSeries
from services.raids.presenters import absence_out, series_out
from services.raids.schemas import (
    AbsenceIn,
    AbsenceOut,
    AbsencePage,
    FeedTokenArgs,
    FeedUrlOut,
    PageArgs,
    ReasonIn,
    SeriesIn,
    SeriesOut,
    SeriesPage,
)
from shared.auth.context import current_principal
from shared.auth.links import check_link_token, issue_link_token
from shared.auth.policy import require
from shared.auth.roles import COORDINATOR
from shared.errors import NotFound
from shared.http import db_session, idempotent, link_protected, opora_app, paginate

people = Blueprint(
    "people", __name__, url_prefix="/people", description="Participants' calendars and absences"
)
raid_series = Blueprint(
    "series", __name__, url_prefix="/series", description="Recurring raid series"
)


# --- people: calendars and absences ------------------------------------------------------------


FEED_LINK = "raids-feed"
FEED_LINK_MAX_AGE = 180 * 24 * 3600  # a calendar subscription outlives a session; ask anew after


@people.route("/<person_id>/raids.ics", methods=["GET"])
@people.response(
    200, description="RFC 5545 feed of the person's raids", content_type="text/calendar"
)
@require(*EVERYONE)
def person_feed(person_id: str) -> Any:
    """Every raid the person is on, as a calendar feed (cancelled ones marked so)."""
    self_or(person_id, *OVERSEERS)
    return _feed(person_id)


@people.route("/<person_id>/feed-url", methods=["GET"])
@people.response(200, FeedUrlOut)
@require(*EVERYONE)
def person_feed_url(person_id: str) -> Any:
    """A private link to the person's feed that a calendar app can subscribe to (no login)."""
    self_or(person_id, COORDINATOR)
    settings = opora_app().settings
    token = issue_link_token(settings, FEED_LINK, person_id)
    return {
        "url": f"{settings.public_url}/people/{person_id}/calendar.ics?token={token}",
        "valid_days": FEED_LINK_MAX_AGE // (24 * 3600),
    }


@people.route("/<person_id>/calendar.ics", methods=["GET"])
@people.arguments(FeedTokenArgs, location="query")
@people.response(
    200, description="The same feed, opened by the signed link", content_type="text/calendar"
)
@link_protected
def person_feed_by_link(args: dict[str, Any], person_id: str) -> Any:
    check_link_token(opora_app().settings, args["token"], FEED_LINK, person_id, FEED_LINK_MAX_AGE)
    return _feed(person_id)


def _feed(person_id: str) -> Any:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    found = (
        db_session()
        .scalars(
            select(Raid)
            .join(Participant, Participant.raid_id == Raid.id)
            .where(
                Participant.person_id == person_id,
                Participant.state != "withdrawn",
                Raid.ends_at >= since,
            )
            .order_by(Raid.starts_at)
        )
        .all()
    )
    public_url = opora_app().settings.public_url
    text = ical.render(
        [invitations.calendar_entry(r, public_url) for r in found],
        method="PUBLISH",
        name="Opora: рейды / raids",
    )
    return calendar_response(text, "raids.ics")


@people.route("/<person_id>/absences", methods=["POST"])
@people.arguments(AbsenceIn)
@people.response(201, AbsenceOut)
@require(*EVERYONE)
@idempotent
def declare_absence(data: dict[str, Any], person_id: str) -> Any:
    """Leave, sick days: no raid counts on the person then; raids they are on are listed."""
    self_or(person_id, COORDINATOR)
    absence, affected = series.record_absence(context(), person_id, data)
    return absence_out(absence, affected), 201


@people.route("/<person_id>/absences", methods=["GET"])
@people.arguments(PageArgs, location="query")
@people.response(200, AbsencePage)
@require(*EVERYONE)
def list_absences(args: dict[str, Any], person_id: str) -> Any:
    self_or(person_id, *OVERSEERS)
    stmt = (
        select(Absence)
        .where(Absence.person_id == person_id)
        .order_by(Absence.starts_on.desc(), Absence.id)
    )
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    page["items"] = [absence_out(a) for a in page["items"]]
    return page


@people.route("/<person_id>/absences/<absence_id>", methods=["DELETE"])
@people.response(204)
@require(*EVERYONE)
@idempotent
def withdraw_absence(person_id: str, absence_id: str) -> Any:
    self_or(person_id, COORDINATOR)
    absence = db_session().get(Absence, absence_id)
    if absence is None or absence.person_id != person_id:
        raise NotFound(f"no absence {absence_id} of person {person_id}")
    db_session().delete(absence)
    return None


# --- series ------------------------------------------------------------------------------------


@raid_series.route("", methods=["POST"])
@raid_series.arguments(SeriesIn)
@raid_series.response(201, SeriesOut)
@require(COORDINATOR)
@idempotent
def create_series(data: dict[str, Any]) -> Any:
    """A recurring operation: one raid per occurrence, all checked, all or none created."""
    template = data["raid"]
    template["organizer_email"] = (
        template.get("organizer_email") or opora_app().settings.smtp.sender
    )
    template["organizer_name"] = template.get("organizer_name") or current_principal().name
    created, found, warnings = series.create_series(context(), data)
    for raid in found:
        audit_families(raid, "create")
    return series_out(created, found, warnings), 201, {"Location": f"/series/{created.id}"}


@raid_series.route("", methods=["GET"])
@raid_series.arguments(PageArgs, location="query")
@raid_series.response(200, SeriesPage)
@require(*OVERSEERS)
def list_series(args: dict[str, Any]) -> Any:
    stmt = select(RaidSeries).order_by(RaidSeries.first_date.desc(), RaidSeries.id)
    page = paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])
    page["items"] = [series_out(s, _series_raids(s.id)) for s in page["items"]]
    return page


def _series_raids(series_id: str) -> list[Raid]:
    return list(
        db_session().scalars(
            select(Raid).where(Raid.series_id == series_id).order_by(Raid.starts_at)
        )
    )


@raid_series.route("/<series_id>", methods=["GET"])
@raid_series.response(200, SeriesOut)
@require(*OVERSEERS)
def get_series(series_id: str) -> Any:
    found = db_session().get(RaidSeries, series_id)
    if found is None:
        raise NotFound(f"no series {series_id}")
    return series_out(found, _series_raids(series_id))


@raid_series.route("/<series_id>/cancel", methods=["POST"])
@raid_series.arguments(ReasonIn)
@raid_series.response(200, SeriesOut)
@require(COORDINATOR)
@idempotent
def cancel_series(data: dict[str, Any], series_id: str) -> Any:
    """Cancel the series' raids that have not started yet."""
    found = db_session().get(RaidSeries, series_id)
    if found is None:
        raise NotFound(f"no series {series_id}")
    series.cancel_series(context(), found, data["reason"])
    return series_out(found, _series_raids(series_id))
