"""Every service serves a valid OpenAPI document that describes its errors and security."""

from __future__ import annotations

import re

import pytest
from conftest import System
from openapi_spec_validator import validate

from shared.config import SERVICES

pytestmark = pytest.mark.embedded


@pytest.mark.parametrize("service", SERVICES)
def test_served_openapi_document_is_valid(embedded_system: System, service: str) -> None:
    app = embedded_system.app(service)
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    assert spec["info"]["title"] == f"Opora {service}"
    operational = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
    routes = {
        re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.endpoint.startswith("api-docs")
    } - operational
    assert routes <= set(spec.get("paths", {})), (
        f"undocumented routes: {routes - set(spec['paths'])}"
    )
    schemes = spec["components"]["securitySchemes"]
    assert {"bearer", "apiKey"} <= set(schemes)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            assert operation.get("security") != [], f"{method.upper()} {path} is public"
            documented = set(operation.get("responses", {}))
            assert documented & {"200", "201", "204", "302", "303"}, (
                f"{method.upper()} {path} documents no success"
            )
            assert "default" in documented or any(code.startswith("4") for code in documented), (
                f"{method.upper()} {path} documents no error response"
            )


@pytest.mark.parametrize("service", SERVICES)
def test_api_docs_load_swagger_ui_from_the_service_itself(
    embedded_system: System, service: str
) -> None:
    """A closed network has no CDN: /docs takes Swagger UI from the npm package that
    `make setup` copies beside the code."""
    client = embedded_system.app(service).test_client()
    page = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.data) > 1000, asset
    assert client.get("/docs/assets/secrets.txt").status_code == 404
