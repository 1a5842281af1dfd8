"""Helpers shared by the stt_server tests (a plain module: `conftest` is
ambiguous when several suites run in one pytest session)."""

from __future__ import annotations

import asyncio
import json
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
AUDIO_DIR = ROOT / "stt_server" / "audio"
WAIT = 5.0  # generous bound for any single wait in these tests


def load_clip(name: str) -> bytes:
    """A committed clip's PCM (16 kHz mono int16 little-endian)."""
    with wave.open(str(AUDIO_DIR / name), "rb") as clip:
        assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (16000, 1, 2)
        return clip.readframes(clip.getnframes())


def url_with(url: str, **query: Any) -> str:
    if not query:
        return url
    return (
        url
        + "?"
        + urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()})
    )


def open_client(
    url: str, api_key: str | None = "test-key", **kwargs: Any
) -> Any:  # the connect() context manager
    headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else None
    kwargs.setdefault("open_timeout", WAIT)
    kwargs.setdefault("close_timeout", 1)
    return connect(url, additional_headers=headers, **kwargs)


@dataclass
class Observed:
    """What a client saw until the socket closed (or a wait ran out)."""

    events: list[Any] = field(default_factory=list)  # dicts; raw str/bytes when not JSON
    close_code: int | None = None
    close_reason: str | None = None
    close_frame_received: bool = False
    timed_out: bool = False

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict) and e.get("type") == event_type]

    @property
    def types(self) -> list[str | None]:
        return [e.get("type") if isinstance(e, dict) else None for e in self.events]


async def receive_all(
    ws: ClientConnection, timeout: float = WAIT, idle: float | None = None
) -> Observed:
    """Collect frames until the socket closes, or until `idle` s pass without one.

    With idle=None running out of `timeout` is an error; with idle set, a
    quiet socket just ends the collection (timed_out=True).
    """
    observed = Observed()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        wait = remaining if idle is None else min(idle, remaining)
        try:
            message = await asyncio.wait_for(ws.recv(), max(wait, 0.001))
        except ConnectionClosed:
            break
        except asyncio.TimeoutError:
            if idle is None:
                raise AssertionError(f"socket still open after {timeout} s: {observed}")
            observed.timed_out = True
            return observed
        if isinstance(message, str):
            try:
                observed.events.append(json.loads(message))
            except ValueError:
                observed.events.append(message)
        else:
            observed.events.append(message)
    observed.close_code = ws.protocol.close_code
    observed.close_reason = ws.protocol.close_reason
    observed.close_frame_received = ws.protocol.close_rcvd is not None
    return observed


async def expect_created(ws: ClientConnection) -> str:
    """The first event is transcript.created with a session id (a UUID); returns the id."""
    first = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert first.keys() == {"type", "id"} and first["type"] == "transcript.created", first
    return str(uuid.UUID(first["id"]))


async def send_audio(
    ws: ClientConnection, audio: bytes, chunk: int = 3200, timeout: float = WAIT
) -> None:
    for offset in range(0, len(audio), chunk):
        await asyncio.wait_for(ws.send(audio[offset : offset + chunk]), timeout)


async def send_done(ws: ClientConnection, timeout: float = WAIT) -> None:
    await asyncio.wait_for(ws.send(json.dumps({"type": "audio.done"})), timeout)


async def transcribe(
    url: str, audio: bytes, chunk: int = 3200, *, timeout: float = WAIT, **query: Any
) -> Observed:
    """One full turn: created, audio, audio.done, everything until the close.

    `timeout` bounds each wait (a hang guard): raise it for recognisers whose
    decoding may take seconds on a loaded machine (whisper).
    """
    async with open_client(url_with(url, **query)) as ws:
        await expect_created(ws)
        await send_audio(ws, audio, chunk, timeout)
        await send_done(ws, timeout)
        return await receive_all(ws, timeout)
