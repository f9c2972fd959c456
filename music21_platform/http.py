"""uvicorn's HTTP protocol (httptools, or h11 where httptools is missing) with Nagle's algorithm off on every
connection: pass `--http music21_platform.http:NoDelayHTTPProtocol` to uvicorn.

With `--workers N`, uvicorn hands each worker a listening socket created without naming TCP as its protocol, and
asyncio turns TCP_NODELAY on only for connections whose socket names it: every response written in two parts then
waited for the client's delayed acknowledgement (about 40 ms on Linux). A single-process uvicorn does not need it,
and it does no harm there.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
