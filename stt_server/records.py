"""What a test can observe about each connection the server saw."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from stt_server.faults import Fault
from stt_server.marker import MarkerFrame
from stt_server.protocol import SessionConfig
from stt_server.wire import WireOptions

REDACTED = "<redacted>"


def redact_headers(items: list[tuple[str, str]]) -> dict[str, str]:
    """Request headers with lower-case names; the Authorization value never kept."""
    return {
        name.lower(): REDACTED if name.lower() == "authorization" else value
        for name, value in items
    }


@dataclass(eq=False)
class ConnectionRecord:
    """One upgrade request and, if accepted, its WebSocket session.

    See stt_server/README.md for the meaning of each field.
    """

    number: int
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    query_lists: dict[str, list[str]] = field(default_factory=dict)  # every value, in order
    fault: Fault | None = None
    config: SessionConfig | None = None
    refused_status: int | None = None
    refused_body: str | None = None
    opened: bool = False
    audio: bytearray = field(default_factory=bytearray)
    binary_frames: int = 0
    bytes_before_created: int = 0
    text_messages: list[str] = field(default_factory=list)
    events_sent: list[dict[str, Any]] = field(default_factory=list)
    audio_done_received: bool = False
    session_id: str | None = None  # the id sent in transcript.created
    finalizes_received: int = 0  # finalize messages, answered or not
    wire: WireOptions | None = None  # the wire options the connection was served with
    session_end: str | None = None
    end: str | None = None
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    outage: str | None = None  # "refuse" | "hang": the upgrade arrived during an outage
    partitioned_at_bytes: int | None = None  # audio bytes received when a partition began
    partition_healed: bool = False
    marker_channels: list[list[MarkerFrame]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    session_over: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def marker_frames(self) -> list[MarkerFrame]:
        """Marker mode: every frame decoded on channel 0, malformed ones included."""
        return self.marker_channels[0] if self.marker_channels else []

    @property
    def marker_indices(self) -> list[int]:
        """Marker mode: indices of channel 0's well-formed frames, in arrival order."""
        return [f.index for f in self.marker_frames if f.ok and f.index is not None]

    @property
    def marker_errors(self) -> int:
        """Marker mode: malformed or misaligned frames on all channels."""
        return sum(not f.ok for channel in self.marker_channels for f in channel)

    def events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events_sent if e.get("type") == event_type]

    async def wait_ended(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)
