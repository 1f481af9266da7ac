"""What every form of the console does the same way: it keeps what was typed, shows the API's
problem+json field errors next to their fields and summarised at the top, and carries an
Idempotency-Key made when the form was rendered, which the view sends on to the API: a double
submit (two clicks, a reload that re-posts) reaches the service twice with one key and does
nothing twice.

    form = FormState.new({"title": _("Название"), "deadline": _("Срок")})
    ...on POST:
    form = FormState.from_request(FIELDS)
    try:
        client.post("/cases/1/measures", form.payload(), idempotency_key=form.idempotency_key)
    except ApiError as error:
        form.fail(error)
        return render_template("...", form=form), 422
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import request

from services.console.clients import ApiError

FORM_ERRORS = "_form"
"""Errors that name no field of the form: shown in the summary only."""
KEY_FIELD = "idempotency_key"


@dataclass
class FormState:
    fields: dict[str, str]
    """Field name -> its label (the summary links each error to its field by that label)."""
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def new(cls, fields: Mapping[str, Any], initial: Mapping[str, Any] | None = None) -> FormState:
        values = {k: "" if v is None else str(v) for k, v in (initial or {}).items()}
        return cls({k: str(v) for k, v in fields.items()}, values)

    @classmethod
    def from_request(cls, fields: Mapping[str, Any]) -> FormState:
        """The submitted form, with the key it was rendered with (a new one if it has none)."""
        values = {name: request.form.get(name, "").strip() for name in fields}
        key = request.form.get(KEY_FIELD, "")
        state = cls({k: str(v) for k, v in fields.items()}, values)
        if 8 <= len(key) <= 200 and key.isascii():
            state.idempotency_key = key
        return state

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def payload(self, *, blank_as_none: bool = True) -> dict[str, Any]:
        """The values as a JSON body; blank fields become null (or are left out)."""
        return {
            k: (v if v != "" else None) for k, v in self.values.items() if v != "" or blank_as_none
        }

    def fail(self, error: ApiError) -> None:
        """Put the API's field errors on the fields they name (``json.deadline`` -> deadline).

        The form comes back with a new Idempotency-Key: the service stored its refusal under
        the old one, so the corrected form sent with it would be refused as a reuse."""
        self.idempotency_key = str(uuid.uuid4())
        for path, messages in error.errors.items():
            name = path.split(".", 1)[1] if path.startswith(("json.", "form.", "query.")) else path
            name = name.split(".", 1)[0]
            self.errors.setdefault(name if name in self.fields else FORM_ERRORS, []).extend(
                messages
            )
        if not error.errors:
            self.errors.setdefault(FORM_ERRORS, []).append(error.detail or error.title)
