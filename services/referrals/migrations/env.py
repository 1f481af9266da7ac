"""Alembic environment of the referrals service."""

from services.referrals.models import Base
from shared.db import run_migrations_from_env

run_migrations_from_env(Base.metadata)
