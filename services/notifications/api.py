"""The notifications HTTP API: message status for admins."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from services.notifications.models import Message
from services.notifications.schemas import MessageArgs, MessageOut, MessagePage
from shared.auth.policy import require
from shared.auth.roles import ADMIN, COORDINATOR
from shared.errors import NotFound
from shared.http import db_session, paginate

messages = Blueprint(
    "messages", __name__, url_prefix="/messages", description="Emails and SMS and their state"
)


@messages.route("", methods=["GET"])
@messages.arguments(MessageArgs, location="query")
@messages.response(200, MessagePage)
@require(ADMIN, COORDINATOR)
def list_messages(args: dict[str, Any]) -> Any:
    stmt = select(Message).order_by(Message.created_at.desc(), Message.id)
    for key in ("source_event_id", "recipient_id"):
        if args.get(key):
            stmt = stmt.where(getattr(Message, key) == args[key])
    return paginate(db_session(), stmt, page=args["page"], page_size=args["page_size"])


@messages.route("/<message_id>", methods=["GET"])
@messages.response(200, MessageOut)
@require(ADMIN, COORDINATOR)
def get_message(message_id: str) -> Any:
    message = db_session().get(Message, message_id)
    if message is None:
        raise NotFound(f"no message {message_id}")
    return message
