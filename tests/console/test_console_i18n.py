"""Every string of the console is in the English catalogue, translated, and the compiled
catalogue the app loads (.mo, committed) says the same as its source (.po)."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

CONSOLE = Path(__file__).resolve().parents[2] / "services" / "console"
CATALOGUE = CONSOLE / "translations" / "en" / "LC_MESSAGES"


def extracted() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(CONSOLE), method_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_string_has_an_english_translation() -> None:
    catalogue = read_po(io.BytesIO((CATALOGUE / "messages.po").read_bytes()))
    translated = {m.id: m.string for m in catalogue if m.id}
    missing = sorted(m for m in extracted() if not translated.get(m))
    assert not missing, "add to translations/en/LC_MESSAGES/messages.po: " + repr(missing)


def test_the_compiled_catalogue_matches_its_source() -> None:
    source = read_po(io.BytesIO((CATALOGUE / "messages.po").read_bytes()))
    compiled = read_mo(io.BytesIO((CATALOGUE / "messages.mo").read_bytes()))
    assert {m.id: m.string for m in source if m.id} == {m.id: m.string for m in compiled if m.id}, (
        "run `make translations` to compile messages.mo"
    )
