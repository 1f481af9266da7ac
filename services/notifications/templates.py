"""Message templates: declared placeholders, a Jinja2 sandbox, checks at save time, versions.

Why so strict: a template is the only place where text reaches an SMS or an email, and admins
edit templates at run time. So a template may use only the placeholders declared for its key
(none of which carries a family member's name, address or birth date), the context handed to
Jinja2 holds only those placeholders (extra keys never reach a template), free-text
placeholders are kept out of subjects and SMS, and the sandbox refuses attribute tricks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.notifications import prefetch, template_defaults
from services.notifications.models_templates import TemplateVersion
from services.notifications.template_defaults.specs import (
    CHANNELS,
    FREE_TEXT,
    TEMPLATES,
    Placeholder,
    TemplateSpec,
)
from shared.errors import NotFound, RuleViolation

log = logging.getLogger("opora.notifications.templates")

__all__ = [
    "CHANNELS",
    "FREE_TEXT",
    "TEMPLATES",
    "Placeholder",
    "Rendered",
    "TemplateSpec",
    "render",
    "render_default",
]

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"
PARTS = ("subject", "text", "html")
MAX_SUBJECT = 200
MAX_SMS_PARTS = 2  # with the sample values; what a real text needs is the channel's rule
MAX_REPEAT = 10_000  # the longest string or list a template may build with ``*``


# --- the sandbox -------------------------------------------------------------------------------


def plural(value: Any, *forms: str) -> str:
    """``{{ n|plural("день", "дня", "дней") }}`` (Russian, three forms) or ``("day", "days")``."""
    n = abs(int(value))
    if len(forms) == 3:
        if n % 10 == 1 and n % 100 != 11:
            return forms[0]
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return forms[1]
        return forms[2]
    if len(forms) == 2:
        return forms[0] if n == 1 else forms[1]
    raise ValueError("plural takes two (English) or three (Russian) forms")


class _Sandbox(SandboxedEnvironment):
    """No globals (no ``range``, ``namespace``...), no loader, and no huge strings by ``*``."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            raise SecurityError("the power operator is not allowed in templates")
        for seq, times in ((left, right), (right, left)):
            too_long = isinstance(seq, str | list | tuple) and isinstance(times, int)
            if too_long and len(seq) * times > MAX_REPEAT:
                raise SecurityError("the result of * is too long")
        return operator.mul(left, right)


def _environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.globals.clear()
    env.filters["plural"] = plural
    return env


PLAIN = _environment(autoescape=False)  # subject, text, SMS
HTML = _environment(autoescape=True)


def _env(part: str) -> _Sandbox:
    return HTML if part == "html" else PLAIN


@functools.lru_cache(maxsize=512)
def _compiled(part: str, source: str) -> Any:
    env = _env(part)
    return env.from_string(source)


# --- checks at save time -----------------------------------------------------------------------


class TemplateInvalid(RuleViolation):
    """A template refused at save or preview; ``errors`` maps subject/text/html to problems."""

    code = "template-invalid"
    title = "Invalid template"


class RenderError(Exception):
    """A stored or default template could not be rendered with the context given; the message
    names the template and the problem, never a context value."""


def spec_for(key: str) -> TemplateSpec:
    try:
        return TEMPLATES[key]
    except KeyError:
        raise NotFound(f"no template key {key!r}") from None


def check_target(key: str, channel: str, language: str) -> TemplateSpec:
    spec = spec_for(key)
    if channel not in spec.channels:
        raise NotFound(
            f"template {key} has no {channel} channel; it has {', '.join(spec.channels)}"
        )
    if language not in LANGUAGES:
        raise NotFound(f"no language {language!r}; languages are {', '.join(LANGUAGES)}")
    return spec


def _static_problems(ast: nodes.Template) -> list[str]:
    """What the sandbox would refuse only when the line runs: refuse it at save time instead."""
    problems = [
        f"line {node.lineno}: {type(node).__name__.lower()} is not allowed"
        for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))
    ]
    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(access, nodes.Getattr):
            name: Any = access.attr
        else:
            name = getattr(getattr(access, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            problems.append(f"line {access.lineno}: access to {name!r} is not allowed")
    return problems


def _check_part(spec: TemplateSpec, channel: str, part: str, source: str) -> list[str]:
    """Syntax, placeholders and a trial render with the sample values; problems as text."""
    env = _env(part)
    try:
        ast = env.parse(source)
        used = meta.find_undeclared_variables(ast)  # compiles: finds unknown filters too
    except TemplateSyntaxError as exc:
        return [f"syntax error at line {exc.lineno}: {exc.message}"]
    problems = _static_problems(ast)
    problems += [
        f"undeclared placeholder {name}" for name in sorted(used - spec.placeholders.keys())
    ]
    if part == "subject" or channel == "sms":
        where = "a subject" if part == "subject" else "an SMS"
        problems += [
            f"placeholder {name} is free text and may not appear in {where}; use it in an email body"
            for name in sorted(used & spec.free_text())
        ]
    if problems:
        return problems
    try:
        template = _compiled(part, source)
    except TemplateSyntaxError as exc:  # e.g. an unknown filter, found when compiling
        return [f"syntax error at line {exc.lineno}: {exc.message}"]
    try:
        rendered = template.render(spec.sample_context(channel))
    except SecurityError as exc:
        return [f"unsafe: {exc}"]
    except UndefinedError as exc:
        return [f"cannot render: {exc}"]
    except Exception as exc:  # a filter misused with the sample values, e.g. plural("x")
        return [f"cannot render with the sample values: {type(exc).__name__}: {exc}"]
    if part == "subject":
        if "\n" in rendered.strip():
            problems.append("a subject is one line")
        if len(rendered.strip()) > MAX_SUBJECT:
            problems.append(
                f"a subject is at most {MAX_SUBJECT} characters (sample: {len(rendered.strip())})"
            )
    if channel == "sms":
        from services.notifications.channels.sms import segments

        info = segments(rendered.strip())
        if info.parts > MAX_SMS_PARTS:
            problems.append(
                f"an SMS is at most {MAX_SMS_PARTS} segments; with the sample values this one "
                f"needs {info.parts} ({info.encoding}, {info.length} characters)"
            )
    if not rendered.strip():
        problems.append("renders empty with the sample values")
    return problems


def check_source(
    key: str, channel: str, subject: str | None, text: str | None, html: str | None
) -> None:
    """Raise :class:`TemplateInvalid` listing every problem per part, or return."""
    spec = check_target(key, channel, DEFAULT_LANGUAGE)
    parts = {"subject": subject, "text": text, "html": html}
    errors: dict[str, list[str]] = {}
    if channel == "sms":
        for part in ("subject", "html"):
            if parts[part]:
                errors[part] = [f"an SMS has no {part}"]
    elif not (subject or "").strip():
        errors["subject"] = ["an email needs a subject"]
    if not (text or "").strip():
        errors["text"] = ["the text is required"]
    for part, source in parts.items():
        if source and source.strip() and part not in errors:
            problems = _check_part(spec, channel, part, source)
            if problems:
                errors[part] = problems
    if errors:
        first = next(iter(errors.items()))
        raise TemplateInvalid(f"{first[0]}: {first[1][0]}", errors=errors)


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    subject: str | None
    text: str
    html: str | None


@dataclass(frozen=True)
class Rendered:
    key: str
    channel: str
    language: str
    version: int
    subject: str | None
    text: str
    html: str | None


def language_of(language: str | None) -> str:
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def default_source(key: str, channel: str, language: str) -> Source:
    check_target(key, channel, language_of(language))
    parts = template_defaults.load(language_of(language))[key][channel]
    return Source(parts["subject"], parts["text"] or "", parts["html"])


def render_source(
    key: str, channel: str, language: str, version: int, source: Source, context: Mapping[str, Any]
) -> Rendered:
    """Render with only the declared placeholders of ``key`` taken from ``context``."""
    spec = spec_for(key)
    values = {name: context[name] for name in spec.placeholders if name in context}

    def one(part: str, text: str | None) -> str | None:
        if text is None:
            return None
        try:
            return str(_compiled(part, text).render(values))
        except Exception as exc:
            where = f"{key}/{channel}/{language} v{version} {part}"
            if isinstance(exc, UndefinedError | SecurityError):
                raise RenderError(f"{where}: {exc}") from None
            raise RenderError(f"{where}: {type(exc).__name__}") from None

    subject = one("subject", source.subject)
    return Rendered(
        key=key,
        channel=channel,
        language=language,
        version=version,
        # One line whatever a value holds: no header injection, no surprise line breaks.
        subject=" ".join(subject.split()) if subject is not None else None,
        text=(one("text", source.text) or "").strip() + ("\n" if channel == "email" else ""),
        html=one("html", source.html),
    )


def render_default(key: str, channel: str, language: str, context: Mapping[str, Any]) -> Rendered:
    language = language_of(language)
    return render_source(key, channel, language, 0, default_source(key, channel, language), context)


def render(
    session: Session, key: str, channel: str, language: str, context: Mapping[str, Any]
) -> Rendered:
    """The newest active stored version, else the built-in default; unknown languages -> ru.

    A stored version that fails at run time (it rendered the samples at save time) falls back
    to the default, so one bad edit cannot stop the notifications of a whole event type.
    """
    language = language_of(language)
    current = active_version(session, key, channel, language)
    if current is not None:
        try:
            return render_source(
                key, channel, language, current.version, source_of(current), context
            )
        except RenderError as exc:
            log.warning("template version failed, using the default", extra={"reason": str(exc)})
    return render_default(key, channel, language, context)


# --- versions ----------------------------------------------------------------------------------


def source_of(row: TemplateVersion) -> Source:
    return Source(row.subject, row.text, row.html)


def _where(key: str, channel: str, language: str) -> list[Any]:
    return [
        TemplateVersion.key == key,
        TemplateVersion.channel == channel,
        TemplateVersion.language == language,
    ]


def active_version(
    session: Session, key: str, channel: str, language: str
) -> TemplateVersion | None:
    cached = prefetch.active_templates(session, lambda: _all_active(session))
    if cached is not None:
        return cached.get((key, channel, language))
    stmt = (
        select(TemplateVersion)
        .where(*_where(key, channel, language), TemplateVersion.active.is_(True))
        .order_by(TemplateVersion.version.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def _all_active(session: Session) -> dict[tuple[str, str, str], TemplateVersion]:
    rows = session.scalars(
        select(TemplateVersion)
        .where(TemplateVersion.active.is_(True))
        .order_by(TemplateVersion.version)
    )
    return {(r.key, r.channel, r.language): r for r in rows}  # the newest active wins


def current_source(session: Session, key: str, channel: str, language: str) -> tuple[int, Source]:
    row = active_version(session, key, channel, language)
    if row is not None:
        return row.version, source_of(row)
    return 0, default_source(key, channel, language)


def list_versions(session: Session, key: str, channel: str, language: str) -> list[TemplateVersion]:
    """Stored versions, newest first; version 0 (the default) is not stored."""
    check_target(key, channel, language)
    stmt = select(TemplateVersion).where(*_where(key, channel, language))
    return list(session.scalars(stmt.order_by(TemplateVersion.version.desc())))


def save_version(
    session: Session,
    key: str,
    channel: str,
    language: str,
    *,
    subject: str | None,
    text: str,
    html: str | None,
    created_by: str,
    note: str | None = None,
    activate: bool = True,
) -> TemplateVersion:
    """Check and store a new version (the previous ones stay); by default it becomes current."""
    check_target(key, channel, language)
    check_source(key, channel, subject or None, text, html or None)
    latest = session.scalar(
        select(func.max(TemplateVersion.version)).where(*_where(key, channel, language))
    )
    if activate:
        _deactivate(session, key, channel, language)
    row = TemplateVersion(
        key=key,
        channel=channel,
        language=language,
        version=(latest or 0) + 1,
        subject=subject or None,
        text=text,
        html=html or None,
        created_by=created_by,
        note=note,
        active=activate,
    )
    session.add(row)
    session.flush()
    return row


def activate_version(
    session: Session, key: str, channel: str, language: str, version: int
) -> TemplateVersion | None:
    """Make ``version`` current (a rollback when older); 0 returns to the built-in default."""
    check_target(key, channel, language)
    if version == 0:
        _deactivate(session, key, channel, language)
        return None
    row = session.scalars(
        select(TemplateVersion).where(
            *_where(key, channel, language), TemplateVersion.version == version
        )
    ).first()
    if row is None:
        raise NotFound(f"template {key}/{channel}/{language} has no version {version}")
    _deactivate(session, key, channel, language)
    row.active = True
    session.flush()
    return row


def _deactivate(session: Session, key: str, channel: str, language: str) -> None:
    session.execute(
        update(TemplateVersion)
        .where(*_where(key, channel, language), TemplateVersion.active.is_(True))
        .values(active=False)
        .execution_options(synchronize_session="fetch")
    )


def as_dict(rendered: Rendered) -> dict[str, Any]:
    return dataclasses.asdict(rendered)
