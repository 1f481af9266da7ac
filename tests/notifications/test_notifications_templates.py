"""Templates without HTTP: every default renders, no family's personal data can reach a subject
or an SMS, the sandbox holds, saving checks the source, versions and rollback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session, sessionmaker

from services.notifications import templates as tpl
from services.notifications.channels.sms import segments
from services.notifications.models_templates import TemplateVersion

TARGETS = [
    (key, channel, language)
    for key, spec in tpl.TEMPLATES.items()
    for channel in spec.channels
    for language in tpl.LANGUAGES
]
CONTRACT_KEYS = {
    "family.registered", "case.lead_assigned", "case.approval_requested",
    "access.emergency_granted", "referral.received", "referral.status_changed",
    "referral.due_soon", "referral.overdue", "referral.escalated", "measure.due_soon",
    "measure.overdue", "signal.urgent", "signal.escalated", "raid.invitation", "raid.updated",
    "raid.cancelled", "raid.reminder", "raid.concern", "digest",
    "case.approval_decided", "intake.pending", "referral.claimed", "referral.commented",
    "raid.withdrawn", "signal.returned",
}  # fmt: skip

# A family's personal data as other services hold it; none of it may ever reach a message part
# that is read on a lock screen or in a mail list: a subject or an SMS.
PERSONAL = {
    "surname": "Иванова",
    "first_name": "Мария",
    "middle_name": "Петровна",
    "full_name": "Иванова Мария Петровна",
    "display_name": "Ивановы",
    "name": "Мария Иванова",
    "address": "с. Тарногский Городок, ул. Советская, д. 1",
    "street": "ул. Советская",
    "settlement": "с. Тарногский Городок",
    "birth_date": "01.05.1990",
    "child_name": "Анна",
    "phone": "+79211234567",
    "snils": "123-456-789 01",
    "members": [{"full_name": "Иванова Анна Ивановна", "birth_date": "03.02.2015"}],
}
# Free-text placeholders are typed by people and may carry a name by mistake: they are allowed
# in email bodies only, so give them personal data and prove it stays out of subjects and SMS.
FREE_TEXT_VALUES = {
    "raid_title": "Рейд к Ивановой Марии Петровне",
    "changes": "добавлен адрес ул. Советская, д. 1",
    "agency_name": "Иванова Мария Петровна (школа)",
}
NEEDLES = ["Иванов", "Мария", "Петровн", "Анна", "Советская", "01.05.1990", "03.02.2015",
           "1990", "79211234567", "123-456-789"]  # fmt: skip
NUMBER = re.compile(r"\b(F|C|R|S)-[0-9A-Z-]+")


def personal_context(key: str) -> dict[str, Any]:
    spec = tpl.TEMPLATES[key]
    return {**spec.sample_context(), **PERSONAL, **{
        k: v for k, v in FREE_TEXT_VALUES.items() if k in spec.placeholders
    }}  # fmt: skip


# --- the specs and the defaults ----------------------------------------------------------------


def test_every_key_of_the_contract_has_a_spec_and_defaults_in_both_languages() -> None:
    assert set(tpl.TEMPLATES) == CONTRACT_KEYS
    assert tpl.TEMPLATES["digest"].channels == ("email",)
    assert len(TARGETS) == 24 * 2 * 2 + 2
    for spec in tpl.TEMPLATES.values():
        assert spec.description
        for placeholder in spec.placeholders.values():
            assert placeholder.description and placeholder.sample is not None
    assert {k for spec in tpl.TEMPLATES.values() for k in spec.free_text()} == {
        "raid_title", "changes", "agency_name", "items",
    }  # fmt: skip


def test_no_placeholder_carries_a_personal_field() -> None:
    declared = {name for spec in tpl.TEMPLATES.values() for name in spec.placeholders}
    assert not declared & set(PERSONAL)
    for name in declared:
        assert (
            not re.search(r"name|surname|address|birth|phone|snils", name) or name == "agency_name"
        )


@pytest.mark.parametrize(("key", "channel", "language"), TARGETS)
def test_every_default_passes_the_save_checks_and_renders_its_samples(
    key: str, channel: str, language: str
) -> None:
    source = tpl.default_source(key, channel, language)
    tpl.check_source(key, channel, source.subject, source.text, source.html)
    out = tpl.render_default(key, channel, language, tpl.TEMPLATES[key].sample_context())
    assert (out.key, out.channel, out.language, out.version) == (key, channel, language, 0)
    assert "{{" not in out.text and "{%" not in out.text
    urls = [v for k, v in tpl.TEMPLATES[key].sample_context().items() if k.endswith("_url") and v]
    if key == "digest":
        urls = [item["url"] for item in tpl.TEMPLATES[key].sample_context()["items"]]
    if channel == "email":
        assert out.subject and "\n" not in out.subject and len(out.subject) <= tpl.MAX_SUBJECT
        assert out.html and out.html.lstrip().startswith("<!DOCTYPE html>")
        assert f'lang="{language}"' in out.html
        assert all(url in out.text for url in urls)
        assert any(f'href="{url}"' in out.html for url in urls)
    else:
        assert out.subject is None and out.html is None
        assert any(url in out.text for url in urls)  # every SMS links to its entity
        info = segments(out.text)
        assert info.parts <= 2, (key, language, info)
    numbers = [v for k, v in tpl.TEMPLATES[key].sample_context().items() if k.endswith("_number")]
    for part in (out.subject, out.text) if channel == "email" else (out.text,):
        assert part is not None
        assert not numbers or any(n in part for n in numbers), (key, part)


@pytest.mark.parametrize("key", [k for k, spec in tpl.TEMPLATES.items() if "sms" in spec.channels])
def test_every_russian_default_sms_is_one_segment_with_its_short_link(key: str) -> None:
    """With the link shortened to /r/<code> (on a 24-character public URL) a Russian SMS is one
    UCS-2 segment of at most 70 characters, half the price of two and never split."""
    sample = tpl.TEMPLATES[key].sample_context("sms")
    out = tpl.render_default(key, "sms", "ru", sample)
    assert "/r/" in out.text
    info = segments(out.text)
    assert (info.encoding, info.parts) == ("UCS-2", 1), (key, info.length, out.text)


def test_russian_defaults_are_in_russian_and_english_in_english() -> None:
    for key, channel, language in TARGETS:
        source = tpl.default_source(key, channel, language)
        literal = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", source.text)
        cyrillic = len(re.findall(r"[а-яё]", literal, re.IGNORECASE))
        latin = len(re.findall(r"[a-z]", literal, re.IGNORECASE))
        assert (cyrillic > latin) == (language == "ru"), (key, channel, language)


def test_russian_plural_forms() -> None:
    forms = ("день", "дня", "дней")
    assert [tpl.plural(n, *forms) for n in (1, 2, 5, 11, 12, 14, 21, 22, 25, 101, 111)] == [
        "день", "дня", "дней", "дней", "дней", "дней", "день", "дня", "дней", "день", "дней",
    ]  # fmt: skip
    assert tpl.plural("3", "day", "days") == "days" and tpl.plural(1, "day", "days") == "day"
    out = tpl.render_default("referral.overdue", "sms", "ru", {
        **tpl.TEMPLATES["referral.overdue"].sample_context(), "days_overdue": 21,
    })  # fmt: skip
    assert "просрочено на 21 день:" in out.text


# --- no personal data --------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "channel", "language"), TARGETS)
def test_no_personal_data_reaches_a_subject_or_an_sms(
    key: str, channel: str, language: str
) -> None:
    """The proof, per key, channel and language: the context carries the family's personal
    data under extra keys and free text full of it; no subject and no SMS holds any of it,
    and the extra keys reach no part of any message at all."""
    out = tpl.render_default(key, channel, language, personal_context(key))
    guarded = [out.subject] if channel == "email" else [out.text]
    for part in guarded:
        assert part
        for needle in NEEDLES:
            assert needle not in part, (key, channel, language, needle)
    # Extra keys are never handed to Jinja2: no part of any message shows them, bodies included.
    body = out.text + (out.html or "")
    for needle in ("79211234567", "123-456-789", "01.05.1990", "03.02.2015", "Анна"):
        assert needle not in body, (key, channel, language, needle)


@pytest.mark.parametrize(
    ("key", "channel", "part", "name"),
    [
        (key, channel, part, name)
        for key in tpl.TEMPLATES
        for channel in tpl.TEMPLATES[key].channels
        for part in (("subject", "text", "html") if channel == "email" else ("text",))
        for name in ("surname", "address", "birth_date")
    ],
)
def test_a_personal_placeholder_cannot_be_saved(
    key: str, channel: str, part: str, name: str
) -> None:
    source = tpl.default_source(key, channel, "ru")
    parts = {"subject": source.subject, "text": source.text, "html": source.html}
    parts[part] = (parts[part] or "") + f" {{{{ {name} }}}}"
    with pytest.raises(tpl.TemplateInvalid) as caught:
        tpl.check_source(key, channel, **parts)
    assert caught.value.errors == {part: [f"undeclared placeholder {name}"]}
    assert caught.value.status == 422


FREE_TEXT_TARGETS = [
    (key, channel, part, name)
    for key, spec in tpl.TEMPLATES.items()
    for name in sorted(spec.free_text())
    for channel, part in (("email", "subject"), ("sms", "text"))
    if channel in spec.channels
]


@pytest.mark.parametrize(("key", "channel", "part", "name"), FREE_TEXT_TARGETS)
def test_free_text_is_refused_in_subjects_and_sms(
    key: str, channel: str, part: str, name: str
) -> None:
    source = tpl.default_source(key, channel, "ru")
    parts = {"subject": source.subject, "text": source.text, "html": source.html}
    parts[part] = f"{parts[part]} {{{{ {name} }}}}"
    with pytest.raises(tpl.TemplateInvalid) as caught:
        tpl.check_source(key, channel, **parts)
    assert caught.value.errors is not None
    assert list(caught.value.errors) == [part]
    assert f"placeholder {name} is free text" in caught.value.errors[part][0]


def test_free_text_targets_cover_every_free_placeholder() -> None:
    assert {name for _, _, _, name in FREE_TEXT_TARGETS} == {
        "raid_title", "changes", "agency_name", "items",
    }  # fmt: skip
    # ...while the same placeholder is fine in an email body.
    source = tpl.default_source("raid.invitation", "email", "ru")
    tpl.check_source(
        "raid.invitation", "email", source.subject, source.text + " {{ raid_title }}", source.html
    )


# --- the sandbox and the checks ----------------------------------------------------------------


def check(key: str, channel: str, **parts: str | None) -> dict[str, list[str]]:
    with pytest.raises(tpl.TemplateInvalid) as caught:
        tpl.check_source(key, channel, parts.get("subject"), parts.get("text"), parts.get("html"))
    assert caught.value.errors
    return caught.value.errors


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "line 1: access to '__mro__' is not allowed"),
        ("{{ family_url.__class__ }}", "line 1: access to '__class__' is not allowed"),
        ("{{ family_number['__class__'] }}", "line 1: access to '__class__' is not allowed"),
        ("{{ ''|attr('__class__') }}", "unsafe: access to attribute '__class__' of 'str' object is unsafe."),
        ("{{ family_url|attr('format')|attr('__globals__') }}", "unsafe: access to attribute '__globals__'"),
        ("{{ 'a' * 100000 }}", "unsafe: the result of * is too long"),
        ("{{ 9 ** 99999 }}", "unsafe: the power operator is not allowed"),
        ("{% for x in range(100) %}{% endfor %}", "undeclared placeholder range"),
        ("{% include 'x.j2' %}", "line 1: include is not allowed"),
        ("{{ self._TemplateReference__context }}", "line 1: access to '_TemplateReference__context'"),
        ("{{ cycler.__init__.__globals__ }}", "line 1: access to '__globals__' is not allowed"),
        ("{{ lipsum() }}", "undeclared placeholder lipsum"),
    ],
)  # fmt: skip
def test_sandbox_escapes_are_refused_at_save_time(source: str, problem: str) -> None:
    errors = check("family.registered", "sms", text=source)
    assert list(errors) == ["text"]
    assert errors["text"][0].startswith(problem), errors


def test_sandbox_holds_at_render_time_even_for_a_stored_source_never_checked() -> None:
    for text in ("{{ ''|attr('__class__') }}", "{{ 'a' * 100000 }}"):
        with pytest.raises(tpl.RenderError, match=r"family\.registered/sms/ru v7 text"):
            tpl.render_source("family.registered", "sms", "ru", 7, tpl.Source(None, text, None), {})


def test_syntax_errors_name_the_line() -> None:
    errors = check("family.registered", "email", subject="{{ family_number }}",
                   text="Здравствуйте!\n{% if family_number %}\nбез конца")  # fmt: skip
    assert errors == {"text": [errors["text"][0]]}
    assert errors["text"][0].startswith("syntax error at line 3: Unexpected end of template")
    errors = check("family.registered", "sms", text="{{ family_number|no_such_filter }}")
    assert errors["text"][0].startswith("syntax error at line 1: No filter named")


def test_channel_rules() -> None:
    assert check("family.registered", "sms", subject="Тема", text="{{ family_number }}",
                 html="<p>x</p>") == {
        "subject": ["an SMS has no subject"], "html": ["an SMS has no html"],
    }  # fmt: skip
    assert check("family.registered", "email", text="{{ family_number }}") == {
        "subject": ["an email needs a subject"]
    }
    assert check("family.registered", "email", subject="Семья {{ family_number }}", text=" ") == {
        "text": ["the text is required"]
    }
    long = "Семья {{ family_number }} " + "очень " * 40
    assert check("family.registered", "email", subject=long, text="x")["subject"][0].startswith(
        "a subject is at most 200 characters"
    )
    two_lines = "Семья {{ family_number }}{{ '\n' }}вторая строка"
    assert check("family.registered", "email", subject=two_lines, text="x") == {
        "subject": ["a subject is one line"]
    }
    with pytest.raises(tpl.NotFound):
        tpl.check_source("digest", "sms", None, "{{ date }}", None)
    with pytest.raises(tpl.NotFound):
        tpl.check_source("no.such.key", "email", "x", "x", None)


def test_a_long_sms_is_refused() -> None:
    errors = check(
        "referral.overdue",
        "sms",
        text="Направление {{ referral_number }} " + "очень " * 18 + "{{ referral_url }}",
    )
    assert errors == {"text": [
        "an SMS is at most 2 segments; with the sample values this one needs 3 (UCS-2, 168 characters)"
    ]}  # fmt: skip


def test_every_problem_of_a_part_is_listed() -> None:
    errors = check(
        "referral.overdue", "sms", text="{{ surname }} {{ first_name }} {{ referral_url }}"
    )
    assert errors == {
        "text": ["undeclared placeholder first_name", "undeclared placeholder surname"]
    }


def test_html_is_escaped_and_text_and_subject_are_not() -> None:
    context = {**tpl.TEMPLATES["referral.status_changed"].sample_context(),
               "agency_name": "<script>alert(1)</script> «A & B»", "status": "a&b"}  # fmt: skip
    out = tpl.render_default("referral.status_changed", "email", "ru", context)
    assert "<script>" not in (out.html or "") and "&lt;script&gt;" in (out.html or "")
    assert "<script>alert(1)</script> «A & B»" in out.text
    assert out.subject == "Направление R-2026-000123: a&b"


def test_a_value_with_line_breaks_cannot_break_the_subject() -> None:
    context = {**tpl.TEMPLATES["signal.urgent"].sample_context(), "district": "X\r\nBcc: x@y"}
    out = tpl.render_default("signal.urgent", "email", "ru", context)
    assert out.subject is not None and "\n" not in out.subject and "\r" not in out.subject


def test_a_missing_placeholder_is_an_error_that_names_it_and_no_value() -> None:
    context = tpl.TEMPLATES["referral.due_soon"].sample_context()
    del context["due_at"]
    with pytest.raises(tpl.RenderError) as caught:
        tpl.render_default("referral.due_soon", "sms", "ru", context)
    assert "due_at" in str(caught.value) and "R-2026" not in str(caught.value)


def test_unknown_language_falls_back_to_russian() -> None:
    out = tpl.render_default(
        "raid.reminder", "sms", "de", tpl.TEMPLATES["raid.reminder"].sample_context()
    )
    assert out.language == "ru" and out.text.startswith("Завтра рейд")


# --- versions ----------------------------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    TemplateVersion.metadata.create_all(engine, tables=[TemplateVersion.__table__])  # type: ignore[list-item]
    with sessionmaker(engine)() as session:
        yield session
    engine.dispose()


SAMPLE = tpl.TEMPLATES["referral.overdue"].sample_context()


def save(session: Session, text: str, **kwargs: Any) -> TemplateVersion:
    return tpl.save_version(
        session, "referral.overdue", "sms", "ru", subject=None, text=text, html=None,
        created_by="admin-1", **kwargs,
    )  # fmt: skip


def test_versions_are_kept_and_rollback_works(session: Session) -> None:
    assert tpl.render(session, "referral.overdue", "sms", "ru", SAMPLE).version == 0
    first = save(session, "Первая: {{ referral_number }} {{ referral_url }}", note="short")
    second = save(session, "Вторая: {{ referral_number }} {{ referral_url }}")
    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in tpl.list_versions(session, "referral.overdue", "sms", "ru")] == [
        2,
        1,
    ]
    assert [v.active for v in tpl.list_versions(session, "referral.overdue", "sms", "ru")] == [
        True,
        False,
    ]
    out = tpl.render(session, "referral.overdue", "sms", "ru", SAMPLE)
    assert (out.version, out.text.split(":")[0]) == (2, "Вторая")
    # another language and channel are untouched
    assert tpl.render(session, "referral.overdue", "sms", "en", SAMPLE).version == 0
    assert tpl.render(session, "referral.overdue", "email", "ru", SAMPLE).version == 0

    tpl.activate_version(session, "referral.overdue", "sms", "ru", 1)
    out = tpl.render(session, "referral.overdue", "sms", "ru", SAMPLE)
    assert (out.version, out.text.split(":")[0]) == (1, "Первая")
    assert len(tpl.list_versions(session, "referral.overdue", "sms", "ru")) == 2

    tpl.activate_version(session, "referral.overdue", "sms", "ru", 0)
    assert tpl.render(session, "referral.overdue", "sms", "ru", SAMPLE).version == 0
    third = save(session, "Третья: {{ referral_number }} {{ referral_url }}", activate=False)
    assert third.version == 3 and not third.active
    assert tpl.render(session, "referral.overdue", "sms", "ru", SAMPLE).version == 0
    with pytest.raises(tpl.NotFound):
        tpl.activate_version(session, "referral.overdue", "sms", "ru", 9)


def test_a_refused_version_stores_nothing(session: Session) -> None:
    with pytest.raises(tpl.TemplateInvalid):
        save(session, "{{ surname }}")
    assert tpl.list_versions(session, "referral.overdue", "sms", "ru") == []


def test_a_stored_version_failing_at_run_time_falls_back_to_the_default(session: Session) -> None:
    session.execute(insert(TemplateVersion).values(
        key="referral.overdue", channel="sms", language="ru", version=1, subject=None,
        text="{{ referral_number.missing }}", html=None, created_by="x", active=True,
    ))  # fmt: skip
    out = tpl.render(session, "referral.overdue", "sms", "ru", SAMPLE)
    assert out.version == 0 and "R-2026-000123" in out.text


def test_unique_versions(session: Session) -> None:
    save(session, "{{ referral_number }}")
    session.add(TemplateVersion(key="referral.overdue", channel="sms", language="ru", version=1,
                                text="x", created_by="x"))  # fmt: skip
    with pytest.raises(Exception, match="UNIQUE"):
        session.flush()


def test_every_key_names_a_number_or_a_raid_and_links_to_it() -> None:
    for key, spec in tpl.TEMPLATES.items():
        assert any(name.endswith("_url") for name in spec.placeholders) or key == "digest", key
        if (not key.startswith("raid.") and key != "digest") or key == "raid.concern":
            numbers = [n for n in spec.placeholders if n.endswith("_number")]
            assert numbers and all(NUMBER.match(str(spec.placeholders[n].sample)) for n in numbers)


def test_extra_context_keys_are_unreachable_even_from_an_unchecked_source() -> None:
    source = tpl.Source(None, "{{ surname is defined }}/{{ family_number is defined }}", None)
    out = tpl.render_source(
        "family.registered", "sms", "ru", 1, source, personal_context("family.registered")
    )
    assert out.text == "False/True"
