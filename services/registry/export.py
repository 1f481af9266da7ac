"""The data bank's filtered list as a file for coordinators: CSV (UTF-8 with a BOM, so
spreadsheet programs read the Russian headings) and XLSX. Codes are written as their Russian
labels; the columns are the list's, plus the address and the number of children."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.registry.models import Family, Member
from services.registry.statistics import CATEGORY_RU

STAGE_RU = {
    "preparatory": "подготовительный",
    "support": "сопровождение",
    "final": "заключительный",
    "closed": "закрыт",
}
# (field as the audit trail names it, heading)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("number", "Номер"),
    ("display_name", "Семья"),
    ("category", "Категория"),
    ("district", "Район"),
    ("settlement", "Населённый пункт"),
    ("street", "Улица"),
    ("house", "Дом"),
    ("flat", "Квартира"),
    ("stage", "Этап"),
    ("lead_specialist", "Ведущий специалист"),
    ("in_bank", "В банке данных"),
    ("children", "Детей"),
    ("created_at", "Поставлена на учёт"),
)
FIELDS = [key for key, _ in COLUMNS]
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def rows(session: Session, families: Sequence[Family]) -> list[list[Any]]:
    """One row per family, in the list's order; children counted in one query."""
    ids = [f.id for f in families]
    counted = session.execute(
        select(Member.family_id, func.count())
        .where(Member.family_id.in_(ids), Member.role == "child")
        .group_by(Member.family_id)
    )
    children: dict[str, int] = {family_id: count for family_id, count in counted}
    out = []
    for family in families:
        created: dt.datetime = family.created_at
        out.append(
            [
                family.number,
                family.display_name,
                CATEGORY_RU.get(family.category, family.category),
                family.district,
                family.settlement,
                family.street or "",
                family.house or "",
                family.flat or "",
                STAGE_RU.get(family.stage or "", family.stage or ""),
                family.lead_specialist or "",
                "да" if family.in_bank else "нет",
                children.get(family.id, 0),
                created.date().strftime("%d.%m.%Y"),
            ]
        )
    return out


def to_csv(table: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([heading for _, heading in COLUMNS])
    writer.writerows(table)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(table: list[list[Any]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook(write_only=False)
    sheet = workbook.active
    sheet.title = "Банк данных"
    sheet.append([heading for _, heading in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in table:
        sheet.append(row)
    for index in range(1, len(COLUMNS) + 1):
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = 18
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
