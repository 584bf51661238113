"""The generated OpenAPI description (/openapi.json) and its HTML page (/docs).

The description comes from the URL map, docstrings and pydantic models, so these tests check the
generator's guarantees (valid OpenAPI 3.1, every route present, problem+json errors) and that the
documented response shapes match what the endpoints really answer.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import metadata
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.typing import ResponseReturnValue
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

import hsm
from signer.api import docs_page, openapi
from signer.services import Services
from tests.conftest import World
from tests.signing_support import make_signing_world

# The description does not depend on the database: one backend is enough.
pytestmark = pytest.mark.one_db
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def docs_app(app: Flask) -> Flask:
    """The app with the docs blueprint, whether or not create_app registers it yet."""
    if openapi.DOCS_BLUEPRINT not in app.blueprints:
        app.register_blueprint(docs_page.bp)
    return app


@pytest.fixture
def docs_client(docs_app: Flask) -> Any:
    return docs_app.test_client()


@pytest.fixture
def spec(docs_client: Any) -> dict[str, Any]:
    resp = docs_client.get("/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body: dict[str, Any] = resp.json
    return body


def described(rule_endpoint: str) -> bool:
    return rule_endpoint not in openapi.EXCLUDED_ENDPOINTS and \
        rule_endpoint.partition(".")[0] not in openapi.EXCLUDED_BLUEPRINTS


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    return schema


def walk(node: Any) -> Any:
    """Every dict inside ``node``."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def operations(spec: dict[str, Any]) -> Any:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def check_body(spec: dict[str, Any], path: str, method: str, resp: Any) -> None:
    """``resp`` matches the schema the description gives for its status and media type."""
    documented = spec["paths"][path][method]["responses"]
    entry = documented.get(str(resp.status_code), documented["default"])
    schema = entry["content"][resp.mimetype]["schema"]
    # Validate against the whole document so that #/components/... references resolve.
    Draft202012Validator({"components": spec["components"], **schema}).validate(resp.json)


# -- the document --------------------------------------------------------------------------------


def test_document_is_valid_openapi_31(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"] == "Vietnamese government remote signing service"
    assert spec["info"]["version"] == metadata.version("vn-remote-signer")
    assert spec["servers"] == [{"url": "/"}]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "signer_session")


def test_every_route_is_described_and_the_docs_are_not(docs_app: Flask, spec: dict[str, Any]) -> None:
    for rule in docs_app.url_map.iter_rules():
        if not described(rule.endpoint):
            continue
        item = spec["paths"][openapi.openapi_path(rule)]
        for method in (rule.methods or set()) - IGNORED_METHODS:
            assert method.lower() in item, (rule.rule, method)
    assert "/openapi.json" not in spec["paths"] and "/docs" not in spec["paths"]
    assert not any(p.startswith("/static") for p in spec["paths"])
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))


def test_registry_names_only_real_endpoints(docs_app: Flask) -> None:
    """A renamed view would otherwise lose its description silently."""
    endpoints = {rule.endpoint for rule in docs_app.url_map.iter_rules()}
    assert set(openapi.REGISTRY) <= endpoints, set(openapi.REGISTRY) - endpoints


def test_a_new_endpoint_appears_by_itself(app: Flask) -> None:
    extra = Blueprint("extra", __name__, url_prefix="/v1/extra")

    @extra.get("/<int:item_id>/things/<name>")
    def thing(item_id: int, name: str) -> ResponseReturnValue:
        """Show one thing.

        A longer description of the thing.
        """
        return {"id": item_id, "name": name}

    app.register_blueprint(extra)
    if openapi.DOCS_BLUEPRINT not in app.blueprints:
        app.register_blueprint(docs_page.bp)
    spec = app.test_client().get("/openapi.json").json
    op = spec["paths"]["/v1/extra/{item_id}/things/{name}"]["get"]
    assert op["summary"] == "Show one thing." and "longer description" in op["description"]
    assert op["tags"] == ["extra"] and op["x-signer-described"] is False
    types = {p["name"]: p["schema"]["type"] for p in op["parameters"]}
    assert types == {"item_id": "integer", "name": "string"}
    assert op["responses"]["404"]["content"]["application/problem+json"]
    validate(spec)


def test_schemas_are_hoisted_and_every_reference_resolves(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for node in walk(spec):
        assert "$defs" not in node
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith("#/components/schemas/") and ref.rpartition("/")[2] in schemas, ref


def test_sign_request_body(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/v1/sign-requests"]["post"]
    content = op["requestBody"]["content"]
    body = resolve(spec, content["application/json"]["schema"])
    documents = body["properties"]["documents"]
    assert documents["maxItems"] == 1000 and documents["minItems"] == 1
    assert "up to 100 files" in documents["description"]
    document = resolve(spec, documents["items"])
    fields = {"name", "format", "content", "file", "hash", "profile", "level", "placement", "copy_form"}
    assert fields <= set(document["properties"])
    multipart = content["multipart/form-data"]
    assert multipart["schema"]["required"] == ["request"]
    assert resolve(spec, multipart["schema"]["properties"]["request"]) == body
    assert multipart["encoding"]["request"]["contentType"] == "application/json"
    params = {p["name"]: p for p in op["parameters"]}
    assert params["Idempotency-Key"]["in"] == "header"
    assert op["security"] == [{"apiKey": []}]
    assert {"202", "409", "413", "415", "422"} <= set(op["responses"])
    wait = {p["name"]: p for p in spec["paths"]["/v1/sign-requests/{request_id}"]["get"]["parameters"]}
    assert wait["wait"]["in"] == "query" and wait["request_id"]["in"] == "path"
    assert wait["request_id"]["required"] is True and wait["request_id"]["schema"] == {"type": "string"}


def test_binary_bodies(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    image = paths["/v1/credentials/{credential_id}/images/{kind}"]["put"]
    assert list(image["requestBody"]["content"]) == ["image/png"]
    assert {p["name"]: p["schema"] for p in image["parameters"]}["kind"] == {"enum": ["signature", "seal"]}
    download = paths["/v1/sign-requests/{request_id}/documents/{doc_id}/signed"]["get"]
    assert {"application/pdf", "application/pkcs7-signature"} <= set(download["responses"]["200"]["content"])
    tsa = paths["/tsa"]["post"]
    assert list(tsa["requestBody"]["content"]) == ["application/timestamp-query"]
    assert list(tsa["responses"]["200"]["content"]) == ["application/timestamp-reply"]
    assert tsa["security"] == [] and "401" not in tsa["responses"]


def test_every_error_response_is_a_problem(spec: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    assert set(resolve(spec, problem)["required"]) == {"type", "title", "status", "detail"}
    seen = 0
    for path, method, op in operations(spec):
        for status, response in op["responses"].items():
            if status.startswith("4") or status == "default":
                assert list(response["content"]) == ["application/problem+json"], (path, method, status)
                media = response["content"]["application/problem+json"]
                assert media["schema"] == problem
                assert all(e["value"]["type"].startswith("urn:signer:problem:")
                           for e in media["examples"].values())
                seen += 1
    assert seen > 50


# -- the page ------------------------------------------------------------------------------------


def test_docs_page_is_self_contained(docs_client: Any, spec: dict[str, Any]) -> None:
    resp = docs_client.get("/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "/v1/sign-requests" in page and "/v1/sign-requests/{request_id}/cancel" in page
    assert "Tài liệu API" in page and "urn:signer:problem:invalid-input" in page
    assert "maxItems: <code>1000</code>" in page and "Idempotency-Key" in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    for tag in spec["tags"]:
        assert f'id="tag-{tag["name"]}"' in page


def test_both_are_public(docs_client: Any, world: World) -> None:
    for url in ("/openapi.json", "/docs"):
        assert docs_client.get(url).status_code == 200


# -- the documented shapes are the real ones -----------------------------------------------------


def test_documented_shapes_match_the_answers(docs_client: Any, spec: dict[str, Any], world: World) -> None:
    key = {"Authorization": f"Bearer {world.api_key}"}
    for path in ("/v1/me", "/v1/credentials", "/healthz"):
        check_body(spec, path, "get", docs_client.get(path, headers=key))
    missing = docs_client.get("/v1/sign-requests/nope", headers=key)
    assert missing.status_code == 404
    check_body(spec, "/v1/sign-requests/{request_id}", "get", missing)
    invalid = docs_client.post("/v1/sign-requests", json={"documents": []}, headers=key)
    assert invalid.status_code == 422 and invalid.json["errors"]
    check_body(spec, "/v1/sign-requests", "post", invalid)
    login = docs_client.post("/v1/session", json={"username": "office-admin", "password": world.password})
    check_body(spec, "/v1/session", "post", login)
    for path in ("/v1/me", "/v1/admin/organisations", "/v1/admin/users", "/v1/admin/api-clients",
                 "/v1/credentials", "/v1/audit", "/v1/audit/verify"):
        resp = docs_client.get(path)
        assert resp.status_code == 200, (path, resp.json)
        check_body(spec, path, "get", resp)
    created = docs_client.post("/v1/admin/api-clients", json={
        "name": "DMS thử", "organisation_id": world.office, "scopes": ["sign"]})
    assert created.status_code == 201
    check_body(spec, "/v1/admin/api-clients", "post", created)


def test_sign_request_shape_matches(docs_client: Any, spec: dict[str, Any], services: Services, world: World,
                                    token: hsm.Hsm) -> None:
    sw = make_signing_world(services, world, token, "ec-p256")
    key = {"Authorization": f"Bearer {world.api_key}"}
    digest = hashlib.sha256(b"van ban").hexdigest()
    body = {"credential_id": sw.leader_credential, "documents": [
        {"name": "Băm", "format": "raw", "hash": digest},
        {"name": "Tệp", "format": "cades", "content": base64.b64encode(b"noi dung").decode()}]}
    created = docs_client.post("/v1/sign-requests", json=body, headers=key | {"Idempotency-Key": "k-1"})
    assert created.status_code == 202, created.json
    check_body(spec, "/v1/sign-requests", "post", created)
    replay = docs_client.post("/v1/sign-requests", json=body, headers=key | {"Idempotency-Key": "k-1"})
    assert replay.status_code == 200
    check_body(spec, "/v1/sign-requests", "post", replay)
    request_id = created.json["id"]
    check_body(spec, "/v1/sign-requests/{request_id}", "get",
               docs_client.get(f"/v1/sign-requests/{request_id}", headers=key))
    cancelled = docs_client.post(f"/v1/sign-requests/{request_id}/cancel", headers=key)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "CANCELLED"
    check_body(spec, "/v1/sign-requests/{request_id}/cancel", "post", cancelled)
    again = docs_client.post(f"/v1/sign-requests/{request_id}/cancel", headers=key)
    assert again.status_code == 409
    check_body(spec, "/v1/sign-requests/{request_id}/cancel", "post", again)
