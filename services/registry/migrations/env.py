"""Alembic environment of the registry service."""

from services.registry.models import Base
from shared.db import run_migrations_from_env

run_migrations_from_env(Base.metadata)
