"""The built-in default templates (version 0), one YAML file per language.

Each file maps a template key to its channels; an email entry holds ``subject``, ``text`` and
an HTML fragment ``html``, an SMS entry only ``text``. The file's ``_layout`` entry holds the
footer appended to every email text and the HTML page every fragment is put into, so the
default an admin sees through the API is the complete source, ready to copy and edit.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

FOLDER = Path(__file__).parent
BODY = "{body}"


@functools.cache
def load(language: str) -> dict[str, dict[str, dict[str, str | None]]]:
    """key -> channel -> {"subject", "text", "html"} for one language, read once."""
    raw: dict[str, Any] = yaml.safe_load((FOLDER / f"{language}.yaml").read_text("utf-8"))
    layout = raw.pop("_layout")
    footer: str = layout["text_footer"]
    page: str = layout["html_page"]
    out: dict[str, dict[str, dict[str, str | None]]] = {}
    for key, channels in raw.items():
        out[key] = {}
        for channel, parts in channels.items():
            if channel == "email":
                out[key][channel] = {
                    "subject": parts["subject"].strip(),
                    "text": parts["text"].rstrip("\n") + "\n\n" + footer.rstrip("\n") + "\n",
                    "html": page.replace(BODY, parts["html"].strip()),
                }
            else:
                out[key][channel] = {"subject": None, "text": parts["text"].strip(), "html": None}
    return out
