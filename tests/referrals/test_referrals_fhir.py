"""FHIR R4 for health agencies: the mapping both ways for every status, the JSON shape checked by
the ``fhir.resources`` R4B models (a dev dependency), and the /fhir API with API-key scope,
versions, OperationOutcome errors naming FHIR paths, and idempotent PUTs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from conftest import System
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from test_referrals_api import consent

from services.referrals import fhir
from services.referrals.domain import TRANSITIONS
from services.referrals.models import Referral
from shared.errors import Conflict, RuleViolation

NOW = dt.datetime(2030, 1, 10, 9, 30, tzinfo=dt.UTC)


def referral(status: str = "requested", **extra: Any) -> Referral:
    values: dict[str, Any] = {
        "id": "0b6f3c1e-8a55-4d0e-9b7a-1f2e3d4c5b6a",
        "family_id": "fam-1",
        "family_number": "Т-001",
        "district": "Тарнога",
        "agency_id": "clinic-1",
        "service_code": "paediatric_check",
        "reason": "осмотр ребёнка",
        "urgency": "urgent",
        "deadline": dt.date(2030, 1, 31),
        "contact": {"person_id": "spec-1", "name": "Специалист", "phone": "+7 900 000-00-00"},
        "status": status,
        "status_reason": None,
        "outcome": None,
        "hold_note": None,
        "sender_id": "spec-1",
        "version": 3,
        "created_at": NOW - dt.timedelta(days=2),
        "updated_at": NOW,
    }
    values.update(extra)
    return Referral(**values)


# --- the mapping, pure ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", fhir.TASK_STATUSES)
def test_every_status_maps_to_a_valid_service_request_and_task(status: str) -> None:
    extra: dict[str, Any] = {}
    if status in {"rejected", "failed", "cancelled", "entered-in-error", "on-hold"}:
        extra["status_reason"] = "нет специалиста"
    if status == "on-hold":
        extra["hold_note"] = "ждём анализы"
    if status == "completed":
        extra["outcome"] = "осмотр проведён"
    r = referral(status, **extra)
    request_json = fhir.service_request(r)
    task_json = fhir.task(r)
    # The R4B models refuse unknown fields, wrong types and codes outside the required value sets.
    sr = ServiceRequest.model_validate(request_json)
    task = Task.model_validate(task_json)
    assert sr.status == fhir.REQUEST_STATUS[status]
    assert sr.intent == "order" and sr.priority == "urgent"
    assert task.status == status  # one to one
    assert task.focus.reference == f"ServiceRequest/{r.id}"
    assert task.for_fhir.identifier.value == "Т-001"
    assert task.for_fhir.identifier.system == fhir.FAMILY_SYSTEM
    assert task.lastModified is not None and task.meta.versionId == "3"
    if extra.get("status_reason"):
        assert task.statusReason.text == "нет специалиста"
    if status == "completed":
        assert task.output[0].valueString == "осмотр проведён"
    else:
        assert "output" not in task_json
    # and back: the Task as the agency would send it is the same step
    back = fhir.parse_task_update(task_json, r.id)
    assert back["status"] == status and back["version"] == 3
    assert back["reason"] == extra.get("status_reason")
    assert back["outcome"] == extra.get("outcome")


def test_request_status_covers_the_fhir_request_vocabulary() -> None:
    assert set(fhir.REQUEST_STATUS) == set(TRANSITIONS)
    assert set(fhir.REQUEST_STATUS.values()) == {
        "draft",
        "active",
        "on-hold",
        "revoked",
        "completed",
        "entered-in-error",
    }


@pytest.mark.parametrize("urgency", fhir.PRIORITIES)
def test_priority_is_the_urgency(urgency: str) -> None:
    assert (
        ServiceRequest.model_validate(fhir.service_request(referral(urgency=urgency))).priority
        == urgency
    )


def test_service_request_carries_no_family_details() -> None:
    r = referral()
    request_json = fhir.service_request(r)
    assert request_json["subject"] == {
        "type": "Group",
        "identifier": {"system": fhir.FAMILY_SYSTEM, "value": "Т-001"},
    }
    text = str(request_json) + str(fhir.task(r))
    assert "fam-1" not in text  # not even the internal family id
    assert request_json["code"]["coding"] == [
        {"system": fhir.SERVICE_SYSTEM, "code": "paediatric_check"}
    ]
    assert request_json["occurrencePeriod"] == {"end": "2030-01-31"}
    assert request_json["performer"][0]["identifier"]["value"] == "clinic-1"
    contact = request_json["contained"][0]
    assert request_json["requester"] == {"reference": "#contact"}
    assert contact["telecom"] == [{"system": "phone", "value": "+7 900 000-00-00"}]


def test_the_bundle_is_a_valid_collection_of_both() -> None:
    bundle = Bundle.model_validate(fhir.bundle(referral(), bundle_id="msg-1"))
    assert bundle.type == "collection"
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["ServiceRequest", "Task"]


def test_a_referral_without_agency_deadline_or_contact_is_still_valid() -> None:
    r = referral("draft", agency_id=None, deadline=None, contact={})
    sr = fhir.service_request(r)
    ServiceRequest.model_validate(sr)
    Task.model_validate(fhir.task(r))
    assert "performer" not in sr and "occurrencePeriod" not in sr and "requester" not in sr


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], "Task"),
        ({"resourceType": "ServiceRequest", "status": "accepted"}, "Task.resourceType"),
        ({"resourceType": "Task", "id": "other", "status": "accepted"}, "Task.id"),
        ({"resourceType": "Task"}, "Task.status"),
        ({"resourceType": "Task", "status": "ready"}, "Task.status"),
        ({"resourceType": "Task", "status": "rejected", "statusReason": "x"}, "Task.statusReason"),
        (
            {"resourceType": "Task", "status": "rejected", "statusReason": {"text": ""}},
            "Task.statusReason.text",
        ),
        ({"resourceType": "Task", "status": "completed", "output": {}}, "Task.output"),
        (
            {"resourceType": "Task", "status": "completed", "output": [{"valueInteger": 1}]},
            "Task.output[0].valueString",
        ),
        (
            {"resourceType": "Task", "status": "accepted", "meta": {"versionId": "v3"}},
            "Task.meta.versionId",
        ),
    ],
)
def test_bad_task_updates_name_the_fhir_path(body: Any, path: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        fhir.parse_task_update(body, "0b6f3c1e-8a55-4d0e-9b7a-1f2e3d4c5b6a")
    assert caught.value.errors is not None and path in caught.value.errors


def test_status_reason_may_come_as_a_coding() -> None:
    body = {
        "resourceType": "Task",
        "status": "rejected",
        "statusReason": {"coding": [{"system": "x", "code": "no-capacity", "display": "мест нет"}]},
    }
    assert fhir.parse_task_update(body, "r")["reason"] == "мест нет"


# --- the API ------------------------------------------------------------------------------------

CLINIC = {
    "id": "clinic-1",
    "name": "Тарногская ЦРБ",
    "kind": "health",
    "districts": ["Тарнога"],
    "services": ["paediatric_check"],
}
REFERRAL_IN = {
    "family_id": "fam-1",
    "family_number": "Т-001",
    "district": "Тарнога",
    "service_code": "paediatric_check",
    "agency_id": "clinic-1",
    "reason": "осмотр ребёнка",
    "urgency": "asap",
    "deadline": "2030-01-31",
    "contact": {"person_id": "spec-1", "name": "Специалист"},
}


def fhir_app(system: System) -> Any:
    """The referrals app with the FHIR blueprint (registered here until app.py lists it)."""
    from services.referrals.api_fhir import fhir_api

    app = system.app("referrals")
    if "fhir" not in app.blueprints:
        app.extensions["opora"].api.register_blueprint(fhir_api)
    return app


def as_token(system: System, role: str, agency: str | None = None) -> Any:
    c = fhir_app(system).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {system.token(role, agency=agency)}"
    return c


def as_key(system: System, key: str) -> Any:
    c = fhir_app(system).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"ApiKey {key}"
    return c


def setup_clinics(system: System) -> tuple[str, Any, Any]:
    admin = as_token(system, "admin")
    assert admin.post("/agencies", json=CLINIC).status_code == 201
    other = {**CLINIC, "id": "clinic-2", "name": "Другая больница"}
    assert admin.post("/agencies", json=other).status_code == 201
    consent(system, kinds=("health",))
    created = as_token(system, "coordinator").post("/referrals", json=REFERRAL_IN)
    assert created.status_code == 201, created.get_json()
    key_a = admin.post("/agencies/clinic-1/api-keys", json={"name": "МИС"}).get_json()["key"]
    key_b = admin.post("/agencies/clinic-2/api-keys", json={"name": "МИС 2"}).get_json()["key"]
    return created.get_json()["id"], as_key(system, key_a), as_key(system, key_b)


def put_task(client: Any, referral_id: str, task: dict[str, Any], **headers: str) -> Any:
    return client.put(
        f"/fhir/Task/{referral_id}",
        data=json.dumps(task),
        headers={"Content-Type": fhir.FHIR_JSON, **headers},
    )


@pytest.mark.embedded
def test_fhir_read_and_update_with_scope_versions_and_outcomes(embedded_system: System) -> None:
    referral_id, clinic, stranger = setup_clinics(embedded_system)

    sent = as_token(embedded_system, "coordinator").get(f"/referrals/{referral_id}").get_json()
    v = sent["version"]  # versions below count from the sent referral's
    sr = clinic.get(f"/fhir/ServiceRequest/{referral_id}")
    assert sr.status_code == 200 and sr.mimetype == fhir.FHIR_JSON
    assert ServiceRequest.model_validate(sr.get_json()).priority == "asap"
    assert sr.headers["ETag"] == f'W/"{v}"'
    task = clinic.get(f"/fhir/Task/{referral_id}")
    assert Task.model_validate(task.get_json()).status == "requested"

    hidden = stranger.get(f"/fhir/Task/{referral_id}")
    assert hidden.status_code == 404 and hidden.mimetype == fhir.FHIR_JSON
    outcome = OperationOutcome.model_validate(hidden.get_json())
    assert outcome.issue[0].code == "not-found"
    assert referral_id not in hidden.get_data(as_text=True), "a 404 repeats no path value"
    assert (
        put_task(stranger, referral_id, {"resourceType": "Task", "status": "received"}).status_code
        == 404
    )
    unauthenticated = fhir_app(embedded_system).test_client().get(f"/fhir/Task/{referral_id}")
    assert unauthenticated.status_code == 401
    assert OperationOutcome.model_validate(unauthenticated.get_json()).issue[0].code == "login"

    # the agency moves the referral by sending the Task back, step by step
    body = task.get_json()
    for status in ("received", "accepted", "in-progress"):
        moved = put_task(clinic, referral_id, {**body, "status": status, "meta": {}})
        assert moved.status_code == 200, moved.get_json()
        assert moved.get_json()["status"] == status
    again = put_task(clinic, referral_id, {**body, "status": "in-progress", "meta": {}})
    assert again.status_code == 200 and again.headers["ETag"] == f'W/"{v + 3}"'  # no second step

    stale = put_task(clinic, referral_id, {**body, "status": "on-hold"}, **{"If-Match": f'W/"{v}"'})
    assert stale.status_code == 409
    assert OperationOutcome.model_validate(stale.get_json()).issue[0].code == "conflict"
    illegal = put_task(clinic, referral_id, {**body, "status": "requested", "meta": {}})
    assert illegal.status_code in (403, 409)
    no_outcome = put_task(clinic, referral_id, {**body, "status": "completed", "meta": {}})
    assert no_outcome.status_code == 422
    assert "outcome" in no_outcome.get_json()["issue"][0]["expression"]
    bad_shape = put_task(clinic, referral_id, {"resourceType": "Task", "status": "done"})
    assert bad_shape.status_code == 422
    issues = OperationOutcome.model_validate(bad_shape.get_json()).issue
    assert issues[0].expression == ["Task.status"] and issues[0].code == "invalid"

    done = put_task(
        clinic,
        referral_id,
        {
            "resourceType": "Task",
            "status": "completed",
            "output": [{"type": {"text": "outcome"}, "valueString": "осмотр проведён"}],
        },
        **{"If-Match": f'W/"{v + 3}"', "Idempotency-Key": "done-1"},
    )
    assert done.status_code == 200, done.get_json()
    replay = put_task(
        clinic,
        referral_id,
        {
            "resourceType": "Task",
            "status": "completed",
            "output": [{"type": {"text": "outcome"}, "valueString": "осмотр проведён"}],
        },
        **{"If-Match": f'W/"{v + 3}"', "Idempotency-Key": "done-1"},
    )
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.mimetype == fhir.FHIR_JSON
    final = Task.model_validate(clinic.get(f"/fhir/Task/{referral_id}").get_json())
    assert final.status == "completed" and final.output[0].valueString == "осмотр проведён"
    detail = as_token(embedded_system, "coordinator").get(f"/referrals/{referral_id}").get_json()
    assert [h["to_status"] for h in detail["history"]][-1] == "completed"
    assert detail["outcome"] == "осмотр проведён" and detail["version"] == v + 4


@pytest.mark.embedded
def test_fhir_routes_are_documented(embedded_system: System) -> None:
    spec = fhir_app(embedded_system).test_client().get("/openapi.json").get_json()
    for path in ("/fhir/ServiceRequest/{referral_id}", "/fhir/Task/{referral_id}"):
        assert path in spec["paths"]
    put = spec["paths"]["/fhir/Task/{referral_id}"]["put"]
    assert fhir.FHIR_JSON in put["requestBody"]["content"]
    patch = spec["paths"]["/fhir/Task/{referral_id}"]["patch"]
    assert fhir.JSON_PATCH in patch["requestBody"]["content"]


@pytest.mark.embedded
def test_refusals_before_the_view_are_operation_outcomes_too(embedded_system: System) -> None:
    """The role check, the input guard and Werkzeug's size limit answer before the FHIR view
    runs; a FHIR client still gets an OperationOutcome, as the document says."""
    referral_id, clinic, _stranger = setup_clinics(embedded_system)
    app = fhir_app(embedded_system)
    auditor = as_token(embedded_system, "auditor").get(f"/fhir/Task/{referral_id}")
    nul = put_task(clinic, referral_id, {"resourceType": "Task", "status": "a\u0000"})
    deep = clinic.put(
        f"/fhir/Task/{referral_id}",
        data="[" * 3000 + "]" * 3000,
        headers={"Content-Type": fhir.FHIR_JSON},
    )
    limit = app.config["MAX_CONTENT_LENGTH"]
    huge = clinic.put(
        f"/fhir/Task/{referral_id}",
        data=b"{" + b" " * limit + b"}",
        headers={"Content-Type": fhir.FHIR_JSON},
    )
    for answer, status, code in (
        (auditor, 403, "forbidden"),
        (nul, 422, "invalid"),
        (deep, 422, "invalid"),
        (huge, 413, "processing"),
    ):
        assert answer.status_code == status, answer.get_data(as_text=True)[:300]
        assert answer.mimetype == fhir.FHIR_JSON
        assert OperationOutcome.model_validate(answer.get_json()).issue[0].code == code
    assert nul.get_json()["issue"][0]["expression"] == ["status"]
    spec = app.test_client().get("/openapi.json").get_json()
    for method in ("get", "put", "patch"):
        operation = spec["paths"]["/fhir/Task/{referral_id}"][method]
        for status, response in operation["responses"].items():
            assert list(response["content"]) == [fhir.FHIR_JSON], (status, response)


# --- JSON Patch (RFC 6902) of a Task -------------------------------------------------------------

OUTPUT = [{"type": {"text": "outcome"}, "valueString": "осмотр проведён"}]


def test_a_json_patch_makes_the_task_a_put_would_send() -> None:
    task = fhir.task(referral("in-progress"))
    done = fhir.apply_task_patch(
        task,
        [
            {"op": "test", "path": "/meta/versionId", "value": "3"},
            {"op": "replace", "path": "/status", "value": "completed"},
            {"op": "replace", "path": "/output", "value": OUTPUT},  # absent: added
        ],
    )
    assert fhir.parse_task_update(done, task["id"]) == {
        "status": "completed",
        "reason": None,
        "outcome": "осмотр проведён",
        "version": 3,
    }
    assert "output" not in task and task["status"] == "in-progress"  # the Task given stays
    Task.model_validate(done)

    rejected = fhir.apply_task_patch(
        task,
        [
            {"op": "replace", "path": "/status", "value": "rejected"},
            {"op": "add", "path": "/statusReason", "value": {"text": "мест нет"}},
        ],
    )
    assert fhir.parse_task_update(rejected, task["id"])["reason"] == "мест нет"

    edited = fhir.apply_task_patch(
        done,
        [
            {"op": "add", "path": "/output/-", "value": {"valueString": "второй"}},
            {"op": "replace", "path": "/output/0/valueString", "value": "консультация"},
            {"op": "remove", "path": "/output/1"},
            {"op": "test", "path": "/focus/reference", "value": f"ServiceRequest/{task['id']}"},
        ],
    )
    assert [o["valueString"] for o in edited["output"]] == ["консультация"]


@pytest.mark.parametrize(
    ("operations", "path", "code"),
    [
        ({}, "Task", "fhir-invalid"),
        ([], "Task", "fhir-invalid"),
        (["replace"], "Task", "fhir-invalid"),
        ([{"op": "replace", "path": "status", "value": "x"}], "Task", "fhir-invalid"),
        ([{"op": "frobnicate", "path": "/status"}], "Task.status", "fhir-invalid"),
        ([{"op": "replace", "path": "/status"}], "Task.status", "fhir-invalid"),
        ([{"op": "remove", "path": "/statusReason"}], "Task.statusReason", "fhir-invalid"),
        (
            [{"op": "replace", "path": "/output/0/valueString", "value": "x"}],
            "Task.output",
            "fhir-invalid",
        ),
        ([{"op": "replace", "path": "/priority", "value": "stat"}], "Task.priority", None),
        ([{"op": "add", "path": "/owner", "value": {}}], "Task.owner", None),
        ([{"op": "move", "from": "/statusReason", "path": "/status"}], "Task.status", None),
        ([{"op": "copy", "from": "/status", "path": "/statusReason"}], "Task.statusReason", None),
    ],
)
def test_patches_we_cannot_apply_name_the_fhir_path(
    operations: Any, path: str, code: str | None
) -> None:
    with pytest.raises(RuleViolation) as caught:
        fhir.apply_task_patch(fhir.task(referral()), operations)
    assert caught.value.errors is not None and path in caught.value.errors
    assert caught.value.code == (code or "fhir-not-supported")


def test_a_failed_test_operation_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        fhir.apply_task_patch(
            fhir.task(referral()), [{"op": "test", "path": "/meta/versionId", "value": "2"}]
        )


def patch_task(client: Any, referral_id: str, operations: Any, **headers: str) -> Any:
    return client.patch(
        f"/fhir/Task/{referral_id}",
        data=json.dumps(operations),
        headers={"Content-Type": fhir.JSON_PATCH, **headers},
    )


def status_to(status: str) -> dict[str, Any]:
    return {"op": "replace", "path": "/status", "value": status}


@pytest.mark.embedded
def test_fhir_task_patch_moves_the_referral_as_a_put_does(embedded_system: System) -> None:
    referral_id, clinic, stranger = setup_clinics(embedded_system)
    v = int(clinic.get(f"/fhir/Task/{referral_id}").get_json()["meta"]["versionId"])

    received = patch_task(clinic, referral_id, [status_to("received")])
    assert received.status_code == 200, received.get_json()
    assert received.mimetype == fhir.FHIR_JSON and received.headers["ETag"] == f'W/"{v + 1}"'
    assert Task.model_validate(received.get_json()).status == "received"
    again = patch_task(clinic, referral_id, [status_to("received")])
    assert again.status_code == 200 and again.headers["ETag"] == f'W/"{v + 1}"'  # no second step

    guarded = [{"op": "test", "path": "/meta/versionId", "value": str(v)}, status_to("accepted")]
    stale = patch_task(clinic, referral_id, guarded)
    assert stale.status_code == 409
    assert OperationOutcome.model_validate(stale.get_json()).issue[0].code == "conflict"
    stale_header = patch_task(
        clinic, referral_id, [status_to("accepted")], **{"If-Match": f'W/"{v}"'}
    )
    assert stale_header.status_code == 409
    guarded[0]["value"] = str(v + 1)
    assert patch_task(clinic, referral_id, guarded).status_code == 200
    assert patch_task(clinic, referral_id, [status_to("in-progress")]).status_code == 200

    no_outcome = patch_task(clinic, referral_id, [status_to("completed")])
    assert no_outcome.status_code == 422
    assert "outcome" in no_outcome.get_json()["issue"][0]["expression"]
    unsupported = patch_task(
        clinic, referral_id, [{"op": "replace", "path": "/priority", "value": "stat"}]
    )
    assert unsupported.status_code == 422
    issue = OperationOutcome.model_validate(unsupported.get_json()).issue[0]
    assert issue.code == "not-supported" and issue.expression == ["Task.priority"]
    fhirpath_patch = clinic.patch(
        f"/fhir/Task/{referral_id}",
        data=json.dumps({"resourceType": "Parameters", "parameter": []}),
        headers={"Content-Type": fhir.FHIR_JSON},
    )
    assert fhirpath_patch.status_code == 415 and fhirpath_patch.mimetype == fhir.FHIR_JSON
    assert (
        OperationOutcome.model_validate(fhirpath_patch.get_json()).issue[0].code == "not-supported"
    )
    assert patch_task(stranger, referral_id, [status_to("accepted")]).status_code == 404

    complete = [status_to("completed"), {"op": "add", "path": "/output", "value": OUTPUT}]
    done = patch_task(clinic, referral_id, complete, **{"Idempotency-Key": "patch-done-1"})
    assert done.status_code == 200, done.get_json()
    replay = patch_task(clinic, referral_id, complete, **{"Idempotency-Key": "patch-done-1"})
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    final = Task.model_validate(clinic.get(f"/fhir/Task/{referral_id}").get_json())
    assert final.status == "completed" and final.output[0].valueString == "осмотр проведён"
    assert final.meta.versionId == str(v + 4)

    # a rejection with its reason, as health systems send it: replace of an absent statusReason
    other = as_token(embedded_system, "coordinator").post("/referrals", json=REFERRAL_IN)
    assert patch_task(clinic, other.get_json()["id"], [status_to("received")]).status_code == 200
    reason = {"op": "replace", "path": "/statusReason", "value": {"text": "нет свободных мест"}}
    rejected = patch_task(clinic, other.get_json()["id"], [status_to("rejected"), reason])
    assert rejected.status_code == 200, rejected.get_json()
    detail = as_token(embedded_system, "coordinator").get(f"/referrals/{other.get_json()['id']}")
    assert detail.get_json()["status_reason"] == "нет свободных мест"
