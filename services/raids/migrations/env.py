"""Alembic environment of the raids service."""

from services.raids.models import Base
from shared.db import run_migrations_from_env

run_migrations_from_env(Base.metadata)
