"""The seam where the speech vendor lives: what the session needs from "a vendor".

The session core (session_core.py) and its driver (session.py) know vendors
only through `Vendor`. Its pure half answers the core's questions about one
connection's traffic; its I/O half opens a `VendorConnection` for the driver:

- how a connection is opened: `connection()` (URL, headers, handshake, the
  vendor's ready event: all inside `VendorConnection.open`);
- what a result is and what ends a turn: the event model of protocol.py
  (`TranscriptPartial`, `TranscriptDone`, `VendorError`), which a vendor's
  connection yields, and `tracker()` (how many done events end a turn);
- what acknowledges audio: `acknowledged_until_s()` (a final result: the audio
  up to its end is transcribed for good);
- which closes are planned and which errors are fatal: the tracker's
  `closed()` verdict, and `Failure.fatal` on what `open` raises.

xAI is the one implementation (`XAI`). A second vendor would be an adapter
that maps its messages to these events and its closes to these verdicts, not a
fork of the session.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from .protocol import ConnectionTracker, ServerEvent, TranscriptPartial
from .recognition import Recognition
from .session_types import SessionSettings
from .utterances import ResultAssembler


class VendorConnection(Protocol):
    """One socket to the vendor, single use (recognition.Recognition for xAI)."""

    generation: int

    async def open(self) -> None:
        """Connect and wait for the vendor's ready event; raises ConnectFailed."""

    def events(self) -> AsyncIterator[ServerEvent]:
        """Parsed events until the socket closes."""
        ...

    def close_info(self) -> tuple[int | None, str | None, int | None, str | None]:
        """(code received, reason received, code sent, reason sent) once it is closed."""
        ...

    async def send_audio(self, chunk: bytes) -> None:
        """Raises SendFailed when the socket is gone."""

    async def send_audio_done(self) -> None:
        """The end of the turn's audio; raises SendFailed."""

    async def send_finalize(self) -> None:
        """End the current utterance now, keeping the connection; raises SendFailed."""

    async def probe(self, timeout_s: float) -> bool | None: ...

    async def close(self, reason: str, *, timeout_s: float | None = None) -> None: ...

    def abort(self) -> None: ...

    async def wait_closed(self, timeout_s: float) -> bool: ...


class Vendor(Protocol):
    name: str

    def connection(
        self,
        generation: int,
        settings: SessionSettings,
        connect_timeout_s: float,
        logger: logging.Logger,
    ) -> VendorConnection: ...

    def tracker(self, settings: SessionSettings) -> ConnectionTracker: ...

    def assembler(self, settings: SessionSettings) -> ResultAssembler: ...

    def acknowledged_until_s(self, event: ServerEvent) -> float | None: ...


class XaiVendor:
    """xAI's streaming STT (shared/docs/xai-stt-protocol.md)."""

    name = "xai"

    def connection(
        self,
        generation: int,
        settings: SessionSettings,
        connect_timeout_s: float,
        logger: logging.Logger,
    ) -> Recognition:
        return Recognition(
            generation,
            settings.connect_url(),
            settings.api_key,
            connect_timeout_s=connect_timeout_s,
            logger=logger,
        )

    def tracker(self, settings: SessionSettings) -> ConnectionTracker:
        # One transcript.done per channel ends a multichannel turn.
        return ConnectionTracker(expected_dones=settings.expected_dones)

    def assembler(self, settings: SessionSettings) -> ResultAssembler:
        return ResultAssembler(multichannel=settings.multichannel)

    def acknowledged_until_s(self, event: ServerEvent) -> float | None:
        # No acknowledgements on the wire, but finals are: the vendor will not revise
        # the audio up to a final's end.
        if isinstance(event, TranscriptPartial) and event.is_final:
            return event.start_s + event.duration_s
        return None


XAI = XaiVendor()
