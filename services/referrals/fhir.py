"""HL7 FHIR R4 for health agencies, as pure functions: a referral read as a ``ServiceRequest``
(what is asked) plus a ``Task`` (where it stands), and a Task update (the whole Task, or a JSON
Patch of it) read back as a step of the referral's lifecycle. Our statuses are the FHIR Task
statuses, so the Task maps one to one; the ServiceRequest's coarser request status is derived.

The family is referenced by its registry number only (an identifier, no names); the agency and
the people by identifiers of Opora's naming systems. Bad input raises ``RuleViolation`` whose
``errors`` name the FHIR path (e.g. ``Task.status``), which the API turns into an
OperationOutcome issue's ``expression``.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

from services.referrals.events import REFERRAL_STATUSES
from services.referrals.models import Referral
from shared.errors import Conflict, DomainError, RuleViolation

BASE = "https://opora.dev/fhir"
SERVICE_SYSTEM = f"{BASE}/CodeSystem/service"
STATUS_SYSTEM = f"{BASE}/CodeSystem/referral-status"
REFERRAL_SYSTEM = f"{BASE}/NamingSystem/referral"
REFERRAL_NUMBER_SYSTEM = f"{BASE}/NamingSystem/referral-number"
FAMILY_SYSTEM = f"{BASE}/NamingSystem/family-number"
AGENCY_SYSTEM = f"{BASE}/NamingSystem/agency"
PERSON_SYSTEM = f"{BASE}/NamingSystem/person"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
OUTCOME_TYPE = "outcome"
FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
# What a JSON Patch may change: the same parts of the Task as a PUT (the rest is ours).
PATCHABLE = frozenset({"status", "statusReason", "output"})

# Task.status (http://hl7.org/fhir/task-status) has every status of ours, with the same codes.
TASK_STATUSES: tuple[str, ...] = REFERRAL_STATUSES
# ServiceRequest.status (http://hl7.org/fhir/request-status): the request as a whole.
REQUEST_STATUS: dict[str, str] = {
    "draft": "draft",
    "requested": "active",
    "received": "active",
    "accepted": "active",
    "in-progress": "active",
    "on-hold": "on-hold",
    "completed": "completed",
    "rejected": "revoked",
    "failed": "revoked",
    "cancelled": "revoked",
    "entered-in-error": "entered-in-error",
}
# ServiceRequest.priority (http://hl7.org/fhir/request-priority) is our urgency vocabulary.
PRIORITIES = ("routine", "urgent", "asap", "stat")
_VERSION = re.compile(r'^(?:W/)?"?(\d+)"?$')


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def family_reference(referral: Referral) -> dict[str, Any]:
    """The family as a Group known by its registry number: no names, no address."""
    return {
        "type": "Group",
        "identifier": {"system": FAMILY_SYSTEM, "value": referral.family_number},
    }


def agency_reference(agency_id: str | None) -> dict[str, Any] | None:
    if agency_id is None:
        return None
    return {"type": "Organization", "identifier": {"system": AGENCY_SYSTEM, "value": agency_id}}


def _identifiers(referral: Referral) -> list[dict[str, Any]]:
    result = [{"system": REFERRAL_SYSTEM, "value": referral.id}]
    number = getattr(referral, "number", None)
    if number:
        result.append({"system": REFERRAL_NUMBER_SYSTEM, "value": str(number)})
    return result


def _meta(referral: Referral) -> dict[str, Any]:
    return {"versionId": str(referral.version), "lastUpdated": _instant(referral.updated_at)}


def _contact(referral: Referral) -> dict[str, Any] | None:
    """The sending side's contact person (staff, not the family) as a contained Practitioner."""
    contact = referral.contact or {}
    if not contact.get("person_id"):
        return None
    practitioner: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": "contact",
        "identifier": [{"system": PERSON_SYSTEM, "value": contact["person_id"]}],
    }
    if contact.get("name"):
        practitioner["name"] = [{"text": contact["name"]}]
    telecom = [
        {"system": system, "value": contact[key]}
        for key, system in (("phone", "phone"), ("email", "email"))
        if contact.get(key)
    ]
    if telecom:
        practitioner["telecom"] = telecom
    return practitioner


def _deadline(referral: Referral) -> dict[str, Any] | None:
    return {"end": referral.deadline.isoformat()} if referral.deadline else None


def service_request(referral: Referral) -> dict[str, Any]:
    """What is asked of the agency: the service, for which family, how urgent, by when."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": referral.id,
        "meta": _meta(referral),
        "identifier": _identifiers(referral),
        "status": REQUEST_STATUS[referral.status],
        "intent": "order",
        "priority": referral.urgency,
        "code": {"coding": [{"system": SERVICE_SYSTEM, "code": referral.service_code}]},
        "subject": family_reference(referral),
        "authoredOn": _instant(referral.created_at),
        "reasonCode": [{"text": referral.reason}],
    }
    contact = _contact(referral)
    if contact is not None:
        resource["contained"] = [contact]
        resource["requester"] = {"reference": "#contact"}
    performer = agency_reference(referral.agency_id)
    if performer is not None:
        resource["performer"] = [performer]
    deadline = _deadline(referral)
    if deadline is not None:
        # "complete by the deadline": the period within which the service is to happen
        resource["occurrencePeriod"] = deadline
    return resource


def task(referral: Referral) -> dict[str, Any]:
    """Where the referral stands: Task.status is our status, one to one."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": referral.id,
        "meta": _meta(referral),
        "identifier": _identifiers(referral),
        "status": referral.status,
        "businessStatus": {"coding": [{"system": STATUS_SYSTEM, "code": referral.status}]},
        "intent": "order",
        "priority": referral.urgency,
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "focus": {"reference": f"ServiceRequest/{referral.id}"},
        "for": family_reference(referral),
        "authoredOn": _instant(referral.created_at),
        "lastModified": _instant(referral.updated_at),
    }
    owner = agency_reference(referral.agency_id)
    if owner is not None:
        resource["owner"] = owner
    if referral.status == "on-hold" and referral.hold_note:
        resource["businessStatus"]["text"] = referral.hold_note
    if referral.status_reason:
        resource["statusReason"] = {"text": referral.status_reason}
    deadline = _deadline(referral)
    if deadline is not None:
        resource["restriction"] = {"period": deadline}
    if referral.outcome:
        resource["output"] = [{"type": {"text": OUTCOME_TYPE}, "valueString": referral.outcome}]
    return resource


def bundle(referral: Referral, *, bundle_id: str | None = None) -> dict[str, Any]:
    """Both resources together (Bundle type "collection"), as the AMQP inbox carries them."""
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(referral.updated_at),
        "entry": [{"resource": service_request(referral)}, {"resource": task(referral)}],
    }
    if bundle_id:
        result["id"] = bundle_id
    return result


# --- back: a Task update -> a lifecycle step ---------------------------------------------------


def _invalid(path: str, message: str) -> RuleViolation:
    return RuleViolation(f"{path}: {message}", errors={path: [message]}, code="fhir-invalid")


def _text_of(value: Any, path: str) -> str | None:
    """A CodeableConcept's text (or its first coding's display/code)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(path, "must be a CodeableConcept object")
    text = value.get("text")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise _invalid(f"{path}.text", "must be a non-empty string")
        return text
    codings = value.get("coding") or []
    if not isinstance(codings, list):
        raise _invalid(f"{path}.coding", "must be an array")
    for i, coding in enumerate(codings):
        if not isinstance(coding, dict):
            raise _invalid(f"{path}.coding[{i}]", "must be a Coding object")
        found = coding.get("display") or coding.get("code")
        if isinstance(found, str) and found.strip():
            return found
    return None


def _outcome(outputs: Any) -> str | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise _invalid("Task.output", "must be an array")
    for i, output in enumerate(outputs):
        path = f"Task.output[{i}]"
        if not isinstance(output, dict):
            raise _invalid(path, "must be an object")
        value = output.get("valueString")
        if value is None:
            raise _invalid(f"{path}.valueString", "the outcome is given as valueString")
        if not isinstance(value, str) or not value.strip():
            raise _invalid(f"{path}.valueString", "must be a non-empty string")
        return value
    return None


def version_of(tag: str | None) -> int | None:
    """``W/"3"`` (an If-Match ETag) or ``"3"`` (meta.versionId) -> 3."""
    if tag is None:
        return None
    match = _VERSION.match(tag.strip())
    if match is None:
        raise _invalid("Task.meta.versionId", "must be the referral's version, e.g. 3")
    return int(match[1])


def parse_task_update(body: Any, referral_id: str) -> dict[str, Any]:
    """Read a Task sent back by a health agency: ``{status, reason, outcome, version}``.

    Only what the agency may change counts (status, statusReason, output); the rest of the Task
    is ours and ignored. Raises RuleViolation naming the FHIR path of the first problem.
    """
    if not isinstance(body, dict):
        raise _invalid("Task", "the body must be a JSON object (a FHIR Task)")
    if body.get("resourceType") != "Task":
        raise _invalid("Task.resourceType", "must be Task")
    if "id" in body and body["id"] != referral_id:
        raise _invalid("Task.id", "must be the id in the URL")
    status = body.get("status")
    if status is None:
        raise _invalid("Task.status", "is required")
    if status not in TASK_STATUSES:
        raise _invalid("Task.status", f"must be one of {', '.join(TASK_STATUSES)}")
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise _invalid("Task.meta", "must be an object")
    version_id = (meta or {}).get("versionId")
    if version_id is not None and not isinstance(version_id, str):
        raise _invalid("Task.meta.versionId", "must be a string")
    reason = _text_of(body.get("statusReason"), "Task.statusReason")
    return {
        "status": status,
        "reason": reason,
        "outcome": _outcome(body.get("output")),
        "version": version_of(version_id),
    }


def check_version(referral: Referral, expected: int | None) -> None:
    if expected is not None and expected != referral.version:
        raise Conflict(
            f"the referral is at version {referral.version}, not {expected}; read it again",
            code="stale-version",
        )


# --- a JSON Patch (RFC 6902) of a Task -> the Task it makes -------------------------------------


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"
    code = "unsupported-media"


def _not_supported(path: str, message: str) -> RuleViolation:
    return RuleViolation(f"{path}: {message}", errors={path: [message]}, code="fhir-not-supported")


def _expression(tokens: list[str]) -> str:
    """``["output", "0", "valueString"]`` -> ``Task.output[0].valueString``."""
    return "Task" + "".join(f"[{t}]" if t.isdigit() else f".{t}" for t in tokens)


def _tokens(pointer: Any, where: str) -> list[str]:
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise _invalid(where, "path must be a JSON Pointer such as /status")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, appending: bool = False) -> int:
    if appending and token == "-":
        return len(container)
    if not token.isdigit() or int(token) > len(container) - (0 if appending else 1):
        raise _invalid(path, "no such element")
    return int(token)


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for i, token in enumerate(tokens[:-1]):
        path = _expression(tokens[: i + 1])
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path)]
        else:
            raise _invalid(path, "no such element")
    return node


def _apply(task: dict[str, Any], op: dict[str, Any], tokens: list[str]) -> None:
    path = _expression(tokens)
    parent, last = _parent(task, tokens), tokens[-1]
    present = (isinstance(parent, dict) and last in parent) or (
        isinstance(parent, list) and last.isdigit() and int(last) < len(parent)
    )
    kind = op["op"]
    if kind == "test":
        here = parent[int(last) if isinstance(parent, list) else last] if present else None
        if not present or here != op.get("value"):
            raise Conflict(f"{path} is not the value the patch tests for", code="patch-test-failed")
        return
    if kind == "remove":
        if not present:
            raise _invalid(path, "no such element")
        del parent[int(last) if isinstance(parent, list) else last]
        return
    if "value" not in op:
        raise _invalid(path, f"{kind} needs a value")
    # a replace must find its target, but one of an absent element of the Task itself adds it
    if kind == "replace" and not present and len(tokens) > 1:
        raise _invalid(path, "no such element")
    value = copy.deepcopy(op["value"])
    if isinstance(parent, list):
        index = _index(parent, last, path, appending=kind == "add")
        if kind == "add":
            parent.insert(index, value)
        else:
            parent[index] = value
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _invalid(path, "no such element")


def apply_task_patch(task: dict[str, Any], operations: Any) -> dict[str, Any]:
    """The Task that a JSON Patch makes of ``task``: ``add``, ``replace`` and ``remove`` on
    ``/status``, ``/statusReason`` and ``/output`` (and below them), ``test`` anywhere (e.g.
    ``/meta/versionId`` as a version guard). A ``replace`` of a Task element that is absent
    (``/statusReason`` of a Task that has none) adds it, since that is what health systems send.
    ``move``, ``copy`` and any other element are not supported: RuleViolation with code
    ``fhir-not-supported``; a failed ``test`` is a Conflict."""
    if not isinstance(operations, list) or not operations:
        raise _invalid("Task", "the body must be a non-empty JSON Patch array")
    patched = copy.deepcopy(task)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise _invalid("Task", f"operation {number} must be an object with an op")
        tokens = _tokens(op.get("path"), "Task")
        if op["op"] in ("move", "copy"):
            raise _not_supported(_expression(tokens), f"{op['op']} is not supported")
        if op["op"] not in ("add", "replace", "remove", "test"):
            raise _invalid(_expression(tokens), f"unknown op {op['op']!r}")
        if op["op"] != "test" and tokens[0] not in PATCHABLE:
            raise _not_supported(
                _expression(tokens), "only status, statusReason and output may be changed"
            )
        _apply(patched, op, tokens)
    return patched
