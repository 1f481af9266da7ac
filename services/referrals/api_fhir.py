"""HL7 FHIR R4 read and update of referrals for health agencies' systems.

``GET /fhir/ServiceRequest/<id>``, ``GET /fhir/Task/<id>``, ``PUT /fhir/Task/<id>`` (the agency
sends the Task back with a new status), in ``application/fhir+json``, and ``PATCH
/fhir/Task/<id>`` with a JSON Patch (``application/json-patch+json``, RFC 6902) of its
``status``, ``statusReason`` and ``output``, as health systems often send. Same authentication and
scope as the referrals API (an API key sees only its agency's referrals; another agency's is
404). Errors are FHIR ``OperationOutcome`` resources, not problem+json: FHIR clients parse
OperationOutcome, and its issue carries the problem's parts (``details.text`` = title,
``diagnostics`` = detail, ``expression`` = the FHIR paths of the fields, and the problem ``type``
URI as ``details.coding``), so nothing of the problem is lost. Versions follow FHIR: ``ETag:
W/"<version>"`` and ``If-Match`` (or ``meta.versionId``, or a patch's ``test`` of
``/meta/versionId``) guard against a stale update. What is not supported (another media type
such as FHIRPath Patch, ``move``/``copy``, other elements of the Task) answers an
OperationOutcome with the issue code ``not-supported``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from flask.wrappers import Response
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from services.referrals import domain, fhir
from services.referrals.domain import Actor
from services.referrals.models import Referral, tables
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import ADMIN, AGENCY_STAFF, AGENCY_SYSTEM, COORDINATOR, LEAD_SPECIALIST
from shared.db import utcnow
from shared.errors import DomainError
from shared.http import db_session, idempotent, problems
from shared.http.problems import TYPE_BASE
from shared.logging import correlation_id

fhir_api = Blueprint(
    "fhir",
    __name__,
    url_prefix="/fhir",
    description="HL7 FHIR R4 view of referrals (ServiceRequest + Task) for health agencies",
)

EVERYONE = (LEAD_SPECIALIST, COORDINATOR, ADMIN, AGENCY_STAFF, AGENCY_SYSTEM)
REFERRAL_FIELDS = ["family_number", "reason", "contact"]
# problem status -> OperationOutcome issue code (http://hl7.org/fhir/issue-type)
ISSUE_CODES = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    412: "conflict",
    415: "not-supported",
    422: "invalid",
    503: "transient",
}
# problem code -> issue code, where the status alone says too little
ISSUE_CODES_BY_PROBLEM = {"fhir-not-supported": "not-supported"}
_TASK_EXAMPLE = {
    "resourceType": "Task",
    "id": "<referral id>",
    "meta": {"versionId": "4"},
    "status": "completed",
    "intent": "order",
    "output": [{"type": {"text": "outcome"}, "valueString": "консультация проведена"}],
}
_PATCH_EXAMPLE = [
    {"op": "test", "path": "/meta/versionId", "value": "4"},
    {"op": "replace", "path": "/status", "value": "rejected"},
    {"op": "replace", "path": "/statusReason", "value": {"text": "нет свободных мест"}},
]
_FHIR_RESOURCE_DOC = {
    "content": {fhir.FHIR_JSON: {"schema": {"type": "object", "additionalProperties": True}}}
}
_OUTCOME_DOC = {
    "content": {
        fhir.FHIR_JSON: {
            "schema": {
                "type": "object",
                "required": ["resourceType", "issue"],
                "properties": {
                    "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                    "id": {"type": "string"},
                    "issue": {"type": "array", "items": {"type": "object"}},
                },
            }
        }
    }
}


def _answers(success: str, errors: dict[int, str]) -> dict[str, Any]:
    """The documented answers of a FHIR operation: the resource, and every error (the listed
    ones and the rest as ``default``) as an OperationOutcome in ``application/fhir+json``."""
    responses: dict[str, Any] = {"200": {"description": success, **_FHIR_RESOURCE_DOC}}
    for status, description in [*errors.items(), ("default", "OperationOutcome")]:
        responses[str(status)] = {"description": description, **_OUTCOME_DOC}
    return responses


def fhir_response(
    resource: dict[str, Any], status: int = 200, version: int | None = None
) -> Response:
    response: Response = current_app.response_class(
        json.dumps(resource, ensure_ascii=False), status=status, mimetype=fhir.FHIR_JSON
    )
    if version is not None:
        response.headers["ETag"] = f'W/"{version}"'
    return response


def operation_outcome(exc: DomainError) -> Response:
    """A domain error as FHIR's error resource, with the same parts as our problem+json."""
    code = ISSUE_CODES_BY_PROBLEM.get(exc.code) or ISSUE_CODES.get(exc.status, "processing")
    issue: dict[str, Any] = {
        "severity": "error",
        "code": code,
        "details": {
            "coding": [{"system": TYPE_BASE.rstrip("/"), "code": exc.code}],
            "text": exc.title,
        },
        "diagnostics": problems.without_path_values(exc.detail),
    }
    if exc.errors:
        issue["expression"] = sorted(exc.errors)
        issues = [issue] + [
            {
                "severity": "error",
                "code": code,
                "diagnostics": "; ".join(messages),
                "expression": [path],
            }
            for path, messages in sorted(exc.errors.items())
        ]
    else:
        issues = [issue]
    outcome: dict[str, Any] = {"resourceType": "OperationOutcome", "issue": issues}
    corr = correlation_id.get()
    if corr:
        outcome["id"] = corr if len(corr) <= 64 else corr[:64]
    response = fhir_response(outcome, exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _http_outcome(exc: HTTPException) -> Response:
    """Werkzeug's errors on FHIR paths (a body over the size limit, ...) as OperationOutcomes too;
    a server error stays the app's."""
    if (exc.code or 500) >= 500:
        return problems.from_http_exception(exc)
    error = DomainError(exc.description, title=exc.name, code=problems.slug(exc.name))
    error.status = exc.code or 400
    return operation_outcome(error)


fhir_api.register_error_handler(DomainError, operation_outcome)
fhir_api.register_error_handler(HTTPException, _http_outcome)


def _actor() -> Actor:
    return Actor.of(current_principal())


def _audit(referral: Referral, action: str, reason: str | None = None) -> None:
    audit.record(
        db_session(),
        tables,
        action=action,
        entity="referral",
        entity_id=referral.id,
        family_id=referral.family_id,
        fields=REFERRAL_FIELDS,
        reason=reason,
    )


def _read(referral_id: str) -> Referral:
    referral = domain.visible_referral(db_session(), _actor(), referral_id)
    _audit(referral, "read")
    return referral


@fhir_api.route("/ServiceRequest/<referral_id>", methods=["GET"])
@fhir_api.doc(
    responses=_answers("the ServiceRequest", {404: "OperationOutcome: no such referral for you"})
)
@require(*EVERYONE)
def get_service_request(referral_id: str) -> Response:
    """The referral as a FHIR R4 ServiceRequest: what is asked, for which family (by registry
    number only), how urgent, by when."""
    referral = _read(referral_id)
    return fhir_response(fhir.service_request(referral), version=referral.version)


@fhir_api.route("/Task/<referral_id>", methods=["GET"])
@fhir_api.doc(responses=_answers("the Task", {404: "OperationOutcome: no such referral for you"}))
@require(*EVERYONE)
def get_task(referral_id: str) -> Response:
    """The referral's state as a FHIR R4 Task; its status is the referral's status."""
    referral = _read(referral_id)
    return fhir_response(fhir.task(referral), version=referral.version)


@fhir_api.route("/Task/<referral_id>", methods=["PUT"])
@fhir_api.doc(
    requestBody={
        "required": True,
        "content": {fhir.FHIR_JSON: {"schema": {"type": "object"}, "example": _TASK_EXAMPLE}},
    },
    responses=_answers(
        "the Task after the step",
        {
            404: "OperationOutcome: no such referral for you",
            409: "OperationOutcome: illegal step or stale version",
            422: "OperationOutcome naming the FHIR path of the problem",
        },
    ),
)
@require(*EVERYONE)
@idempotent
def put_task(referral_id: str) -> Response:
    """Move the referral by sending its Task back with a new ``status`` (``statusReason.text``
    for a rejection, failure or cancellation; ``output[].valueString`` for the outcome of a
    completion). The same status again changes nothing, so a retried PUT is harmless."""
    update = fhir.parse_task_update(request.get_json(silent=True), referral_id)
    session = db_session()
    who = _actor()
    referral = domain.visible_referral(session, who, referral_id, for_update=True)
    expected = fhir.version_of(request.headers.get("If-Match")) or update["version"]
    _step(referral, who, update, expected)
    return fhir_response(fhir.task(referral), version=referral.version)


@fhir_api.route("/Task/<referral_id>", methods=["PATCH"])
@fhir_api.doc(
    requestBody={
        "required": True,
        "content": {
            fhir.JSON_PATCH: {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": _PATCH_EXAMPLE,
            }
        },
    },
    responses=_answers(
        "the Task after the step",
        {
            404: "OperationOutcome: no such referral for you",
            409: "OperationOutcome: illegal step, stale version, failed test",
            415: "OperationOutcome: only application/json-patch+json",
            422: "OperationOutcome naming the FHIR path of the problem",
        },
    ),
)
@require(*EVERYONE)
@idempotent
def patch_task(referral_id: str) -> Response:
    """Move the referral with a JSON Patch of its Task (``replace`` of ``/status``,
    ``/statusReason``, ``/output``; ``test`` of ``/meta/versionId`` as a guard): the patched Task
    is read as a PUT's would be, to the same step. The same status again changes nothing."""
    if request.mimetype != fhir.JSON_PATCH:
        raise fhir.UnsupportedMediaType(
            f"a Task is patched with {fhir.JSON_PATCH} (JSON Patch, RFC 6902)",
            errors={"Task": [f"send {fhir.JSON_PATCH}"]},
        )
    session = db_session()
    who = _actor()
    referral = domain.visible_referral(session, who, referral_id, for_update=True)
    patched = fhir.apply_task_patch(fhir.task(referral), request.get_json(silent=True))
    update = fhir.parse_task_update(patched, referral_id)
    _step(referral, who, update, fhir.version_of(request.headers.get("If-Match")))
    return fhir_response(fhir.task(referral), version=referral.version)


def _step(referral: Referral, who: Actor, update: dict[str, Any], expected: int | None) -> None:
    """The lifecycle step a Task update asks for; none when the status is already so."""
    if update["status"] == referral.status:
        return
    domain.transition(
        db_session(),
        who,
        referral,
        update["status"],
        utcnow(),
        reason=update["reason"],
        outcome=update["outcome"],
        expected_version=expected,
    )
    _audit(referral, "update", update["reason"])
