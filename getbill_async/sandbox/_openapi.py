"""The sandbox's OpenAPI 3.0 description, written from the API docs and served at
``GET /openapi.json`` (no token, no rate-limit slot).

It states what the docs allow a client to send and what the sandbox answers, so a contract
tool can drive the sandbox from it: every operation, the documented enums, the success and
error envelopes, the rate-limit headers, and links between operations (a debt listed feeds a
create; a followup created feeds a read and an update) for stateful runs. Where the docs are
silent the sandbox's own choices are described: unknown body fields are refused, `page` has
at most 18 digits, an update may not name `debt_id`, and a datetime whose UTC instant falls
outside years 1..9999 is a 422.

Response objects allow keys beyond the documented ones (reads are forward compatible), and a
debt's status is an open set (companies add their own).
"""

from __future__ import annotations

from typing import Any

from ._data import DIRECTIONS, STATUSES, TYPES

__all__ = ["OPENAPI_PATH", "openapi_document"]

OPENAPI_PATH = "/openapi.json"

_REF = "#/components/schemas/"
_NULLABLE_TEXT = ("summary", "notes", "call_id", "audio_url", "phone_number_used")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _stamp() -> dict[str, Any]:
    return _nullable({"type": "string", "format": "date-time"})


def _body_fields() -> dict[str, Any]:
    """The updatable fields (api-docs README), as a create or an update sends them."""
    fields: dict[str, Any] = {
        "status": {"type": "string", "enum": list(STATUSES)},
        "type": {"type": "string", "enum": list(TYPES)},
        "call_date": _stamp(),
        "scheduled_at": _stamp(),
        "duration_ms": _nullable({"type": "integer", "minimum": 0}),
        "direction": _nullable({"type": "string", "enum": list(DIRECTIONS)}),
        "disconnection_reason": _nullable({"type": "string"}),
        "is_retry": {"type": "boolean"},
    }
    for name in _NULLABLE_TEXT:
        fields[name] = _nullable({"type": "string"})
    return fields


def _followup() -> dict[str, Any]:
    text = _nullable({"type": "string"})
    props: dict[str, Any] = {
        "id": {"type": "string"},
        "debt_id": {"type": "string"},
        "status": {"type": "string"},  # reads are open: a new status must not break them
        "type": {"type": "string"},
        "call_date": _stamp(),
        "scheduled_at": _stamp(),
        "pdf_url": text,
        "duration_ms": _nullable({"type": "integer"}),
        "disconnection_reason": text,
        "direction": text,
        "is_retry": {"type": "boolean"},
        "processed_at": _stamp(),
        "triggered_payment": {"type": "boolean"},
        "email_opened": {"type": "boolean"},
        "email_open_count": {"type": "integer"},
        "email_first_opened_at": _stamp(),
        "email_clicked": {"type": "boolean"},
        "email_click_count": {"type": "integer"},
        "media_urls_expire_at": _stamp(),
    }
    for name in _NULLABLE_TEXT:
        props[name] = text
    return {"type": "object", "required": ["id", "debt_id", "status", "type"], "properties": props}


def _debt() -> dict[str, Any]:
    props = {
        "id": {"type": "string"},
        "firstname": {"type": "string"},
        "lastname": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "status": {"type": "string"},
        "followups_count": {"type": "integer"},
    }
    return {"type": "object", "required": ["id"], "properties": props}


def _components() -> dict[str, Any]:
    pagination = {
        "type": "object",
        "required": ["total", "page", "limit", "pages"],
        "properties": {k: {"type": "integer"} for k in ("total", "page", "limit", "pages")},
    }
    details = {"type": "object", "additionalProperties": {"type": "array"}}
    schemas: dict[str, Any] = {
        "Followup": _followup(),
        "Debt": _debt(),
        "Pagination": pagination,
        "Error": {
            "type": "object",
            "required": ["error", "message", "code"],
            "properties": {
                "error": {"type": "boolean", "enum": [True]},
                "message": {"type": "string"},
                "code": {"type": "integer"},
                "details": details,
            },
        },
        "FollowupCreate": {
            "type": "object",
            "required": ["debt_id", "type"],
            "additionalProperties": False,
            "properties": {"debt_id": {"type": "string", "minLength": 1}, **_body_fields()},
        },
        "FollowupUpdate": {
            "type": "object",
            "additionalProperties": False,
            "properties": _body_fields(),
        },
    }
    for name, item in (("Followup", "Followup"), ("Debt", "Debt")):
        schemas[f"{name}List"] = _envelope({"type": "array", "items": _ref(item)}, paged=True)
        schemas[f"{name}Item"] = _envelope(_ref(item), paged=False)
    rate = {"schema": {"type": "integer"}}
    headers = {
        "X-RateLimit-Limit": rate,
        "X-RateLimit-Remaining": rate,
        "X-RateLimit-Reset": rate,
        "X-RateLimit-Window": rate,
    }
    return {
        "schemas": schemas,
        "headers": headers,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    }


def _envelope(data: dict[str, Any], *, paged: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"error": {"type": "boolean", "enum": [False]}, "data": data}
    if paged:
        props["pagination"] = _ref("Pagination")
    else:
        props["message"] = {"type": "string"}
    return {"type": "object", "required": ["error", "data"], "properties": props}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def _answers(ok: int, schema: str, *errors: int, links: Any = None) -> dict[str, Any]:
    limited = {k: {"$ref": "#/components/headers/" + k} for k in _components()["headers"]}
    success: dict[str, Any] = {"description": "Success", "content": _json(schema)}
    success["headers"] = limited
    if links:
        success["links"] = links
    answers: dict[str, Any] = {str(ok): success}
    for code in (401, 403, 429, *errors):
        answers[str(code)] = {"description": "Error", "content": _json("Error")}
    return answers


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_PAGE = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
]
_ONE_FOLLOWUP = {"id": "$response.body#/data/id"}
_LISTED = {
    "GetListed": {"operationId": "getFollowup", "parameters": {"id": "$response.body#/data/0/id"}}
}


def _followup_links() -> dict[str, Any]:
    return {
        "GetCreated": {"operationId": "getFollowup", "parameters": _ONE_FOLLOWUP},
        "UpdateCreated": {"operationId": "updateFollowup", "parameters": _ONE_FOLLOWUP},
        "ListOfDebt": {
            "operationId": "listFollowupsOfDebt",
            "parameters": {"debt_id": "$response.body#/data/debt_id"},
        },
    }


def _debt_links() -> dict[str, Any]:
    first = "$response.body#/data/0/id"
    return {
        "GetDebt": {"operationId": "getDebt", "parameters": {"id": first}},
        "FollowupsOfDebt": {"operationId": "listFollowupsOfDebt", "parameters": {"debt_id": first}},
        "CreateForDebt": {"operationId": "createFollowup", "requestBody": {"debt_id": first}},
    }


def _followup_paths() -> dict[str, Any]:
    listing = [
        *_PAGE,
        _query("status", {"type": "string", "enum": list(STATUSES)}),
        _query("type", {"type": "string", "enum": list(TYPES)}),
        _query("date_from", {"type": "string", "format": "date"}),
        _query("date_to", {"type": "string", "format": "date"}),
        _query("debt_id", {"type": "string"}),
    ]
    return {
        "/followups": {
            "get": {
                "operationId": "listFollowups",
                "parameters": listing,
                "responses": _answers(200, "FollowupList", 400, links=_LISTED),
            },
            "post": {
                "operationId": "createFollowup",
                "requestBody": {"required": True, "content": _json("FollowupCreate")},
                "responses": _answers(201, "FollowupItem", 400, 422, links=_followup_links()),
            },
        },
        "/followups/debt/{debt_id}": {
            "get": {
                "operationId": "listFollowupsOfDebt",
                "parameters": [_path("debt_id"), *_PAGE],
                "responses": _answers(200, "FollowupList", 400, 404, links=_LISTED),
            }
        },
        "/followups/{id}": {
            "get": {
                "operationId": "getFollowup",
                "parameters": [_path("id")],
                "responses": _answers(200, "FollowupItem", 404),
            },
            "put": {
                "operationId": "updateFollowup",
                "parameters": [_path("id")],
                "requestBody": {"required": True, "content": _json("FollowupUpdate")},
                "responses": _answers(200, "FollowupItem", 400, 404, 422),
            },
        },
    }


def _debt_paths() -> dict[str, Any]:
    return {
        "/debts": {
            "get": {
                "operationId": "listDebts",
                "parameters": [*_PAGE, _query("status", {"type": "string"})],
                "responses": _answers(200, "DebtList", 400, links=_debt_links()),
            }
        },
        "/debts/{id}": {
            "get": {
                "operationId": "getDebt",
                "parameters": [_path("id")],
                "responses": _answers(200, "DebtItem", 404),
            }
        },
    }


def openapi_document(server: str = "/external-api/v1") -> dict[str, Any]:
    """The description as a JSON-ready dict; `server` is the API's base URL (or path)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "GetBill external API (sandbox)",
            "version": "1",
            "description": "The followups and debts the sandbox serves, from the public docs.",
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": {**_followup_paths(), **_debt_paths()},
        "components": _components(),
    }
