"""Every error the HTTP API answers has one shape, ``{code, message, details}``, and is documented.

Without this, a body that is not JSON, an unknown route, a wrong method or a framework-level parse failure
would answer FastAPI's ``{"detail": ...}``, which neither the SDK (it rebuilds errors from ``code``) nor the
OpenAPI document knows. :func:`install_error_handlers` maps:

=====================================  ======  ==========================================================
raised                                 status  code
=====================================  ======  ==========================================================
:class:`updraft.errors.UpdraftError`   its     its own (``invalid``, ``not_found``, ``forbidden``, …)
``RequestValidationError``             422     ``invalid``; ``details.field`` names the first bad field
body that is not UTF-8 JSON            422     ``invalid`` (field ``body``)
unknown route / wrong method           404/405 ``not_found`` / ``method_not_allowed``
any other ``HTTPException``            its     ``http_<status>``
anything else                          500     ``internal`` — logged with its traceback, never echoed
=====================================  ======  ==========================================================

Strings that came from the request (a field path can hold a dict key) are scrubbed of lone surrogates and
shortened before they are echoed, so an error about a hostile body can always itself be encoded.

:func:`error_responses` gives a route's ``responses=`` for the statuses it documents, all with
:class:`ErrorBody`, so ``/openapi.json`` tells clients and schemathesis what each route can answer;
:func:`document_statuses` infers the usual ones for every route at once (401/403, 404, 413, 422, 429).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from updraft.errors import UpdraftError

log = logging.getLogger("updraft.http")

MAX_ECHO = 200
"""Characters of request-derived text an error message may repeat."""


class ErrorBody(BaseModel):
    """The body of every error response."""

    code: str = Field(description="stable machine-readable code; the SDK rebuilds the exception class from it")
    message: str = Field(description="for people; never parse it")
    details: dict[str, Any] = Field(default_factory=dict, description="e.g. field, errors, retry_after")


STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request",
    401: "No credential, or not a valid one (code unauthorized)",
    403: "The credential's role may not do this (code forbidden)",
    404: "No such task, node or route (code not_found)",
    405: "Method not allowed (code method_not_allowed)",
    409: "Conflict: a stale fencing token, an illegal transition, or a reused key (code conflict, stale_token)",
    413: "Body larger than the server's limit (code too_large)",
    422: "Invalid input; details.field names the first bad field (code invalid, image)",
    429: "Busy: retry after details.retry_after seconds (code busy)",
    503: "A dependency (store, registry) is not answering (code unavailable)",
}

_HTTP_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 429: "busy"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with :class:`ErrorBody`.

    ``@r.get("/tasks/{task_id}", responses=error_responses(401, 403, 404, 422))``. A 422 given here replaces
    FastAPI's default ``HTTPValidationError``, which this API never sends.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": STATUS_DESCRIPTIONS.get(status, f"HTTP {status}")}
    return out


def scrub(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` safe to echo: lone surrogates replaced, at most ``limit`` characters."""
    clean = text.encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[:limit] + "…"


def _scrub_tree(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value, limit=4 * MAX_ECHO)
    if isinstance(value, dict):
        return {scrub(str(k)): _scrub_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_tree(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN: rendering one would turn this error into a 500
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return scrub(".".join(parts)) or "body"


def validation_payload(exc: RequestValidationError) -> dict[str, Any]:
    """FastAPI's validation errors as ``{code: invalid, message: "field: why", details: {field, errors}}``."""
    errors = []
    for err in exc.errors():
        field = _field(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "json_invalid":
            field, msg = "body", "malformed JSON"
        elif kind == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = scrub(str(err.get("msg", "invalid")).removeprefix("Value error, "))
        errors.append({"field": field, "message": msg})
        if len(errors) >= 50:
            break
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    return {
        "code": "invalid",
        "message": f"{first['field']}: {first['message']}",
        "details": {"field": first["field"], "errors": errors},
    }


def error_response(err: UpdraftError, headers: dict[str, str] | None = None) -> JSONResponse:
    payload = {"code": err.code, "message": scrub(err.message, limit=4 * MAX_ECHO), "details": _scrub_tree(err.details)}
    retry_after = err.details.get("retry_after")
    if err.status in (429, 503) and isinstance(retry_after, int | float) and retry_after >= 0:
        headers = {**(headers or {}), "Retry-After": str(max(1, round(retry_after)))}
    return JSONResponse(payload, status_code=err.status, headers=headers)


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe FastAPI's default 422 with :class:`ErrorBody`, the body actually sent.

    Routes still list their other statuses themselves with :func:`error_responses`.
    """
    build = app.openapi
    ref = {"$ref": "#/components/schemas/ErrorBody"}

    def openapi() -> dict[str, Any]:
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorBody" not in schemas:
            schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for resp in operation.get("responses", {}).values():
                    content = resp.get("content", {}).get("application/json", {})
                    if content.get("schema") == {"$ref": "#/components/schemas/HTTPValidationError"}:
                        content["schema"] = ref
                        resp["description"] = STATUS_DESCRIPTIONS[422]
        if "HTTPValidationError" not in str(schema.get("paths")):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_statuses(
    app: FastAPI,
    extra: Mapping[str, Iterable[int]] | None = None,
    *,
    auth_prefix: str | None = "/v1",
    busy: Callable[[str, str], bool] | None = None,
) -> None:
    """Document, in ``app.openapi()``, the error statuses every operation can answer, inferred from its shape:

    * 401 and 403 under ``auth_prefix`` (authentication and roles; None when auth is off);
    * 404 when the path has parameters (an unknown task, node, attempt or token);
    * 413 and 422 when it takes a body (too large, invalid), 422 when it takes any parameter;
    * 429 when ``busy(method, path)`` says admission may refuse it (``lambda m, p: Admission.kind(m, p) is not
      None``);
    * what ``extra`` adds, keyed ``"METHOD /path"`` as in the OpenAPI: ``{"POST /v1/tasks": [409]}``.

    A status a route already documents is kept as it is. Call once, after every router is included.
    """
    build = app.openapi
    more = {key.upper().split(" ", 1)[0] + " " + key.split(" ", 1)[1]: set(v) for key, v in (extra or {}).items()}

    def openapi() -> dict[str, Any]:
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                statuses = set(more.get(f"{method.upper()} {path}", ()))
                params = operation.get("parameters", [])
                if auth_prefix is not None and path.startswith(auth_prefix):
                    statuses |= {401, 403}
                if any(p.get("in") == "path" for p in params):
                    statuses.add(404)
                if "requestBody" in operation:
                    statuses |= {413, 422}
                if params:
                    statuses.add(422)
                if busy is not None and busy(method.upper(), path):
                    statuses.add(429)
                responses = operation["responses"]
                for status in sorted(statuses):
                    responses.setdefault(str(status), {
                        "description": STATUS_DESCRIPTIONS.get(status, f"HTTP {status}"),
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                    })
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app`` and :func:`document_errors` (call once, after creating it)."""
    document_errors(app)

    @app.exception_handler(UpdraftError)
    async def _updraft(request: Request, exc: UpdraftError) -> JSONResponse:
        if exc.status >= 500 and type(exc) is UpdraftError:
            log.error("internal error on %s %s: %s", request.method, request.url.path, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_payload(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 400:  # FastAPI's "error parsing the body": a body that is not UTF-8 JSON
            payload = {"code": "invalid", "message": "body: malformed JSON", "details": {"field": "body"}}
            return JSONResponse(payload, status_code=422, headers=headers)
        if status == 404:
            message = f"no route {request.method} {scrub(request.url.path)}"
        elif status == 405:
            message = f"method {request.method} not allowed on {scrub(request.url.path)}"
        else:
            message = scrub(str(exc.detail)) if exc.detail else f"HTTP {status}"
        code = _HTTP_CODES.get(status, f"http_{status}")
        return JSONResponse({"code": code, "message": message, "details": {}}, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, scrub(request.url.path))
        payload = {"code": "internal", "message": "internal server error (see the server log)", "details": {}}
        return JSONResponse(payload, status_code=500)
