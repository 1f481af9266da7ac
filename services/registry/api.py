"""The registry's HTTP API for families: a thin adapter over domain.py. Cases, plans and the
rest are in ``api_cases`` and ``api_admin``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Response, jsonify
from flask_smorest import Blueprint
from sqlalchemy import select

from services.registry import access, domain, domain_cases, domain_search, duplicates, export
from services.registry.models import ADDRESS_FIELDS, Case, Family, FamilyLink, Measure, tables
from services.registry.schemas import (
    CandidateList,
    CategoryChangeIn,
    CategoryChangeOut,
    DuplicateCheckIn,
    FamilyAgencyOut,
    FamilyExportArgs,
    FamilyIn,
    FamilyListArgs,
    FamilyOut,
    FamilyPage,
    FamilyPatch,
    LinkIn,
    LinkOut,
)
from services.registry.schemas_cases import CaseOpenIn, CaseOut
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.db import transaction
from shared.errors import Forbidden, RuleViolation
from shared.http import db_session, idempotent, opora_app

families = Blueprint(
    "families", __name__, url_prefix="/families", description="The data bank of families"
)

CASEWORK = (LEAD_SPECIALIST, COORDINATOR)
SCOPED = (*CASEWORK, AGENCY_STAFF, AGENCY_SYSTEM)
FAMILY_FIELDS = access.FIELDS[access.FULL]


class Card:
    """A family as an answer shows it: the record, how it is seen, and what the answer adds."""

    def __init__(self, family: Family, access: str, candidates: list[Any] | None = None) -> None:
        self._family = family
        self.access = access
        self.duplicate_candidates = candidates or []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._family, name)


def record(
    action: str, entity: str, entity_id: str | None, family_id: str | None, **kw: Any
) -> None:
    audit.record(
        db_session(),
        tables,
        action=action,
        entity=entity,
        entity_id=entity_id,
        family_id=family_id,
        **kw,
    )


def record_list(
    action: str, entity: str, family_ids: Iterable[str | None], fields: list[str]
) -> None:
    """A list or search answer: one entry for each family in it (one INSERT)."""
    audit.record_families(
        db_session(), tables, action=action, entity=entity, family_ids=family_ids, fields=fields
    )


def _record_refusal(family_id: str) -> None:
    """A refused look at a family is kept too, in its own transaction: the request's rolls back."""
    with transaction(opora_app().sessions) as session:
        audit.record(
            session,
            tables,
            action="denied",
            entity="family",
            entity_id=family_id,
            family_id=family_id,
        )


@families.route("", methods=["POST"])
@families.arguments(FamilyIn)
@families.response(201, FamilyOut)
@require(*CASEWORK)
@idempotent
def register_family(data: dict[str, Any]) -> Any:
    """Enter a family in the data bank (its first case opens in preparatory).

    The answer lists `duplicate_candidates`: families it may duplicate, with a score and the
    fields that matched. A coordinator sends `link_to` to add the report to an existing family
    instead of creating a second one (answer 200).
    """
    session = db_session()
    if data.get("link_to"):
        if not current_principal().has_role(COORDINATOR):
            raise Forbidden("linking a report to an existing family is the coordinator's")
        family = domain.get_family(session, data["link_to"])
        score = duplicates.score_family(data, family).score
        domain.link_report(session, family, data, score=score)
        record("update", "family", family.id, family.id, fields=["members", "contacts", "link"])
        return Card(family, access.FULL), 200
    family = domain.register_family(session, data)
    candidates = duplicates.find_candidates(session, data, exclude=family.id)
    record("create", "family", family.id, family.id, fields=FAMILY_FIELDS)
    return Card(family, access.FULL, candidates), 201, {"Location": f"/families/{family.id}"}


@families.route("", methods=["GET"])
@families.arguments(FamilyListArgs, location="query")
@families.response(200, FamilyPage)
@require(*SCOPED)
def list_families(args: dict[str, Any]) -> Any:
    """Search and filter: district, settlement, category, stage, lead specialist, overdue
    measures, in the bank or removed; `q` finds any member's name (children included) in
    Cyrillic or Latin, with typos, and birth dates. Agency staff see only the families their
    agency reads under the family's consent (or after breaking the glass)."""
    session = db_session()
    page = domain_search.find(
        session,
        args,
        scope=access.agency_scope(),
        page=args["page"],
        page_size=args["page_size"],
    )
    record_list(
        audit.LIST,
        "family",
        [f.id for f in page["items"]],
        fields=["number", "display_name", "district", "settlement"],
    )
    return page


EXPORT_LIMIT = 10_000
EXPORT_DOC = {
    "200": {
        "description": "The filtered list as a file (`format`: csv or xlsx)",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            export.MEDIA["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@families.route("/export", methods=["GET"])
@families.arguments(FamilyExportArgs, location="query")
@families.doc(responses=EXPORT_DOC)
@require(COORDINATOR)
def export_families(args: dict[str, Any]) -> Any:
    """The filtered list (the same filters and order as the list) as CSV or XLSX, for
    coordinators; recorded in the audit trail as an export of every family in it. At most
    10,000 families: narrow the filters past that."""
    session = db_session()
    stmt = domain_search.search_families(
        args, scope=access.agency_scope(), session=session, window=EXPORT_LIMIT + 1
    )
    families_ = list(session.scalars(stmt.limit(EXPORT_LIMIT + 1)))
    if len(families_) > EXPORT_LIMIT:
        raise RuleViolation(
            f"more than {EXPORT_LIMIT} families match",
            errors={"filters": [f"narrow the filters to at most {EXPORT_LIMIT} families"]},
        )
    table = export.rows(session, families_)
    audit.record_each(
        session,
        tables,
        action=audit.EXPORT,
        entity="family",
        targets=[(f.id, f.id) for f in families_],
        fields=export.FIELDS,
    )
    fmt = args["format"]
    body = export.to_csv(table) if fmt == "csv" else export.to_xlsx(table)
    name = f"opora-families-{domain.today().isoformat()}.{fmt}"
    return Response(
        body,
        mimetype=export.MEDIA[fmt].split(";")[0],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Type": export.MEDIA[fmt],
            "Cache-Control": "no-store",
        },
    )


@families.route("/duplicates", methods=["POST"])
@families.arguments(DuplicateCheckIn)
@families.response(200, CandidateList)
@require(*CASEWORK)
def check_duplicates(data: dict[str, Any]) -> Any:
    """Before registering: which families in the bank this report may describe."""
    candidates = duplicates.find_candidates(db_session(), data)
    record_list(audit.SEARCH, "family", [c.family_id for c in candidates], fields=["duplicates"])
    return {"candidates": candidates}


@families.route("/<family_id>", methods=["GET"])
@families.response(200, FamilyOut)
@require(*SCOPED)
def get_family(family_id: str) -> Any:
    """The family's card. Agency staff get the agency view (`FamilyAgencyOut`): address,
    members, and the measures assigned to their agency; after breaking the glass, contacts."""
    session = db_session()
    family = domain.get_family(session, family_id)
    try:
        level = access.access_level(session, family.id)
    except Forbidden:
        _record_refusal(family.id)
        raise
    record("read", "family", family.id, family.id, fields=access.FIELDS[level])
    if level == access.FULL:
        return Card(family, level)
    principal = current_principal()
    view: dict[str, Any] = {
        "id": family.id,
        "number": family.number,
        "category": family.category,
        "address": {key: getattr(family, key) for key in ADDRESS_FIELDS},
        "members": family.members,
        "stage": family.stage,
        "access": level,
        "measures": list(
            session.scalars(
                select(Measure)
                .join(Case, Case.id == Measure.case_id)
                .where(Measure.family_id == family.id, Measure.agency_id == principal.agency_id)
                .order_by(Measure.deadline)
            )
        ),
    }
    if level == access.EMERGENCY:
        grant = access.active_glass(session, family.id, principal.subject)
        view.update(contacts=family.contacts, lead_specialist=family.lead_specialist)
        view["access_expires_at"] = grant.expires_at if grant else None
    return jsonify(FamilyAgencyOut().dump(view))


@families.route("/<family_id>", methods=["PATCH"])
@families.arguments(FamilyPatch)
@families.response(200, FamilyOut)
@require(*CASEWORK)
@idempotent
def update_family(data: dict[str, Any], family_id: str) -> Any:
    """Change address, members (send each kept member's `id`), contacts and notes."""
    session = db_session()
    family = domain.get_family(session, family_id)
    changed = domain.update_family(session, family, data)
    record("update", "family", family.id, family.id, fields=changed)
    return Card(family, access.FULL)


@families.route("/<family_id>/duplicates", methods=["GET"])
@families.response(200, CandidateList)
@require(*CASEWORK)
def family_duplicates(family_id: str) -> Any:
    """On demand: other families this one may duplicate."""
    session = db_session()
    family = domain.get_family(session, family_id)
    candidates = duplicates.find_candidates(
        session, duplicates.family_as_report(family), exclude=family.id
    )
    record("search", "family", family.id, family.id, fields=["duplicates"])
    record_list(audit.SEARCH, "family", [c.family_id for c in candidates], fields=["duplicates"])
    return {"candidates": candidates}


@families.route("/<family_id>/links", methods=["POST"])
@families.arguments(LinkIn)
@families.response(201, LinkOut)
@require(COORDINATOR)
@idempotent
def link_duplicate(data: dict[str, Any], family_id: str) -> Any:
    """Fold a record registered twice (`duplicate_id`) into this family; the duplicate goes."""
    session = db_session()
    family = domain.get_family(session, family_id)
    duplicate = domain.get_family(session, data["duplicate_id"])
    link = domain.merge_record(session, duplicate, family)
    record("update", "family", family.id, family.id, fields=["members", "contacts", "link"])
    record("delete", "family", duplicate.id, duplicate.id, reason=f"linked to {family.number}")
    return link


@families.route("/<family_id>/links", methods=["GET"])
@families.response(200, LinkOut(many=True))
@require(*CASEWORK)
def list_links(family_id: str) -> Any:
    session = db_session()
    domain.get_family(session, family_id)
    record("read", "family", family_id, family_id, fields=["links"])
    return session.scalars(
        select(FamilyLink).where(FamilyLink.family_id == family_id).order_by(FamilyLink.linked_at)
    ).all()


@families.route("/<family_id>/category", methods=["POST"])
@families.arguments(CategoryChangeIn)
@families.response(201, CategoryChangeOut)
@require(*CASEWORK)
@idempotent
def change_category(data: dict[str, Any], family_id: str) -> Any:
    """Change the category (sop / risk_group / tzhs) with a date and a justification."""
    session = db_session()
    family = domain.get_family(session, family_id)
    change = domain.change_category(
        session,
        family,
        data["category"],
        justification=data["justification"],
        changed_on=data.get("changed_on"),
    )
    record("update", "family", family.id, family.id, fields=["category"])
    return change


@families.route("/<family_id>/category", methods=["GET"])
@families.response(200, CategoryChangeOut(many=True))
@require(*CASEWORK)
def category_history(family_id: str) -> Any:
    """Every category the family has had, oldest first."""
    session = db_session()
    domain.get_family(session, family_id)
    record("read", "family", family_id, family_id, fields=["category_history"])
    return domain.category_history(session, family_id)


@families.route("/<family_id>/cases", methods=["GET"])
@families.response(200, CaseOut(many=True))
@require(*CASEWORK)
def list_cases(family_id: str) -> Any:
    """The family's support episodes, latest first."""
    session = db_session()
    domain.get_family(session, family_id)
    record("read", "case", None, family_id)
    return session.scalars(
        select(Case)
        .where(Case.family_id == family_id)
        .order_by(Case.opened_on.desc(), Case.created_at.desc())
    ).all()


@families.route("/<family_id>/cases", methods=["POST"])
@families.arguments(CaseOpenIn)
@families.response(201, CaseOut)
@require(*CASEWORK)
@idempotent
def open_case(data: dict[str, Any], family_id: str) -> Any:
    """A family reported again after leaving the data bank gets a new case (a re-entry)."""
    session = db_session()
    family = domain.get_family(session, family_id)
    case = domain_cases.open_case(
        session, family, source=data["source"], lead=data.get("lead_specialist")
    )
    record("create", "case", case.id, family.id)
    return case, 201, {"Location": f"/cases/{case.id}"}
