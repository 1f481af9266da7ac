"""Every code a person sees, as words: ``label("stage", "support")`` → «Сопровождение».

The codes come from the services' schemas (registry's categories, stages and catalogues,
referrals' statuses, raids' purposes...). Russian is the source text; the English catalogue
(translations/) translates it. A code without a label shows as «—» and is logged, never raw.
Catalogue entries that admins add (a district's own measure kind) carry their own
``title_ru``/``title_en`` from the registry: use :func:`catalogue_title` for those.
"""

from __future__ import annotations

import logging
from typing import Any

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

log = logging.getLogger("opora.console")

LABELS: dict[str, dict[str, Any]] = {
    "service": {
        "registry": _l("Реестр семей"),
        "referrals": _l("Направления и сигналы"),
        "raids": _l("Рейды"),
        "notifications": _l("Уведомления"),
        "oidc": _l("Служба входа"),
    },
    "role": {
        "coordinator": _l("Координатор"),
        "lead_specialist": _l("Ведущий специалист"),
        "agency_staff": _l("Сотрудник ведомства"),
        "auditor": _l("Региональный офис"),
        "admin": _l("Администратор"),
        "social_pedagogue": _l("Социальный педагог"),
        "inspector": _l("Инспектор ПДН"),
        "head": _l("Руководитель"),
        "referrals": _l("Ответственный за направления"),
    },
    "agency_kind": {
        "school": _l("Школа"),
        "kindergarten": _l("Детский сад"),
        "police_pdn": _l("ПДН"),
        "kdn": _l("КДН и ЗП"),
        "health": _l("Здравоохранение"),
        "culture": _l("Культура"),
        "employment": _l("Центр занятости"),
        "social_protection": _l("Соцзащита"),
        "family_centre": _l("Центр помощи семье"),
        "charity": _l("Благотворительная организация"),
        "church": _l("Религиозная организация"),
        "other": _l("Другое"),
    },
    "category": {
        "sop": _l("СОП"),
        "risk_group": _l("Группа риска"),
        "tzhs": _l("ТЖС"),
    },
    "stage": {
        "preparatory": _l("Подготовительный"),
        "support": _l("Сопровождение"),
        "final": _l("Завершающий"),
        "closed": _l("Закрыт"),
    },
    "outcome": {
        "improvement": _l("Улучшение"),
        "no_improvement": _l("Без улучшения"),
        "moved_away": _l("Переезд"),
        "children_came_of_age": _l("Дети достигли совершеннолетия"),
        "transferred": _l("Передан"),
        "other": _l("Другое"),
    },
    "measure_status": {
        "planned": _l("Запланировано"),
        "referred": _l("Направлено"),
        "in_progress": _l("Выполняется"),
        "done": _l("Выполнено"),
        "not_done": _l("Не выполнено"),
        "cancelled": _l("Отменено"),
    },
    "measure_kind": {
        "counselling": _l("Консультирование"),
        "patronage_visit": _l("Социальный патронаж"),
        "leisure_involvement": _l("Вовлечение в досуг"),
        "material_aid": _l("Материальная помощь"),
        "medical_examination": _l("Медицинское обследование"),
        "school_check": _l("Контроль посещения школы"),
        "employment_help": _l("Содействие в трудоустройстве"),
        "legal_help": _l("Юридическая помощь"),
        "pdn_check": _l("Проверка инспектором ПДН"),
        "other": _l("Другое"),
    },
    "member_role": {
        "mother": _l("Мать"),
        "father": _l("Отец"),
        "guardian": _l("Опекун"),
        "child": _l("Ребёнок"),
        "other": _l("Другой член семьи"),
    },
    "signal_priority": {
        "red": _l("Красный (2 ч)"),
        "amber": _l("Жёлтый (6 ч)"),
        "green": _l("Зелёный (24 ч)"),
    },
    "signal_status": {
        "new": _l("Новый"),
        "accepted": _l("Принят"),
        "dismissed": _l("Отклонён"),
    },
    "referral_status": {
        "draft": _l("Черновик"),
        "requested": _l("Отправлено"),
        "received": _l("Получено"),
        "accepted": _l("Принято"),
        "rejected": _l("Отклонено"),
        "in-progress": _l("В работе"),
        "on-hold": _l("Приостановлено"),
        "completed": _l("Выполнено"),
        "failed": _l("Не выполнено"),
        "cancelled": _l("Отменено"),
        "entered-in-error": _l("Ошибочная запись"),
    },
    "urgency": {
        "routine": _l("Обычная"),
        "urgent": _l("Срочно"),
        "asap": _l("Как можно скорее"),
        "stat": _l("Немедленно"),
    },
    "overdue_kind": {
        "acknowledge": _l("Нет ответа"),
        "complete": _l("Не выполнено в срок"),
    },
    "link_action": {
        "accept": _l("Принять"),
        "reject": _l("Отказать"),
        "start": _l("Начать работу"),
        "complete": _l("Сообщить о выполнении"),
    },
    "raid_status": {
        "planned": _l("Запланирован"),
        "confirmed": _l("Подтверждён"),
        "in_progress": _l("Идёт"),
        "completed": _l("Завершён"),
        "cancelled": _l("Отменён"),
    },
    "raid_purpose": {
        "planned_check": _l("Плановая проверка"),
        "complaint_followup": _l("Проверка по жалобе"),
        "seasonal_operation": _l("Сезонная операция"),
    },
    "intake_state": {
        "pending": _l("Ждёт решения"),
        "attached": _l("Присоединён к семье"),
        "registered": _l("Семья поставлена на учёт"),
    },
    "approval_kind": {
        "plan": _l("План"),
        "closing": _l("Закрытие"),
    },
    "approval_state": {
        "pending": _l("Ожидает решения"),
        "approved": _l("Утверждено"),
        "refused": _l("Возвращено на доработку"),
    },
    "stage_missing": {
        "agreement": _l("соглашения с семьёй"),
        "agreement_consent": _l("согласия семьи на обработку персональных данных"),
        "agreement_valid": _l("действующего соглашения: срок прежнего истёк"),
        "plan_measure": _l("хотя бы одного мероприятия в плане"),
        "plan_approved": _l("утверждения плана координатором"),
        "measures_finished": _l(
            "завершения всех мероприятий: выполнено, не выполнено с причиной или отменено"
        ),
        "analysis": _l("анализа проделанной работы"),
        "outcome": _l("итога сопровождения"),
        "closing_approved": _l("утверждения закрытия координатором с реквизитами решения"),
    },
    "assessment_domain": {
        "child_safety": _l("Безопасность ребёнка"),
        "parenting": _l("Воспитание и уход"),
        "material_conditions": _l("Материальное положение"),
        "housing": _l("Жилищные условия"),
        "health": _l("Здоровье"),
        "education": _l("Обучение детей"),
        "social_ties": _l("Социальные связи"),
        "parents_employment": _l("Занятость родителей"),
        "average": _l("В среднем"),
    },
    "contact_kind": {
        "patronage_visit": _l("Патронаж"),
        "counselling_individual": _l("Индивидуальная консультация"),
        "counselling_family": _l("Семейная консультация"),
        "conversation": _l("Беседа"),
        "leisure_activity": _l("Досуговое мероприятие"),
        "raid_visit": _l("Посещение в ходе рейда"),
        "signal": _l("Сигнал"),
        "other": _l("Другое"),
    },
    "agency_access_reason": {
        "case_closed": _l("случай закрыт"),
        "measure_cancelled": _l("мероприятие отменено"),
        "agency_unknown": _l("ведомства нет в справочнике"),
        "no_agreement": _l("семья не подписала соглашение"),
        "agreement_expired": _l("срок соглашения истёк"),
        "agreement_withdrawn": _l("семья отозвала соглашение"),
        "no_data_processing_consent": _l("нет согласия на обработку данных"),
        "not_shared": _l("семья не разрешила передавать данные ведомствам этого вида"),
    },
    "match_reason": {
        "members.full_name": _l("имя члена семьи"),
        "members.birth_date": _l("дата рождения члена семьи"),
        "children.birth_date": _l("даты рождения детей"),
        "members.surname_changed": _l("то же лицо под другой фамилией"),
        "address.district": _l("район"),
        "address.settlement": _l("населённый пункт"),
        "address.street": _l("улица"),
        "address.house": _l("дом"),
        "address.flat": _l("квартира"),
    },
    "yes_no": {
        "true": _l("Да"),
        "false": _l("Нет"),
    },
}

BADGE_TONES: dict[str, str] = {
    "red": "danger",
    "amber": "warning",
    "green": "ok",
    "rejected": "danger",
    "failed": "danger",
    "overdue": "danger",
    "completed": "ok",
    "done": "ok",
    "accepted": "ok",
    "approved": "ok",
    "refused": "danger",
    "pending": "warning",
    "not_done": "danger",
}
"""The colour family of a status badge (its text always says the status: colour is extra)."""


def label(kind: str, code: Any) -> str:
    if isinstance(code, bool):
        code = "true" if code else "false"
    text = LABELS.get(kind, {}).get(str(code)) if code is not None else None
    if text is None:
        if code not in (None, ""):
            log.warning("no label for %s code %r", kind, code)
        return "—"
    return str(text)


def service_label(service: str) -> str:
    return label("service", service)


def catalogue_title(entry: dict[str, Any]) -> str:
    """A catalogue entry's own title in the page's language (admins name their codes)."""
    english = str(get_locale() or "ru") == "en"
    title = entry.get("title_en") if english else entry.get("title_ru")
    return str(title or entry.get("title_ru") or "—")


def badge_tone(code: Any) -> str:
    return BADGE_TONES.get(str(code), "neutral")
