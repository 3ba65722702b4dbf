"""``WebhookReceiver``: one receiver core (``_core``) behind two thin adapters, the aiohttp
handler here and the ASGI app (``_asgi``); see the package docstring."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from aiohttp import web

from ._asgi import WebhookAsgiApp
from ._core import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONCURRENT,
    WebhookCallback,
    _ReceiverCore,
)
from ._events import (
    SIGNATURE_HEADER,
)
from ._support import DuplicateFilter

__all__ = ["WebhookReceiver", "make_asgi_app", "webhook_handler"]


class WebhookReceiver(_ReceiverCore):
    """Receives GetBill's webhooks: ``handler`` for aiohttp.web, ``asgi`` for ASGI servers.

    Answers 413 when the body is over ``max_body`` bytes, 401 when the signature is missing
    or wrong, 204 for a body the ``duplicates`` filter has seen handled. A correctly signed
    body is never answered 4xx: one that does not decode as a documented event reaches the
    callback as an ``UndecodedEvent`` (its raw parts and why), so no signed event is lost to
    a decoding rule. Otherwise, with ``acknowledge="before"`` (the default), 204 at once and
    the callback runs afterwards in a task the receiver keeps (its exceptions are logged on
    ``getbill_async.webhooks``); with ``"after"``, the callback runs first and the answer is
    204 when it returned within ``deadline`` seconds of the request's arrival, 500 when it
    raised, 503 when the deadline passed (it is then cancelled): a retrying sender sends the
    event again, and only a success is remembered as handled. A copy that arrives while the
    first is still running waits for its outcome instead of running the callback twice, up
    to its deadline (then 503); with ``DuplicateFilter(redis=...)``, across workers too.

    At most ``max_concurrent`` callbacks run at once; a request that finds no free slot
    within the deadline is answered 503 with ``Retry-After``. A plain (non-async) callback
    runs on the loop and cannot be interrupted: keep it quick, or use ``asyncio.to_thread``.
    ``await receiver.aclose()`` (or ``app.on_cleanup.append(receiver.on_cleanup)``, or
    ``lifespan=receiver.lifespan``) waits for the callbacks still running.

    Counters: ``received`` (signed bodies), ``rejected`` (4xx), ``repeated`` (duplicates
    answered without a callback), ``failed`` (callbacks that raised or passed the deadline),
    ``busy`` (503 for lack of a slot), ``undecoded`` (delivered as ``UndecodedEvent``),
    ``previous_secret`` (bodies signed with a secret other than the first: while it grows, an
    old secret is still in use), and ``pending`` (callbacks running now).

    Args:
        secret: the endpoint's webhook secret, from GetBill's settings (never logged), or
            several while it is rotated, the current one first: any one of them verifies.
        callback: called with each event, async or plain.
        max_body: the largest body accepted, in bytes (1 MiB).
        acknowledge: ``"before"`` (answer, then run the callback) or ``"after"``.
        deadline: seconds from a request's arrival to its answer (8; GetBill waits 10).
        max_concurrent: callbacks running at once (64).
        duplicates: a ``DuplicateFilter`` that runs the callback once per body, or None;
            in memory it is per process, in Redis (``redis=``) shared by every worker.

    Raises:
        TypeError: ``secret`` is neither a str nor a sequence of str.
        ValueError: an empty secret (or an empty one among several), or a setting out of
            its range (the message names it).
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        callback: WebhookCallback,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        acknowledge: Literal["before", "after"] = "before",
        deadline: float = DEFAULT_DEADLINE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        duplicates: DuplicateFilter | None = None,
    ) -> None:
        super().__init__(
            secret,
            callback,
            max_body=max_body,
            acknowledge=acknowledge,
            deadline=deadline,
            max_concurrent=max_concurrent,
            duplicates=duplicates,
        )
        self.asgi = WebhookAsgiApp(self)
        """The receiver as an ASGI 3 app: ``app.mount("/getbill/webhooks", receiver.asgi)``."""

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp.web handler: ``app.router.add_post(path, receiver.handler)``.

        Args:
            request: the POST; its body may already have been read by a middleware.

        Returns:
            The answer, already written.
        """
        body = await _read(request, self.max_body)
        reply = await self._receive(body, request.headers.get(SIGNATURE_HEADER, ""))
        response = web.Response(
            status=reply.status, body=reply.body or None, headers=dict(reply.headers)
        )
        try:
            await response.prepare(request)
            await response.write_eof()
        finally:
            reply.begin()
        return response

    async def on_cleanup(self, app: web.Application) -> None:
        """For ``app.on_cleanup``: wait for pending callbacks when the app shuts down.

        Args:
            app: the aiohttp application shutting down.
        """
        await self.aclose()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """The host app's lifespan: on the way out, wait for the callbacks still running.

        Starlette, FastAPI and Litestar send no lifespan events to a mounted app, so hook
        this into the host's: ``FastAPI(lifespan=receiver.lifespan)``,
        ``Starlette(lifespan=receiver.lifespan)``, ``Litestar(lifespan=[receiver.lifespan])``,
        or ``async with receiver.lifespan():`` inside a lifespan of your own.

        Args:
            app: the host application (unused; the frameworks pass it).

        Yields:
            Nothing; the app serves while the context is open.
        """
        try:
            yield
        finally:
            await self.aclose()


async def _read(request: web.Request, max_body: int) -> bytes | None:
    """The body, or None when it is over ``max_body`` (told or found while reading)."""
    length = request.content_length
    if length is not None and length > max_body:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
    if chunks or not request.body_exists:
        return b"".join(chunks)
    # The stream is spent: a middleware read the body, and aiohttp kept what read() got.
    body = await request.read()
    return None if len(body) > max_body else body


def make_asgi_app(receiver: WebhookReceiver) -> WebhookAsgiApp:
    """The receiver as an ASGI 3 application (the same object as ``receiver.asgi``).

    Args:
        receiver: the receiver that checks, decodes and dispatches the events.

    Returns:
        The ASGI app, to mount in FastAPI, Starlette or Litestar, or to serve on its own.

    Raises:
        TypeError: ``receiver`` is not a ``WebhookReceiver``.
    """
    if not isinstance(receiver, WebhookReceiver):
        raise TypeError(f"receiver must be a WebhookReceiver, got {type(receiver).__name__}")
    return receiver.asgi


def webhook_handler(
    secret: str | Sequence[str],
    callback: WebhookCallback,
    *,
    app: web.Application | None = None,
    **options: Any,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp.web handler that checks, decodes and acknowledges GetBill's webhooks.

    ``app.router.add_post("/webhooks", webhook_handler(secret, on_event, app=app))``.

    Args:
        secret: the endpoint's webhook secret, or several, the current one first.
        callback: called with each event.
        app: when given, its cleanup waits for the callbacks still running.
        **options: ``WebhookReceiver``'s (``max_body``, ``acknowledge``, ``deadline``,
            ``max_concurrent``, ``duplicates``); its docstring tells what the handler
            answers and how the callback runs.

    Returns:
        The receiver's ``handler``.
    """
    receiver = WebhookReceiver(secret, callback, **options)
    if app is not None:
        app.on_cleanup.append(receiver.on_cleanup)
    return receiver.handler
