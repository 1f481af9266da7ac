"""Events raids consumes: the registry's family events feed the local read model."""

from sqlalchemy.orm import Session

from services.raids import domain
from shared.events import Event
from shared.messaging.consumer import Handlers

handlers = Handlers("raids")


@handlers.on_batch("registry.family.registered")
@handlers.on_batch("registry.family.updated")
def families_changed(session: Session, events: list[Event]) -> None:
    """Registered or updated, each event is a full snapshot: ``family_version`` orders them."""
    domain.remember_families(session, [(event.data, event.occurred_at) for event in events])
