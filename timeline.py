"""The session timeline: vendor times (per connection) -> the user's audio time.

xAI times every word in seconds from the start of the audio received on *that
connection*. The user's timeline is the whole audio stream pushed into the
session, dropped audio included. Each connection records which stretches of
the user's stream it was sent (usually one contiguous stretch; more when the
outage buffer dropped audio between two frames sent on the same connection),
and maps a vendor time through them.

Positions are integer *ticks* of 1/7,056,000 s: the least common multiple of
the sample periods of every rate the service takes (8, 16, 22.05, 24, 44.1 and
48 kHz), so every sample boundary of every supported rate is a whole tick.
That keeps times exact to the sample across any number of reconnects and
format changes, and keeps the per-frame bookkeeping to integer additions (this
runs for every 10 ms frame). Milliseconds (exact `Fraction`s) appear only at
the edges, and rounding to whole milliseconds happens once, at the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

from .protocol import bytes_per_sample

TICKS_PER_SECOND = 7_056_000
TICKS_PER_MS = TICKS_PER_SECOND // 1000
T = TypeVar("T", int, Fraction)


def ticks_to_ms(ticks: int | Fraction) -> Fraction:
    return Fraction(ticks) / TICKS_PER_MS


@dataclass(frozen=True)
class AudioFormat:
    sample_rate: int = 16000
    encoding: str = "pcm"
    channels: int = 1  # channels interleaved in the stream

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample across all channels: the unit audio is never split below."""
        return bytes_per_sample(self.encoding) * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.bytes_per_frame

    @property
    def ticks_per_frame(self) -> int:
        """Ticks of one sample period (one sample of every channel). Exact for every rate
        the service takes; any other (the service refuses it with 400) is rounded."""
        return max(1, round(TICKS_PER_SECOND / self.sample_rate))

    def ticks(self, nbytes: int) -> int:
        """Length in ticks of `nbytes` of audio (whole samples)."""
        return nbytes // self.bytes_per_frame * self.ticks_per_frame

    def duration_ms(self, nbytes: int) -> Fraction:
        return Fraction(nbytes * 1000, self.bytes_per_second)


def round_ms(value: Fraction) -> int:
    """Half-up rounding, the same for every time, so adjacent spans stay adjacent."""
    return math.floor(value + Fraction(1, 2))


def _round_ticks_to_ms(ticks: int) -> int:
    """round_ms(ticks_to_ms(ticks)) in integers."""
    return (2 * ticks + TICKS_PER_MS) // (2 * TICKS_PER_MS)


class ConnectionTimeline:
    """Where the audio sent on one connection sits in the user's stream (ticks inside)."""

    def __init__(self, sample_rate: int, base_user: int = 0) -> None:
        self.sample_rate = sample_rate
        # User position (ticks) used only if the vendor reports a time before anything
        # was sent.
        self._base_user = base_user
        # One stretch per run of contiguous user audio: where it begins on the
        # connection, where on the user's timeline, and its length (parallel lists of
        # ints: the last length grows with every frame, with no object per frame).
        self._conn_starts: list[int] = []
        self._user_starts: list[int] = []
        self._lengths: list[int] = []
        self._sent = 0  # ticks sent on this connection

    @property
    def offset_ms(self) -> Fraction:
        """User time of the first byte sent on this connection."""
        return ticks_to_ms(self._user_starts[0] if self._user_starts else self._base_user)

    @property
    def sent_ms(self) -> Fraction:
        return ticks_to_ms(self._sent)

    @property
    def user_end_ms(self) -> Fraction:
        """User time just after the last byte sent on this connection."""
        if not self._user_starts:
            return ticks_to_ms(self._base_user)
        return ticks_to_ms(self._user_starts[-1] + self._lengths[-1])

    def record_sent(self, user_start: int, length: int) -> None:
        """A frame of `length` ticks that begins at tick `user_start` of the user's stream
        was written to the socket."""
        if self._user_starts and self._user_starts[-1] + self._lengths[-1] == user_start:
            self._lengths[-1] += length
        else:
            self._conn_starts.append(self._sent)
            self._user_starts.append(user_start)
            self._lengths.append(length)
        self._sent += length

    def vendor_to_conn_ms(self, vendor_s: float) -> Fraction:
        """Vendor seconds, snapped to this connection's sample grid, as exact milliseconds."""
        samples = round(vendor_s * self.sample_rate)
        return Fraction(max(0, samples) * 1000, self.sample_rate)

    def to_user_ms(self, vendor_s: float, *, end: bool = False) -> Fraction:
        """Map a vendor time to the user's timeline.

        `end=True` maps the end of a span: a time exactly on the boundary
        between two stretches belongs to the earlier one.
        """
        return self.conn_to_user_ms(self.vendor_to_conn_ms(vendor_s), end=end)

    def conn_to_user_ms(self, t: Fraction, *, end: bool = False) -> Fraction:
        """Map a time on this connection's timeline (ms of audio sent on it) to the user's."""
        return ticks_to_ms(self._to_user(t * TICKS_PER_MS, end=end))

    def _to_user(self, ticks: T, *, end: bool) -> T:
        """Connection ticks -> user ticks (an int for an int; exact rationals pass through)."""
        if not self._conn_starts:
            return self._base_user + ticks
        chosen = 0
        for index, conn_start in enumerate(self._conn_starts):
            if conn_start < ticks or (not end and conn_start == ticks):
                chosen = index
            else:
                break
        # Past the end of what was sent the mapping continues linearly.
        return self._user_starts[chosen] + (ticks - self._conn_starts[chosen])

    def span(self, start_s: float, end_s: float) -> tuple[int, int]:
        """(start_ms, duration_ms) on the user's timeline, rounded once.

        A span is clamped to the audio actually sent on this connection: the
        vendor cannot have heard more, and clamping keeps the spans of two
        connections from overlapping even if the vendor's times overshoot.
        This runs for every word of every result: integer ticks throughout.
        """
        if self._user_starts:
            low = self._user_starts[0]
            high = self._user_starts[-1] + self._lengths[-1]
        else:
            low = high = self._base_user
        start = min(max(self._user_tick(start_s, end=False), low), high)
        stop = min(max(self._user_tick(max(start_s, end_s), end=True), start), high)
        start_ms = _round_ticks_to_ms(start)
        return start_ms, max(0, _round_ticks_to_ms(stop) - start_ms)

    def _user_tick(self, vendor_s: float, *, end: bool) -> int:
        """`to_user_ms` in ticks: the vendor time snapped to this connection's samples."""
        if TICKS_PER_SECOND % self.sample_rate:  # a rate the service refuses: not exact
            return math.floor(
                self._to_user(self.vendor_to_conn_ms(vendor_s) * TICKS_PER_MS, end=end)
            )
        samples = max(0, round(vendor_s * self.sample_rate))
        return self._to_user(samples * (TICKS_PER_SECOND // self.sample_rate), end=end)
