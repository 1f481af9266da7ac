"""The raid report: who took part, which families were visited and how, what follows.

The JSON form is for systems; the HTML form is a printable document (A4, print CSS) for the
commission's file. Both carry families' personal data: the API audits every read.
"""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy.orm import Session

from services.raids.domain import families_of, local
from services.raids.ical import PURPOSE_TEXT
from services.raids.models import Raid

OUTCOME_RU = {
    "visited": "посещена",
    "nobody_home": "никого нет дома",
    "refused_entry": "отказ во входе",
}
STATE_RU = {
    "invited": "приглашён",
    "confirmed": "подтвердил",
    "declined": "отказался",
    "withdrawn": "снят",
}
STATUS_RU = {
    "planned": "запланирован",
    "confirmed": "подтверждён",
    "in_progress": "идёт",
    "completed": "завершён",
    "cancelled": "отменён",
}
CONDITION_RU = {
    "food": "питание",
    "cleanliness": "санитарное состояние",
    "heating": "отопление",
    "children_present": "дети дома",
    "children_state": "состояние детей",
    "adults_state": "состояние взрослых",
}


def _address(address: dict[str, Any]) -> str:
    parts = [address.get(k) for k in ("settlement", "street", "house")]
    line = ", ".join(str(p) for p in parts if p)
    return f"{line}, кв. {address['flat']}" if address.get("flat") else line


def build_report(session: Session, raid: Raid) -> dict[str, Any]:
    families = {f.family_id: f for f in families_of(session, raid)}
    visits = {v.family_id: v for v in raid.visits}
    planned = {s["family_id"]: s for s in (raid.route or {}).get("stops", [])}
    rows = []
    for stop in raid.stops:
        family = families.get(stop.family_id)
        visit = visits.get(stop.family_id)
        rows.append(
            {
                "position": stop.position,
                "family_id": stop.family_id,
                "number": family.number if family else None,
                "display_name": family.display_name if family else None,
                "category": family.category if family else None,
                "address": _address(family.address) if family else None,
                "planned_arrival": planned.get(stop.family_id, {}).get("arrival"),
                "visit": None
                if visit is None
                else {
                    "visit_id": visit.id,
                    "outcome": visit.outcome,
                    "visited_at": visit.visited_at.isoformat(),
                    "conditions": visit.conditions,
                    "children_seen": visit.children_seen,
                    "findings": visit.findings,
                    "actions_taken": visit.actions_taken,
                    "urgent_concern": visit.urgent_concern,
                    "urgent_reason": visit.urgent_reason,
                    "followups": visit.followups,
                    "participant_ids": visit.participant_ids,
                },
            }
        )
    outcomes: dict[str, int] = {}
    for visit in raid.visits:
        outcomes[visit.outcome] = outcomes.get(visit.outcome, 0) + 1
    followups = [{"family_id": v.family_id, **f} for v in raid.visits for f in v.followups]
    start, end = local(raid, raid.starts_at), local(raid, raid.ends_at)
    return {
        "raid": {
            "id": raid.id,
            "title": raid.title,
            "purpose": raid.purpose,
            "district": raid.district,
            "status": raid.status,
            "date": start.date().isoformat(),
            "window": f"{start:%H:%M}–{end:%H:%M}",
            "timezone": raid.timezone,
            "coordinator_id": raid.coordinator_id,
            "meeting_point": raid.centre_name,
            "cancel_reason": raid.cancel_reason,
            "completion_note": raid.completion_note,
        },
        "participants": [
            {
                "person_id": p.person_id,
                "display_name": p.display_name,
                "agency_id": p.agency_id,
                "agency_kind": p.agency_kind,
                "role": p.role,
                "state": p.state,
                "took_part": any(p.person_id in v.participant_ids for v in raid.visits),
            }
            for p in raid.participants
        ],
        "families": rows,
        "totals": {
            "families_planned": len(raid.stops),
            "outcomes": outcomes,
            "not_visited": sum(1 for r in rows if r["visit"] is None),
            "followups": len(followups),
            "urgent_concerns": sum(1 for v in raid.visits if v.urgent_concern),
        },
        "followups": followups,
        "route": {
            k: (raid.route or {}).get(k)
            for k in ("total_km", "travel_minutes", "fits_window", "warnings")
        },
    }


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


CSS = """
@page { size: A4; margin: 15mm 12mm; }
body { font-family: "PT Sans", "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #000; }
h1 { font-size: 15pt; margin: 0 0 4pt; } h2 { font-size: 12pt; margin: 12pt 0 4pt; }
table { width: 100%; border-collapse: collapse; margin-bottom: 6pt; }
th, td { border: 0.5pt solid #444; padding: 3pt 4pt; vertical-align: top; text-align: left; }
th { background: #eee; } .urgent { font-weight: bold; color: #a00; }
.meta td { border: none; padding: 1pt 4pt 1pt 0; } .signatures td { border: none; padding-top: 18pt; }
tr { page-break-inside: avoid; } .noprint { margin: 8pt 0; }
@media print { .noprint { display: none; } }
"""


def render_html(report: dict[str, Any]) -> str:
    """A self-contained printable document: Russian first, as the commission files it."""
    raid = report["raid"]
    people = "".join(
        f"<tr><td>{_e(p['display_name'])}</td><td>{_e(p['agency_kind'])} ({_e(p['agency_id'])})</td>"
        f"<td>{_e(p['role'])}</td><td>{_e(STATE_RU.get(p['state'], p['state']))}</td>"
        f"<td>{'да' if p['took_part'] else '—'}</td></tr>"
        for p in report["participants"]
    )
    families = []
    for row in report["families"]:
        visit = row["visit"]
        if visit is None:
            result = "не посещена"
            details = ""
        else:
            result = OUTCOME_RU.get(visit["outcome"], visit["outcome"])
            checklist = "; ".join(
                f"{CONDITION_RU.get(k, k)}: {_e(v)}" for k, v in (visit["conditions"] or {}).items()
            )
            followups = ", ".join(_e(f["service_code"]) for f in visit["followups"])
            details = (
                f"{checklist}<br>Детей осмотрено: {visit['children_seen']}"
                + (f"<br>Выявлено: {_e(visit['findings'])}" if visit["findings"] else "")
                + (
                    f"<br>Меры на месте: {_e(visit['actions_taken'])}"
                    if visit["actions_taken"]
                    else ""
                )
                + (f"<br>Направления: {followups}" if followups else "")
                + (
                    f"<br><span class='urgent'>СРОЧНО: {_e(visit['urgent_reason'])}</span>"
                    if visit["urgent_concern"]
                    else ""
                )
            )
        families.append(
            f"<tr><td>{_e(row['position'])}</td><td>{_e(row['number'])}<br>{_e(row['display_name'])}</td>"
            f"<td>{_e(row['category'])}</td><td>{_e(row['address'])}</td>"
            f"<td>{_e(result)}</td><td>{details}</td></tr>"
        )
    totals = report["totals"]
    outcome_text = (
        ", ".join(f"{OUTCOME_RU.get(k, k)}: {v}" for k, v in sorted(totals["outcomes"].items()))
        or "—"
    )
    return f"""<!DOCTYPE html>
<html lang="ru"><head><meta charset="utf-8">
<title>Отчёт о межведомственном рейде {_e(raid["date"])}</title>
<style>{CSS}</style></head><body>
<p class="noprint"><button onclick="window.print()">Печать / Print</button></p>
<h1>Отчёт о межведомственном рейде</h1>
<table class="meta">
<tr><td>Рейд:</td><td>{_e(raid["title"])}</td></tr>
<tr><td>Цель:</td><td>{_e(PURPOSE_TEXT.get(raid["purpose"], raid["purpose"]))}</td></tr>
<tr><td>Район:</td><td>{_e(raid["district"])}; сбор: {_e(raid["meeting_point"])}</td></tr>
<tr><td>Дата и время:</td><td>{_e(raid["date"])}, {_e(raid["window"])} ({_e(raid["timezone"])})</td></tr>
<tr><td>Статус:</td><td>{_e(STATUS_RU.get(raid["status"], raid["status"]))}</td></tr>
</table>
<h2>Участники</h2>
<table><tr><th>Ф. И. О.</th><th>Ведомство</th><th>Роль</th><th>Приглашение</th><th>Участвовал</th></tr>
{people}</table>
<h2>Семьи</h2>
<table><tr><th>№</th><th>Семья</th><th>Категория</th><th>Адрес</th><th>Результат</th><th>Акт обследования</th></tr>
{"".join(families)}</table>
<h2>Итоги</h2>
<p>Запланировано семей: {totals["families_planned"]}; {_e(outcome_text)}; не посещено: {totals["not_visited"]};
направлений: {totals["followups"]}; срочных сигналов: {totals["urgent_concerns"]}.</p>
{f"<p>Примечание: {_e(raid['completion_note'])}</p>" if raid["completion_note"] else ""}
<table class="signatures"><tr><td>Координатор: ____________________</td><td>Участники: ____________________</td></tr></table>
</body></html>
"""
