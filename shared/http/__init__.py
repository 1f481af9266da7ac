"""The HTTP side of every service: app factory, request session, auth hooks, problems, lists
and idempotent writes."""

from shared.http.app import (
    OporaApp,
    create_service_app,
    db_session,
    link_protected,
    opora_app,
    public,
)
from shared.http.idempotency import idempotent, purge_idempotency_keys
from shared.http.pagination import PageArgs, page_schema, paginate

__all__ = [
    "OporaApp",
    "PageArgs",
    "create_service_app",
    "db_session",
    "idempotent",
    "link_protected",
    "opora_app",
    "page_schema",
    "paginate",
    "public",
    "purge_idempotency_keys",
]
