"""Events the notifications service turns into messages."""

from sqlalchemy.orm import Session

from services.notifications import domain
from services.notifications.delivery import jobs as delivery_jobs
from shared.events import Event
from shared.messaging.consumer import Handlers

handlers = Handlers("notifications")
jobs = delivery_jobs


@handlers.on("registry.family.registered")
def family_registered(session: Session, event: Event) -> None:
    domain.new_family_messages(
        session, event.id, event.type, event.data, handlers.settings.public_url
    )
