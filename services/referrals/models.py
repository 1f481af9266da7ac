"""The referrals service's tables (the agency directory and referrals come with their issue)."""

from shared.db import make_base
from shared.tables import infrastructure_tables

Base = make_base()
tables = infrastructure_tables(Base.metadata)
