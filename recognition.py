"""One vendor connection (`Recognition`): one WebSocket, single use.

A `Recognition` is exactly one WebSocket: it opens, waits for
`transcript.created`, yields parsed events, sends what the session's driver
gives it, and ends, saying how (`close_info`; what that means is the session
core's ConnectionTracker's call). It is never reused: the next turn, or the next attempt
after a failure, is a new object with a new generation number.

What its events mean as results is utterances.py's (`ResultAssembler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .protocol import (
    AUDIO_DONE_MESSAGE,
    FINALIZE_MESSAGE,
    MAX_MESSAGE_BYTES,
    Failure,
    IgnoredFrame,
    ServerEvent,
    TranscriptCreated,
    VendorError,
    auth_headers,
    classify_handshake_rejection,
    handshake_timeout,
    parse_event,
    transport_failure,
    url_for_log,
    vendor_error_failure,
)
from .redaction import redact

# websockets >= 15 reads proxy settings from the environment unless told not to;
# older versions have no proxy support (and no such argument) at all.
_CONNECT_TAKES_PROXY = "proxy" in inspect.signature(connect.__init__).parameters
# How long a polite close may wait for the server's closing handshake before
# the TCP connection is dropped.
DEFAULT_CLOSE_TIMEOUT_S = 1.0


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger for one connection: its DEBUG lines include the request
    headers, so the key is masked in every argument before anything is logged."""

    def __init__(self, logger: logging.Logger, secret: str) -> None:
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self._secret:
            msg = self._mask(msg)
            args = tuple(self._mask(arg) for arg in args)
        super().log(level, msg, *args, **kwargs)

    def _mask(self, value: object) -> object:
        return redact(value, self._secret) if isinstance(value, str) else value


class ConnectFailed(Exception):
    """Opening a connection failed; `failure` says how, and whether retrying can help."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class SendFailed(Exception):
    """A frame could not be written: the connection is gone."""


class Recognition:
    """One WebSocket connection to the STT service. Single use."""

    def __init__(
        self,
        generation: int,
        url: str,
        api_key: str,
        *,
        connect_timeout_s: float,
        logger: logging.Logger | None = None,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.generation = generation
        self._max_message_bytes = max_message_bytes
        self._url = url
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._close_timeout_s = close_timeout_s
        self._log = logger or logging.getLogger("xai_asr_python.recognition")
        self._ws: ClientConnection | None = None
        self._opened = False  # open() was called: a Recognition is never reused
        self._ended = False  # it failed to open, or its socket is closed
        self._where = f"gen {generation} {url_for_log(url)}"
        self.vendor_session: str | None = None  # transcript.created's id

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._ended

    # ---------------------------------------------------------------- opening

    async def open(self) -> None:
        """Connect and wait for `transcript.created`, all within the connect timeout."""
        if self._opened:
            raise RuntimeError("a Recognition is single-use")
        self._opened = True
        try:
            await asyncio.wait_for(self._open(), self._connect_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            failure = handshake_timeout(self._connect_timeout_s, opened=self._ws is not None)
            self._fail_open(failure)
        except asyncio.CancelledError:
            self.abort()
            raise

    def _fail_open(self, failure: Failure) -> None:
        self.abort()
        self._ended = True
        raise ConnectFailed(failure)

    async def _open(self) -> None:
        kwargs: dict[str, object] = {}
        if _CONNECT_TAKES_PROXY:
            kwargs["proxy"] = None
        try:
            # A plain await (never `async for`): websockets' own reconnect loop stays off.
            self._ws = await connect(
                self._url,
                additional_headers=auth_headers(self._api_key),
                open_timeout=None,  # the caller's wait_for bounds the whole opening
                close_timeout=self._close_timeout_s,
                # No library keepalive: a ping waits behind the audio the server has not
                # read yet, so a fixed pong timeout kills healthy connections that have a
                # backlog. The session pings itself (probe), allowing for the backlog.
                ping_interval=None,
                compression=None,  # audio does not compress; spare the CPU
                max_queue=64,
                max_size=self._max_message_bytes,
                logger=_RedactingLogger(logging.getLogger("websockets.client"), self._api_key),
                **kwargs,  # type: ignore[arg-type]
            )
        except InvalidStatus as exc:
            response = exc.response
            self._fail_open(
                classify_handshake_rejection(
                    response.status_code,
                    {k: v for k, v in response.headers.raw_items()},
                    bytes(response.body or b""),
                    now_epoch_s=time.time(),
                )
            )
        except InvalidURI as exc:
            self._fail_open(
                Failure(kind="handshake_refused", message=f"invalid URL: {exc}", fatal=True)
            )
        except (InvalidHandshake, OSError, ConnectionClosed) as exc:
            self._fail_open(transport_failure(f"{type(exc).__name__}: {exc}"))
        self._log.debug("%s: WebSocket open, waiting for transcript.created", self._where)
        assert self._ws is not None
        while True:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                self._fail_open(
                    Failure(
                        kind="no_created",
                        message="the connection closed before transcript.created "
                        f"({code if code is not None else 'no close frame'})",
                        vendor_code=None if code is None else str(code),
                        vendor_message=(exc.rcvd.reason or None) if exc.rcvd else None,
                    )
                )
            event = self._parse(frame)
            if isinstance(event, TranscriptCreated):
                self.vendor_session = event.session_id
                return
            if isinstance(event, VendorError):
                self._fail_open(vendor_error_failure(event))
            if event is not None:
                self._log.warning(
                    "%s: %s before transcript.created; ignored", self._where, type(event).__name__
                )

    # ---------------------------------------------------------------- events

    def _parse(self, frame: str | bytes) -> ServerEvent | None:
        event = parse_event(frame)
        if isinstance(event, IgnoredFrame):
            self._log.warning(
                "%s: ignored a frame (%s): %s", self._where, event.reason, event.preview
            )
            return None
        defaulted = getattr(event, "defaulted", ())
        if defaulted:
            self._log.debug(
                "%s: %s without %s; defaults used",
                self._where,
                type(event).__name__,
                ", ".join(defaulted),
            )
        return event

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Parsed events until the socket closes; then `close_info` says how it closed."""
        assert self._ws is not None, "open() first"
        ws = self._ws
        try:
            while True:
                try:
                    frame = await ws.recv()
                except ConnectionClosed:
                    break
                event = self._parse(frame)
                if event is not None:
                    yield event
        finally:
            if ws.protocol.state.name == "CLOSED":
                self._ended = True

    def close_info(self) -> tuple[int | None, str | None, int | None, str | None]:
        """How the socket ended: (code, reason) of the close frame received, None if none
        came (a lost connection), and of the one this client sent when this client's
        library ended it itself (e.g. 1009), else None. For ConnectionTracker.closed."""
        self._ended = True
        protocol = self._ws.protocol if self._ws is not None else None
        rcvd = protocol.close_rcvd if protocol is not None else None
        sent = protocol.close_sent if protocol is not None else None
        if protocol is not None and protocol.close_rcvd_then_sent:
            sent = None  # our close only echoed the server's: the server ended it
        return (
            rcvd.code if rcvd is not None else None,
            rcvd.reason if rcvd is not None else None,
            sent.code if sent is not None else None,
            sent.reason if sent is not None else None,
        )

    # ---------------------------------------------------------------- sending

    async def send(self, message: str | bytes) -> None:
        """One message: a chunk of audio (bytes) or a control message (text)."""
        if self._ws is None or self._ended:
            raise SendFailed("not connected")
        try:
            await self._ws.send(message)
        except (ConnectionClosed, OSError) as exc:
            raise SendFailed(str(exc)) from exc

    # Every frame: the audio goes straight to `send` (one coroutine less per frame).
    send_audio = send

    async def send_audio_done(self) -> None:
        await self.send(AUDIO_DONE_MESSAGE)

    async def send_finalize(self) -> None:
        await self.send(FINALIZE_MESSAGE)

    async def probe(self, timeout_s: float) -> bool | None:
        """Prove the connection alive: a WebSocket ping. True when its pong came within
        `timeout_s`, False when it did not (the connection is dead), None when the
        connection closed meanwhile (its reader tells how)."""
        ws = self._ws
        if ws is None or self._ended:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            # ping() itself can block: it waits for the socket to drain, and a dead peer
            # reads nothing.
            pong = await asyncio.wait_for(ws.ping(), timeout_s)
            await asyncio.wait_for(pong, max(0.0, deadline - loop.time()))
        except (asyncio.TimeoutError, TimeoutError):
            return None if self._ended else False
        except (ConnectionClosed, OSError, RuntimeError):
            return None
        return True

    # ---------------------------------------------------------------- closing

    async def close(self, reason: str, *, timeout_s: float | None = None) -> None:
        """A planned close: a polite closing handshake, bounded, then the TCP drop."""
        if self._ws is None:
            return
        self._ws.close_timeout = self._close_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._ws.close(), (self._ws.close_timeout or 0) + 0.1)
        except (asyncio.TimeoutError, TimeoutError, OSError):
            self.abort()
        except asyncio.CancelledError:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the TCP connection at once (stop, failure): no waiting for the server."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                sock = self._ws.transport.get_extra_info("socket")
                if sock is not None:
                    # Linger 0: close() resets the connection. Otherwise the kernel
                    # keeps flushing unsent audio (and our FIN) to a peer that may
                    # not be reading, and the dead socket lingers in FIN_WAIT1.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(Exception):
                self._ws.transport.abort()

    async def wait_closed(self, timeout_s: float) -> bool:
        if self._ws is None:
            return True
        try:
            await asyncio.wait_for(self._ws.wait_closed(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        return True
