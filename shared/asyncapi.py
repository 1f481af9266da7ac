"""The AsyncAPI document, generated from the registered event schemas (never written by hand)."""

from __future__ import annotations

import importlib
from typing import Any

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from shared.config import SERVICES
from shared.events import EnvelopeSchema, load_all_event_types
from shared.messaging.topology import Names


def _json_schema(converter: Any, schema: Any) -> dict[str, Any]:
    return dict(converter.schema2jsonschema(schema))


def _inline(_schema: Any) -> str:
    """Nested schemas inline, so each message reads on its own."""
    return ""


def build_asyncapi(prefix: str = "opora") -> dict[str, Any]:
    registry = load_all_event_types()
    plugin = MarshmallowPlugin(schema_name_resolver=_inline)
    APISpec("opora-events", "1", "3.0.3", plugins=[plugin])
    converter = plugin.converter
    assert converter is not None
    names = Names(prefix)
    envelope = _json_schema(converter, EnvelopeSchema)
    channels: dict[str, Any] = {}
    for event_type in registry.all():
        envelope_for_type = {
            **envelope,
            "properties": {
                **envelope["properties"],
                "type": {"type": "string", "const": event_type.name},
                "version": {"type": "integer", "const": event_type.version},
                "data": _json_schema(converter, event_type.schema),
            },
        }
        message_name = f"{event_type.name}.v{event_type.version}"
        channel = channels.setdefault(
            event_type.name,
            {
                "description": f"Routing key {event_type.name} on the topic exchange {names.events}",
                "subscribe": {
                    "operationId": event_type.name.replace(".", "_"),
                    "message": {"oneOf": []},
                },
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": names.events, "type": "topic", "durable": True},
                    }
                },
            },
        )
        channel["subscribe"]["message"]["oneOf"].append(
            {
                "name": message_name,
                "title": f"{event_type.name} v{event_type.version}",
                "summary": (event_type.schema.__doc__ or "").strip(),
                "contentType": "application/json",
                "payload": envelope_for_type,
            }
        )
    for service in SERVICES:
        # A service may document channels beyond the event bus (referrals: agency systems).
        extra = getattr(
            importlib.import_module(f"services.{service}.events"), "asyncapi_channels", None
        )
        if extra is not None:
            channels.update(extra(names, lambda schema: _json_schema(converter, schema)))
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "Opora domain events",
            "version": "1",
            "description": "Every event travels in the envelope; `data` follows the schema of its type and version.",
        },
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_asyncapi() -> str:
    return yaml.dump(build_asyncapi(), Dumper=_NoAliases, sort_keys=False, allow_unicode=True)
