"""The world the story runs in: its processes, its configuration, what left it by email and SMS,
and how to act in it as a person with a token or a system with an API key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processes import Processes
from sqlalchemy import Engine

from scenario.parties import Outbox, Party, Story
from shared.config import load_settings


@dataclass
class World:
    mode: str
    env: dict[str, str]
    story: Story
    outbox: Outbox
    processes: Processes
    keys: dict[str, str]
    police_password: str | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def settings(self, service: str) -> Any:
        return load_settings(service, env=self.env)

    def engine(self, service: str) -> Engine:
        """The service's database, for what the test itself must look at (documented where)."""
        from shared.db import make_engine

        if service not in self._engines:
            url = load_settings(service, env=self.env, database_only=True).database_url
            self._engines[service] = make_engine(url)
        return self._engines[service]

    def person(self, name: str, subject: str, *roles: str, agency: str | None = None) -> Party:
        """A person with a bearer token of the development signer (the OIDC provider's part)."""
        from shared.auth.tokens import issue_dev_token

        signer = load_settings(
            "registry",
            env={
                "OPORA_MODE": "embedded",
                "OPORA_DATA_DIR": self.env["OPORA_DATA_DIR"],
                "OPORA_JWT_SECRET": self.env["OPORA_JWT_SECRET"],
                "OPORA_JWT_ISSUER": self.env["OPORA_JWT_ISSUER"],
                "OPORA_JWT_AUDIENCE": self.env["OPORA_JWT_AUDIENCE"],
            },
        )
        token = issue_dev_token(signer, subject=subject, roles=list(roles), agency_id=agency)
        return Party(name, subject, {"Authorization": f"Bearer {token}"})

    def system(self, name: str, key_name: str) -> Party:
        """An agency system with its API key (``opk_<key id>_<secret>``)."""
        key = self.keys[key_name]
        return Party(name, f"apikey:{key.split('_')[1]}", {"X-Api-Key": key})

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
