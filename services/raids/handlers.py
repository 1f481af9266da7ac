"""Events raids consumes: the registry's family events feed the local read model."""

from sqlalchemy.orm import Session

from services.raids import domain
from shared.events import Event
from shared.messaging.consumer import Handlers

handlers = Handlers("raids")


@handlers.on("registry.family.registered")
def family_registered(session: Session, event: Event) -> None:
    domain.remember_family(session, event.data, event.occurred_at)
