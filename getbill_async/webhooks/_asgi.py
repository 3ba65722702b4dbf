"""The webhook receiver as a plain ASGI 3 application, written against the ASGI spec alone.

No Starlette, FastAPI or server import: ``import getbill_async`` works without them. The app
answers a POST at any path under where it is mounted (the mount point is the endpoint), 405
with ``Allow: POST`` to other methods, and closes a websocket before accepting it. A
``lifespan`` scope (an app served on its own: ``uvicorn module:receiver.asgi``) completes its
startup at once, and its shutdown waits for the callbacks still running, as aiohttp's
``on_cleanup`` does. A mounted app gets no lifespan events from Starlette, FastAPI or Litestar:
hook ``WebhookReceiver.lifespan`` into the host app's lifespan instead.

Public through ``getbill_async.webhooks``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._core import _Reply
from ._events import SIGNATURE_HEADER

if TYPE_CHECKING:
    from ._core import _ReceiverCore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SIGNATURE = SIGNATURE_HEADER.lower().encode("latin-1")
_METHOD_NOT_ALLOWED = _Reply(405, "method not allowed, webhooks are POSTed")


class _HungUp(Exception):
    """The sender disconnected while its body was being read."""


class WebhookAsgiApp:
    """A ``WebhookReceiver`` served as an ASGI 3 application: ``receiver.asgi``.

    Mount it where GetBill POSTs (``app.mount("/getbill/webhooks", receiver.asgi)`` in
    FastAPI or Starlette), or serve it on its own. It answers exactly as
    ``WebhookReceiver.handler`` does: the same checks, statuses and callbacks, from the
    same receiver (its counters and duplicate filter are shared by both).

    Args:
        receiver: the ``WebhookReceiver`` that checks, decodes and dispatches.
    """

    __slots__ = ("receiver",)

    def __init__(self, receiver: _ReceiverCore) -> None:
        self.receiver = receiver

    def __repr__(self) -> str:
        return f"<WebhookAsgiApp of {self.receiver!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``, ``lifespan`` or ``websocket``).

        Args:
            scope: the connection's scope.
            receive: the server's receive channel.
            send: the server's send channel.

        Raises:
            ValueError: the scope's type is not one of the three the ASGI spec defines.
        """
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(
                f"ASGI scope type must be 'http', 'lifespan' or 'websocket', got {kind!r}"
            )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await _answer(send, _METHOD_NOT_ALLOWED, [("Allow", "POST")])
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(bytes(name).lower(), bytes(value))
        try:
            body = await self._read(headers, receive)
        except _HungUp:
            return  # the sender left before the body was whole: nobody to answer
        signature = headers.get(_SIGNATURE, b"").decode("latin-1")
        reply = await self.receiver._receive(body, signature)
        try:
            await _answer(send, reply)
        finally:
            reply.begin()

    async def _read(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        """The body, or None when it is over ``max_body`` (told or found while reading)."""
        cap = self.receiver.max_body
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > cap:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _HungUp
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.receiver.aclose()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Send, reply: _Reply, extra: list[tuple[str, str]] | None = None) -> None:
    body = reply.body
    headers = [*reply.headers, *(extra or [])]
    if reply.status != 204:  # RFC 9110: a 204 has no Content-Length
        headers.append(("Content-Length", str(len(body))))
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
