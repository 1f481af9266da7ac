"""The templates HTTP API: admins edit, version, roll back and preview the message templates;
coordinators may read and preview. Every change is audited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_smorest import Blueprint

from services.notifications import templates as tpl
from services.notifications.models_templates import TemplateVersion
from services.notifications.schemas_templates import (
    PreviewIn,
    PreviewOut,
    TemplateKeyOut,
    TemplateOut,
    VersionIn,
    VersionOut,
)
from shared.auth import audit
from shared.auth.context import current_principal
from shared.auth.policy import require
from shared.auth.roles import ADMIN, COORDINATOR
from shared.errors import RuleViolation
from shared.http import db_session, idempotent, opora_app

templates = Blueprint(
    "templates",
    __name__,
    url_prefix="/templates",
    description="Message templates per key, channel and language, with versions and previews",
)

READERS = (ADMIN, COORDINATOR)
TARGET = "/<key>/<channel>/<language>"


# --- helpers -----------------------------------------------------------------------------------


def _placeholders(spec: tpl.TemplateSpec) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "description": p.description, "sample": p.sample, "free_text": p.free_text}
        for p in spec.placeholders.values()
    ]


def _version(row: TemplateVersion) -> dict[str, Any]:
    return {
        "key": row.key,
        "channel": row.channel,
        "language": row.language,
        "version": row.version,
        "subject": row.subject,
        "text": row.text,
        "html": row.html,
        "active": row.active,
        "note": row.note,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def _default(key: str, channel: str, language: str, active: bool) -> dict[str, Any]:
    source = tpl.default_source(key, channel, language)
    return {
        "key": key,
        "channel": channel,
        "language": language,
        "version": 0,
        "subject": source.subject,
        "text": source.text,
        "html": source.html,
        "active": active,
        "note": "built-in default",
        "created_by": None,
        "created_at": None,
    }


def _detail(key: str, channel: str, language: str) -> dict[str, Any]:
    spec = tpl.check_target(key, channel, language)
    rows = tpl.list_versions(db_session(), key, channel, language)
    active = next((row for row in rows if row.active), None)
    default = _default(key, channel, language, active is None)
    return {
        "key": key,
        "channel": channel,
        "language": language,
        "description": spec.description,
        "placeholders": _placeholders(spec),
        "current_version": active.version if active else 0,
        "current": _version(active) if active else default,
        "default": default,
        "versions": [_version(row) for row in rows],
    }


def _audit(
    key: str, channel: str, language: str, action: str, version: int, fields: list[str]
) -> None:
    audit.record(
        db_session(),
        opora_app().tables,
        action=action,
        entity="template",
        entity_id=f"{key}/{channel}/{language}/v{version}",
        fields=fields,
    )


def _sms_segments(text: str) -> dict[str, Any]:
    from services.notifications.channels.sms import segments

    info = segments(text)
    return {"encoding": info.encoding, "parts": info.parts, "length": info.length}


def _render_preview(
    key: str,
    channel: str,
    language: str,
    version: int | None,
    source: tpl.Source,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    try:
        rendered = tpl.render_source(key, channel, language, version or 0, source, context)
    except tpl.RenderError as exc:
        raise RuleViolation(
            "the template cannot be rendered with this context",
            errors={"context": [str(exc)]},
            code="template-invalid",
        ) from None
    parts = {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
    return {
        "key": key,
        "channel": channel,
        "language": language,
        "version": version,
        **parts,
        "length": {name: len(value) for name, value in parts.items() if value is not None},
        "sms": _sms_segments(rendered.text) if channel == "sms" else None,
    }


# --- views -------------------------------------------------------------------------------------


@templates.route("", methods=["GET"])
@templates.response(200, TemplateKeyOut(many=True))
@require(*READERS)
def list_templates() -> Any:
    """Every template key with its placeholders and the version in use per channel and language."""
    session = db_session()
    out = []
    for key, spec in tpl.TEMPLATES.items():
        current = []
        for channel in spec.channels:
            for language in tpl.LANGUAGES:
                version, _ = tpl.current_source(session, key, channel, language)
                current.append({"channel": channel, "language": language, "version": version})
        out.append(
            {
                "key": key,
                "description": spec.description,
                "channels": list(spec.channels),
                "placeholders": _placeholders(spec),
                "current": current,
            }
        )
    return out


@templates.route(TARGET, methods=["GET"])
@templates.response(200, TemplateOut)
@require(*READERS)
def get_template(key: str, channel: str, language: str) -> Any:
    """One template: the version in use, the built-in default and every stored version."""
    return _detail(key, channel, language)


@templates.route(TARGET + "/versions", methods=["POST"])
@templates.arguments(VersionIn)
@templates.response(201, VersionOut)
@require(ADMIN)
@idempotent
def save_version(data: dict[str, Any], key: str, channel: str, language: str) -> Any:
    """Store a new version after checking it: syntax, declared placeholders only, no free text
    in a subject or an SMS, a trial render with the samples. 422 names the part and problem."""
    row = tpl.save_version(
        db_session(),
        key,
        channel,
        language,
        subject=data["subject"],
        text=data["text"],
        html=data["html"],
        created_by=current_principal().subject,
        note=data["note"],
        activate=data["activate"],
    )
    fields = [part for part in tpl.PARTS if data.get(part)]
    _audit(key, channel, language, audit.CREATE, row.version, fields)
    location = f"/templates/{key}/{channel}/{language}/versions/{row.version}"
    return _version(row), 201, {"Location": location}


@templates.route(TARGET + "/versions/<int:version>/activate", methods=["POST"])
@templates.response(200, TemplateOut)
@require(ADMIN)
@idempotent
def activate_version(key: str, channel: str, language: str, version: int) -> Any:
    """Make a stored version current (a rollback when it is older); version 0 is the default."""
    tpl.activate_version(db_session(), key, channel, language, version)
    _audit(key, channel, language, audit.UPDATE, version, ["active"])
    return _detail(key, channel, language)


@templates.route(TARGET + "/preview", methods=["POST"])
@templates.arguments(PreviewIn)
@templates.response(200, PreviewOut)
@require(*READERS)
def preview(data: dict[str, Any], key: str, channel: str, language: str) -> Any:
    """Render the current version, or a draft laid over it, with the samples or a context.

    A draft is checked like a new version first, so the preview shows what saving would say.
    """
    spec = tpl.check_target(key, channel, language)
    version, current = tpl.current_source(db_session(), key, channel, language)
    draft = {part: data[part] for part in tpl.PARTS if part in data}
    source = tpl.Source(
        subject=draft.get("subject", current.subject),
        text=draft.get("text", current.text),
        html=draft.get("html", current.html),
    )
    if draft:
        tpl.check_source(key, channel, source.subject, source.text, source.html)
    context = {**spec.sample_context(channel), **data["context"]}
    return _render_preview(key, channel, language, None if draft else version, source, context)
