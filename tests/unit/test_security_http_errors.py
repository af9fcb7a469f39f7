"""Every error answers ``{code, message, details}`` and the OpenAPI documents it (control/http_errors.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from updraft.control.http_errors import ErrorBody, error_responses, install_error_handlers, scrub
from updraft.errors import Busy, Forbidden, NotFound, UpdraftError, from_payload


class Body(BaseModel):
    n: int
    labels: dict[str, str] = {}


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things", responses=error_responses(401, 403, 422))
    def create(body: Body) -> dict[str, Any]:
        return {"n": body.n}

    @app.get("/things/{name}", responses=error_responses(404))
    def get(name: str) -> dict[str, Any]:
        if name == "forbidden":
            raise Forbidden("a submitter token cannot do this", action="node-admin")
        if name == "busy":
            raise Busy("admission full", retry_after=2.4)
        if name == "crash":
            raise RuntimeError("secret internals")
        raise NotFound(f"no node {name}", node=name, nan=float("nan"))

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def shape(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"code", "message", "details"}, body
    ErrorBody.model_validate(body)
    return body


def test_validation_error_names_the_field(client: TestClient) -> None:
    resp = client.post("/things", json={"n": "x"})
    assert resp.status_code == 422
    body = shape(resp)
    assert body["code"] == "invalid" and body["details"]["field"] == "n" and body["message"].startswith("n: ")


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"n": 1', b"\xff\xfe\x00", b'"\\ud800"', b"[" * 5000]
)
def test_a_body_that_is_not_json_is_422_invalid(client: TestClient, raw: bytes) -> None:
    resp = client.post("/things", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert shape(resp)["code"] == "invalid"


def test_a_lone_surrogate_key_is_echoed_safely(client: TestClient) -> None:
    raw = b'{"n": "x", "labels": {"\\udfff": 1}}'
    resp = client.post("/things", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert shape(resp)["details"]["errors"]


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404 and shape(resp)["code"] == "not_found"
    resp = client.delete("/things")
    assert resp.status_code == 405 and shape(resp)["code"] == "method_not_allowed"
    assert "POST" in resp.headers["allow"]


def test_updraft_errors_keep_their_code_and_class(client: TestClient) -> None:
    resp = client.get("/things/forbidden")
    assert resp.status_code == 403
    err = from_payload(shape(resp))
    assert isinstance(err, Forbidden) and err.details == {"action": "node-admin"}
    resp = client.get("/things/edge-9")
    assert resp.status_code == 404 and shape(resp)["details"]["nan"] == "nan"
    resp = client.get("/things/busy")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "2"


def test_an_unexpected_exception_is_a_plain_500_without_internals(client: TestClient) -> None:
    resp = client.get("/things/crash")
    assert resp.status_code == 500
    body = shape(resp)
    assert body["code"] == "internal" and "secret" not in resp.text


def test_openapi_documents_the_error_statuses_with_the_error_schema() -> None:
    doc = make_app().openapi()
    post = doc["paths"]["/things"]["post"]["responses"]
    assert set(post) == {"200", "401", "403", "422"}
    for status in ("401", "403", "422"):
        assert post[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in str(post)
    get = doc["paths"]["/things/{name}"]["get"]["responses"]
    assert set(get) == {"200", "404", "422"}  # FastAPI's default 422, re-described with the body really sent
    assert get["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in str(doc) and "ErrorBody" in doc["components"]["schemas"]


def test_scrub() -> None:
    assert scrub("a\ud800b") == "a?b"
    assert scrub("x" * 500, limit=10) == "x" * 10 + "…"
    assert isinstance(UpdraftError("m").to_payload()["details"], dict)


def test_document_statuses_infers_each_routes_error_statuses() -> None:
    from updraft.control.http_errors import document_statuses

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/tasks", status_code=201)
    def submit(body: Body) -> dict[str, Any]:
        return {}

    @app.get("/v1/tasks/{task_id}")
    def get(task_id: str) -> dict[str, Any]:
        return {}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {}

    document_statuses(app, {"post /v1/tasks": [409]}, busy=lambda method, path: path == "/v1/tasks")
    paths = app.openapi()["paths"]
    assert set(paths["/v1/tasks"]["post"]["responses"]) == {"201", "401", "403", "409", "413", "422", "429"}
    assert set(paths["/v1/tasks/{task_id}"]["get"]["responses"]) == {"200", "401", "403", "404", "422"}
    assert set(paths["/health"]["get"]["responses"]) == {"200"}
    err = paths["/v1/tasks"]["post"]["responses"]["409"]["content"]["application/json"]["schema"]
    assert err == {"$ref": "#/components/schemas/ErrorBody"}
    assert app.openapi() is app.openapi()  # generated once
