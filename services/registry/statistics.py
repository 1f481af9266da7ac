"""Effectiveness statistics per region, district and year (the table the seed article reports
for 2017-2020), and its exports: CSV, XLSX and a PNG chart. Counts only, no personal data."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import addresses
from services.registry.models import (
    CATEGORIES,
    OUTCOMES,
    Case,
    CategoryChange,
    Family,
    FamilyAddress,
)

CATEGORY_RU = {"sop": "СОП", "risk_group": "группа риска", "tzhs": "ТЖС"}
OUTCOME_RU = {
    "improvement": "с улучшением",
    "no_improvement": "без улучшения",
    "moved_away": "переезд",
    "children_came_of_age": "совершеннолетие детей",
    "transferred": "передана в другой орган",
    "other": "другое",
}


def compute(
    session: Session,
    *,
    year_from: int,
    year_to: int,
    region: str | None = None,
    district: str | None = None,
    by: str = "district",
) -> dict[str, Any]:
    """One row per (region[, district], year).

    A family counts where it lived at the moment that counts: an entry in the district of its
    address on the day its case opened, a removal in that of the day it closed, the families in
    the bank at year end in that of 31 December (the address history, ``addresses``).
    """
    first = dt.date(year_from, 1, 1)
    last = dt.date(year_to, 12, 31)
    stmt = (
        select(
            Case.family_id,
            Case.opened_on,
            Case.closed_on,
            Case.reentry,
            Case.outcome,
            Case.entry_category,
            Case.close_category,
            Family.region,
            Family.district,
        )
        .join(Family, Family.id == Case.family_id)
        .where(Case.opened_on <= last)
        .where((Case.closed_on.is_(None)) | (Case.closed_on >= first))
    )
    # Families that ever lived in the area: whether a moment counts there is decided below.
    if region:
        stmt = stmt.where(
            Case.family_id.in_(
                select(FamilyAddress.family_id).where(FamilyAddress.region == region)
            )
            | (Family.region == region)
        )
    if district:
        stmt = stmt.where(
            Case.family_id.in_(
                select(FamilyAddress.family_id).where(FamilyAddress.district == district)
            )
            | (Family.district == district)
        )
    cases = session.execute(stmt).all()
    family_ids = sorted({c.family_id for c in cases})
    places = addresses.Locations.load(session, family_ids)
    history: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    for start in range(0, len(family_ids), 1000):
        chunk = family_ids[start : start + 1000]
        for row in session.execute(
            select(CategoryChange.family_id, CategoryChange.changed_on, CategoryChange.category_to)
            .where(CategoryChange.family_id.in_(chunk))
            .order_by(CategoryChange.changed_on, CategoryChange.recorded_at)
        ):
            history[row.family_id].append((row.changed_on, row.category_to))

    def category_on(family_id: str, day: dt.date, fallback: str) -> str:
        category = fallback
        for changed_on, to in history.get(family_id, []):
            if changed_on <= day:
                category = to
        return category

    rows: dict[tuple[str, str | None, int], dict[str, Any]] = {}

    def bucket(case: Any, year: int, day: dt.date) -> dict[str, Any] | None:
        """The row of the area the family lived in on ``day``; None outside the selection."""
        place = places.on(case.family_id, day, addresses.Place(case.region, case.district))
        if (region and place.region != region) or (district and place.district != district):
            return None
        key = (place.region, place.district if by == "district" else None, year)
        if key not in rows:
            rows[key] = {
                "region": place.region,
                "district": key[1],
                "year": year,
                "in_bank_at_year_end": dict.fromkeys(CATEGORIES, 0),
                "entered": 0,
                "re_entered": 0,
                "removed": dict.fromkeys(OUTCOMES, 0),
                "_durations": defaultdict(list),
            }
        return rows[key]

    for case in cases:
        for year in range(year_from, year_to + 1):
            end = dt.date(year, 12, 31)
            if (
                case.opened_on.year == year
                and (target := bucket(case, year, case.opened_on)) is not None
            ):
                target["entered"] += 1
                target["re_entered"] += int(case.reentry)
            in_bank = case.opened_on <= end and (case.closed_on is None or case.closed_on > end)
            if in_bank and (target := bucket(case, year, end)) is not None:
                category = category_on(case.family_id, end, case.entry_category)
                target["in_bank_at_year_end"][category] += 1
            if (
                case.closed_on is not None
                and case.closed_on.year == year
                and (target := bucket(case, year, case.closed_on)) is not None
            ):
                target["removed"][case.outcome or "other"] += 1
                category = case.close_category or case.entry_category
                target["_durations"][category].append((case.closed_on - case.opened_on).days)

    result = []
    for key in sorted(rows, key=lambda k: (k[0], k[1] or "", k[2])):
        item = rows[key]
        durations = item.pop("_durations")
        item["in_bank_at_year_end"]["total"] = sum(item["in_bank_at_year_end"].values())
        item["removed"]["total"] = sum(item["removed"].values())
        item["average_duration_days"] = {
            c: (round(sum(durations[c]) / len(durations[c]), 1) if durations.get(c) else None)
            for c in CATEGORIES
        }
        result.append(item)
    return {
        "year_from": year_from,
        "year_to": year_to,
        "region": region,
        "district": district,
        "by": by,
        "rows": result,
    }


def _columns() -> list[tuple[str, str]]:
    """(key, heading): Russian first, English second."""
    cols = [
        ("region", "Регион / Region"),
        ("district", "Район / District"),
        ("year", "Год / Year"),
    ]
    cols += [
        (f"in_bank.{c}", f"В банке на конец года: {CATEGORY_RU[c]} / In bank at year end: {c}")
        for c in CATEGORIES
    ]
    cols += [
        ("in_bank.total", "В банке на конец года, всего / In bank at year end, total"),
        ("entered", "Поставлено на учёт / Entered"),
        ("re_entered", "Поставлено повторно / Re-entered"),
    ]
    cols += [(f"removed.{o}", f"Снято: {OUTCOME_RU[o]} / Removed: {o}") for o in OUTCOMES]
    cols += [("removed.total", "Снято, всего / Removed, total")]
    cols += [
        (
            f"duration.{c}",
            f"Средняя длительность, дней: {CATEGORY_RU[c]} / Average duration, days: {c}",
        )
        for c in CATEGORIES
    ]
    return cols


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out = {"region": row["region"], "district": row["district"] or "", "year": row["year"]}
    out.update({f"in_bank.{k}": v for k, v in row["in_bank_at_year_end"].items()})
    out.update({"entered": row["entered"], "re_entered": row["re_entered"]})
    out.update({f"removed.{k}": v for k, v in row["removed"].items()})
    out.update(
        {f"duration.{k}": ("" if v is None else v) for k, v in row["average_duration_days"].items()}
    )
    return out


def to_csv(stats: dict[str, Any]) -> bytes:
    """UTF-8 with a BOM, so spreadsheet programs open the Russian headings correctly."""
    buffer = io.StringIO()
    columns = _columns()
    writer = csv.writer(buffer)
    writer.writerow([heading for _, heading in columns])
    for row in stats["rows"]:
        flat = _flat(row)
        writer.writerow([flat[key] for key, _ in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(stats: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Статистика"
    columns = _columns()
    sheet.append([heading for _, heading in columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row in stats["rows"]:
        flat = _flat(row)
        sheet.append([flat[key] if flat[key] != "" else None for key, _ in columns])
    for index in range(1, len(columns) + 1):
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = 18
    sheet.freeze_panes = "D2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def to_png(stats: dict[str, Any]) -> bytes:
    """A bar chart per year over the selected area: entered, re-entered, removed with
    improvement, and families in the bank at year end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    years = list(range(stats["year_from"], stats["year_to"] + 1))
    series: dict[str, defaultdict[int, int]] = {
        "Поставлено / entered": defaultdict(int),
        "Повторно / re-entered": defaultdict(int),
        "Снято с улучшением / removed, improvement": defaultdict(int),
        "В банке на конец года / in bank at year end": defaultdict(int),
    }
    for row in stats["rows"]:
        year = row["year"]
        series["Поставлено / entered"][year] += row["entered"]
        series["Повторно / re-entered"][year] += row["re_entered"]
        series["Снято с улучшением / removed, improvement"][year] += row["removed"]["improvement"]
        series["В банке на конец года / in bank at year end"][year] += row["in_bank_at_year_end"][
            "total"
        ]
    figure, axes = plt.subplots(figsize=(9, 4.8), dpi=100)
    width = 0.8 / len(series)
    for index, (label, values) in enumerate(series.items()):
        axes.bar(
            [y + (index - (len(series) - 1) / 2) * width for y in years],
            [values[y] for y in years],
            width,
            label=label,
        )
    area = stats["district"] or stats["region"] or "все районы / all districts"
    axes.set_title(f"Семьи в банке данных: {area}")
    axes.set_xticks(years)
    axes.set_ylabel("семей / families")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
