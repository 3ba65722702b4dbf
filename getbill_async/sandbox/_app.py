"""Routes and the one request pipeline every API call goes through.

Pipeline, in order (choices where the docs are silent):
1. number the request (from 1; /token is not numbered) and draw its fault;
2. wait the configured latency;
3. authenticate (401) and check the scope (403): neither takes a rate-limit slot;
4. a running "storm429" answers 429 without taking a slot;
5. the client's sliding window admits the request or answers 429 (no slot taken, and a fault
   drawn for that request is dropped);
6. an admitted request counts in the window whatever happens next, faults included, as on a
   real server the request did arrive;
7. the fault, if any, before or after the handler acts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ._auth import bearer_grant, token_handler
from ._data import STATUSES, TYPES
from ._ratelimit import SlidingWindow
from ._state import State
from ._store import FollowupFilter
from ._validate import Details, parse_body_fields, parse_day, parse_page

__all__ = ["API_PREFIX", "build_app", "followup_filter"]

API_PREFIX = "/external-api/v1"
Answer = tuple[int, Any]
ApiHandler = Callable[[web.Request, State], Awaitable[Answer]]

_AUTH_MESSAGE = "Authentication credentials are missing or invalid"
_REASONS = {
    400: "Validation failed",
    404: "Not found",
    405: "Method not allowed",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_STORM_RETRY_AFTER = 0.05
_PROXY_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>\n"
    b"</body></html>\n"
)


def error(status: int, message: str, details: Details | None = None) -> Answer:
    body: dict[str, Any] = {"error": True, "message": message, "code": status}
    if details:
        body["details"] = details
    return status, body


def _respond(
    state: State, status: int, payload: Any, headers: dict[str, str] | None = None
) -> web.Response:
    state.stats.by_status[status] = state.stats.by_status.get(status, 0) + 1
    return web.Response(
        status=status,
        body=msgspec.json.encode(payload),
        content_type="application/json",
        headers=headers,
    )


def _drop(request: web.Request) -> web.Response:
    """Close the connection with no answer; aiohttp quietly skips writing the response."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


async def _pause(state: State, request: web.Request, seconds: float) -> None:
    # Short naps so a client that gave up, or a sandbox that stops, ends the wait early.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not state.stopping and loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(min(0.05, deadline - loop.time()))


def _rate_limited(window: SlidingWindow, retry_after: float) -> dict[str, Any]:
    return {
        "error": True,
        "message": "Rate limit exceeded. Please try again later.",
        "code": 429,
        "details": {
            "retry_after": retry_after,
            "limit": window.limit,
            "reset_time": window.reset_time(retry_after),
        },
    }


def _count_fault(state: State, kind: str) -> None:
    faults = state.stats.faults_injected
    faults[kind] = faults.get(kind, 0) + 1


async def _faulted(
    state: State,
    request: web.Request,
    handler: ApiHandler,
    window: SlidingWindow,
    kind: str,
    cls: str,
) -> web.StreamResponse:
    """Answer an admitted request that drew fault `kind` (see _faults for the kinds)."""
    if kind in ("500", "502", "503", "504") or (kind == "commit_500" and cls == "read"):
        code = 500 if kind == "commit_500" else int(kind)
        return _respond(state, *error(code, _REASONS[code]), window.headers())
    if kind == "reset_before":
        return _drop(request)
    status, payload = await handler(request, state)
    headers = window.headers()
    if kind == "reset_after":
        return _drop(request)
    if kind == "commit_500":
        return _respond(state, *error(500, _REASONS[500]), headers)
    if kind == "slow":
        await _pause(state, request, state.faults.plan.slow_seconds if state.faults else 0.0)
        return _respond(state, status, payload, headers)
    state.stats.by_status[status] = state.stats.by_status.get(status, 0) + 1
    if kind == "truncated":
        encoded = msgspec.json.encode(payload)
        return web.Response(
            status=status,
            body=encoded[: len(encoded) // 2],
            content_type="application/json",
            headers=headers,
        )
    # "non_json": a proxy in front of the API answered with its own HTML page.
    return web.Response(status=status, body=_PROXY_PAGE, content_type="text/html", headers=headers)


def endpoint(state: State, scope: str, cls: str, handler: ApiHandler) -> Handler:
    """Wrap a handler in the pipeline described in the module docstring."""

    async def serve(request: web.Request) -> web.StreamResponse:
        stats = state.stats
        stats.requests += 1
        stats.by_class[cls] = stats.by_class.get(cls, 0) + 1
        state.seen.append((request.method, request.path_qs))
        kind = state.faults.draw(stats.requests) if state.faults is not None else None
        if request.can_read_body:
            # Like a real server: the whole request is in before it is acted on, and a client
            # that hangs up afterwards (a timeout, a kill) does not undo the write.
            await request.read()
        if state.latency > 0:
            await asyncio.sleep(state.latency)
        grant = bearer_grant(state, request)
        if grant is None:
            return _respond(state, *error(401, _AUTH_MESSAGE))
        window = state.limiter.window(grant.client, cls)
        if scope not in grant.scopes:
            message = f'Required scope "{scope}" not found in token'
            return _respond(state, *error(403, message), window.headers())
        if state.faults is not None and state.faults.storm(cls, kind):
            _count_fault(state, "storm429")
            body = _rate_limited(window, _STORM_RETRY_AFTER)
            return _respond(state, 429, body, window.headers())
        if not window.admit():
            stats.rate_limited += 1
            body = _rate_limited(window, window.retry_after())
            return _respond(state, 429, body, window.headers())
        if kind is None:
            status, payload = await handler(request, state)
            return _respond(state, status, payload, window.headers())
        _count_fault(state, kind)
        return await _faulted(state, request, handler, window, kind, cls)

    return serve


def _pagination(total: int, page: int, limit: int) -> dict[str, int]:
    return {"total": total, "page": page, "limit": limit, "pages": -(-total // limit)}


def followup_filter(state: State, query: Mapping[str, str], details: Details) -> FollowupFilter:
    values: dict[str, int | None] = {}
    for name, allowed in (("status", STATUSES), ("type", TYPES)):
        text = query.get(name)
        if text is None:
            values[name] = None
        elif text in allowed:
            values[name] = allowed.index(text)
        else:
            details[name] = ["Must be one of: " + ", ".join(allowed)]
    for name in ("date_from", "date_to"):
        text = query.get(name)
        values[name] = None if text is None else parse_day(text)
        if text is not None and values[name] is None:
            details[name] = ["Must be a date in YYYY-MM-DD format"]
    low, high = values["date_from"], values["date_to"]
    if low is not None and high is not None and low > high:
        details["date_to"] = ["Must be on or after date_from"]
    debt_id = query.get("debt_id")
    return FollowupFilter(
        status=values.get("status"),
        type=values.get("type"),
        day_from=low,
        day_to=high,
        debt=None if debt_id is None else state.store.debt_filter_row(debt_id),
    )


def _page(state: State, request: web.Request, details: Details) -> tuple[int, int]:
    parsed = parse_page(request.query, state.max_page_limit)
    if isinstance(parsed, dict):
        details.update(parsed)
        return 1, 1
    return parsed


def _followup_list(state: State, flt: FollowupFilter, page: int, limit: int) -> Answer:
    store = state.store
    rows, total = store.list_rows(flt, page, limit)
    data = [store.record_json(row) for row in rows]
    return 200, {"error": False, "data": data, "pagination": _pagination(total, page, limit)}


async def list_followups(request: web.Request, state: State) -> Answer:
    details: Details = {}
    page, limit = _page(state, request, details)
    flt = followup_filter(state, request.query, details)
    if details:
        return error(400, "Validation failed", details)
    return _followup_list(state, flt, page, limit)


async def followups_of_debt(request: web.Request, state: State) -> Answer:
    details: Details = {}
    page, limit = _page(state, request, details)
    debt = state.store.debt_row(request.match_info["debt_id"])
    if debt is None:
        return error(404, "Debt not found")
    if details:
        return error(400, "Validation failed", details)
    return _followup_list(state, FollowupFilter(debt=debt), page, limit)


async def get_followup(request: web.Request, state: State) -> Answer:
    row = state.store.followup_row(request.match_info["id"])
    if row is None:
        return error(404, "Followup not found")
    return 200, {"error": False, "message": "Success", "data": state.store.record(row)}


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        return msgspec.UNSET
    try:
        return msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        return msgspec.UNSET


async def create_followup(request: web.Request, state: State) -> Answer:
    body = await _json_body(request)
    if body is msgspec.UNSET:
        details = {"body": ["Must be a JSON object sent as application/json"]}
        return error(400, "Validation failed", details)
    fields, details = parse_body_fields(body, create=True)
    if details:
        return error(400, "Validation failed", details)
    debt = state.store.debt_row(fields["debt_id"])
    if debt is None:
        message = "Must be a valid encrypted debt ID that belongs to your company"
        return error(422, "Validation failed", {"debt_id": [message]})
    record = state.store.create(fields, debt)
    state.emit("followup.created", record, None)
    answer = {k: v for k, v in record.items() if k != "media_urls_expire_at"}
    return 201, {"error": False, "message": "Followup created successfully", "data": answer}


async def update_followup(request: web.Request, state: State) -> Answer:
    row = state.store.followup_row(request.match_info["id"])
    if row is None:
        return error(404, "Followup not found")
    body = await _json_body(request)
    if body is msgspec.UNSET:
        details = {"body": ["Must be a JSON object sent as application/json"]}
        return error(400, "Validation failed", details)
    fields, details = parse_body_fields(body, create=False)
    if details:
        return error(400, "Validation failed", details)
    record = state.store.update(row, fields)
    state.emit("followup.updated", record, fields)
    return 200, {"error": False, "message": "Followup updated successfully", "data": record}


async def list_debts(request: web.Request, state: State) -> Answer:
    details: Details = {}
    page, limit = _page(state, request, details)
    if details:
        return error(400, "Validation failed", details)
    rows, total = state.store.debt_rows(request.query.get("status"), page, limit)
    data = [state.store.debt(row) for row in rows]
    return 200, {"error": False, "data": data, "pagination": _pagination(total, page, limit)}


async def get_debt(request: web.Request, state: State) -> Answer:
    row = state.store.debt_row(request.match_info["id"])
    if row is None:
        return error(404, "Debt not found")
    return 200, {"error": False, "message": "Success", "data": state.store.debt(row)}


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answer the error envelope too, not aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status not in (404, 405):
            raise
        status, body = error(exc.status, _REASONS[exc.status])
        response = web.Response(
            status=status, body=msgspec.json.encode(body), content_type="application/json"
        )
        if "Allow" in exc.headers:
            # RFC 9110 15.5.6: a 405 lists the methods the resource does allow.
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def build_app(state: State) -> web.Application:
    app = web.Application(middlewares=[_json_errors])
    p = API_PREFIX
    read, write, debts = "followups:read", "followups:write", "debts:read"
    app.router.add_post("/token", token_handler(state))
    routes = (
        ("GET", "/followups", read, "read", list_followups),
        ("POST", "/followups", write, "write", create_followup),
        ("GET", "/followups/debt/{debt_id}", read, "read", followups_of_debt),
        ("GET", "/followups/{id}", read, "read", get_followup),
        ("PUT", "/followups/{id}", write, "write", update_followup),
        ("GET", "/debts", debts, "read", list_debts),
        ("GET", "/debts/{id}", debts, "read", get_debt),
    )
    for method, path, scope, cls, handler in routes:
        app.router.add_route(method, p + path, endpoint(state, scope, cls, handler))
    return app
