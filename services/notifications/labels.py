"""Human labels for the codes events carry (templates expect labels, in the reader's language).

An unknown code is shown as it is: a new status in another service must not stop a message.
"""

from __future__ import annotations

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "category": {
        "ru": {"sop": "СОП", "risk_group": "группа риска", "tzhs": "ТЖС"},
        "en": {"sop": "socially dangerous situation", "risk_group": "risk group", "tzhs": "difficult life situation"},
    },
    "stage": {
        "ru": {"preparatory": "подготовительный", "support": "сопровождение", "final": "заключительный", "closed": "закрыт"},
        "en": {"preparatory": "preparatory", "support": "support", "final": "final", "closed": "closed"},
    },
    "approval_kind": {
        "ru": {"plan": "план реабилитации", "closing": "закрытие случая"},
        "en": {"plan": "support plan", "closing": "closing the case"},
    },
    "decision": {
        "ru": {"approved": "согласовано", "refused": "отклонено"},
        "en": {"approved": "approved", "refused": "refused"},
    },
    "urgency": {
        "ru": {"routine": "обычная", "urgent": "срочно", "asap": "как можно скорее", "stat": "немедленно"},
        "en": {"routine": "routine", "urgent": "urgent", "asap": "as soon as possible", "stat": "immediately"},
    },
    "status": {
        "ru": {
            "draft": "черновик", "requested": "отправлено", "received": "получено",
            "accepted": "принято", "rejected": "отклонено", "in-progress": "в работе",
            "on-hold": "приостановлено", "completed": "выполнено", "failed": "не выполнено",
            "cancelled": "отменено", "entered-in-error": "ошибочная запись",
        },
        "en": {},
    },
    "refusal": {
        "ru": {"family-unknown": "семьи нет в банке данных", "case-refused": "случай не открыт"},
        "en": {"family-unknown": "the family is not in the data bank", "case-refused": "no case could be opened"},
    },
    "priority": {
        "ru": {"red": "высокий", "amber": "средний", "green": "низкий"},
        "en": {"red": "high", "amber": "medium", "green": "low"},
    },
}  # fmt: skip


def label(kind: str, code: str | None, language: str) -> str:
    if code is None:
        return ""
    return LABELS.get(kind, {}).get(language, {}).get(code) or code.replace("_", " ")
