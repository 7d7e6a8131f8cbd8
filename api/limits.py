"""The request body size limit, on the declared length and on the bytes that arrive."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``.

    A ``Content-Length`` over the limit is refused before the body is read; a body
    without one (chunked) is counted as it arrives, and the read that crosses the limit
    raises a 413 ``HTTPException`` inside the route, where the error handlers turn it
    into the JSON error body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await JSONResponse({"error": "invalid Content-Length"}, 400)(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._text())
            return message

        await self.app(scope, limited, send)

    def _text(self) -> str:
        return f"request body over {self.max_bytes:,} bytes"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"error": self._text(), "max_body_bytes": self.max_bytes}
        await JSONResponse(body, 413, headers={"Connection": "close"})(scope, receive, send)
