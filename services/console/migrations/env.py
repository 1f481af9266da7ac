"""Alembic environment of the console (its sessions table)."""

from services.console.models import Base
from shared.db import run_migrations_from_env

run_migrations_from_env(Base.metadata)
