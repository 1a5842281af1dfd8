"""The session timeline: vendor times (per connection) -> the user's audio time.

xAI times every word in seconds from the start of the audio received on *that
connection*. The user's timeline is the whole audio stream pushed into the
session, dropped audio included. Each connection records which stretches of
the user's stream it was sent (usually one contiguous stretch; more when the
outage buffer dropped audio between two frames sent on the same connection),
and maps a vendor time through them. Positions are exact rationals in
milliseconds, so times stay exact to the sample across any number of
reconnects; rounding to whole milliseconds happens once, at the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .protocol import bytes_per_sample


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

    def duration_ms(self, nbytes: int) -> Fraction:
        return Fraction(nbytes * 1000, self.bytes_per_second)

    def bytes_for_ms(self, ms: float) -> int:
        """Whole frames' worth of bytes covering at most `ms` of audio."""
        frames = math.floor(ms * self.sample_rate / 1000)
        return max(0, frames) * self.bytes_per_frame


def round_ms(value: Fraction) -> int:
    """Half-up rounding, the same for every time, so adjacent spans stay adjacent."""
    return math.floor(value + Fraction(1, 2))


@dataclass(frozen=True)
class _Segment:
    conn_start_ms: Fraction  # where this stretch begins on the connection's timeline
    user_start_ms: Fraction  # ... and on the user's timeline
    length_ms: Fraction


class ConnectionTimeline:
    """Where the audio sent on one connection sits in the user's stream."""

    def __init__(self, sample_rate: int, base_user_ms: Fraction = Fraction(0)) -> None:
        self.sample_rate = sample_rate
        # Used only if the vendor reports a time before anything was sent.
        self._base_user_ms = base_user_ms
        self._segments: list[_Segment] = []
        self._conn_length_ms = Fraction(0)

    @property
    def offset_ms(self) -> Fraction:
        """User time of the first byte sent on this connection."""
        return self._segments[0].user_start_ms if self._segments else self._base_user_ms

    @property
    def sent_ms(self) -> Fraction:
        return self._conn_length_ms

    @property
    def user_end_ms(self) -> Fraction:
        """User time just after the last byte sent on this connection."""
        if not self._segments:
            return self._base_user_ms
        last = self._segments[-1]
        return last.user_start_ms + last.length_ms

    def record_sent(self, user_start_ms: Fraction, duration_ms: Fraction) -> None:
        """A frame that begins at `user_start_ms` in the user's stream was written to the socket."""
        if self._segments:
            last = self._segments[-1]
            if last.user_start_ms + last.length_ms == user_start_ms:
                self._segments[-1] = _Segment(
                    last.conn_start_ms, last.user_start_ms, last.length_ms + duration_ms
                )
                self._conn_length_ms += duration_ms
                return
        self._segments.append(_Segment(self._conn_length_ms, user_start_ms, duration_ms))
        self._conn_length_ms += duration_ms

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
        if not self._segments:
            return self._base_user_ms + t
        chosen = self._segments[0]
        for segment in self._segments:
            if segment.conn_start_ms < t or (not end and segment.conn_start_ms == t):
                chosen = segment
            else:
                break
        # Past the end of what was sent the mapping continues linearly.
        return chosen.user_start_ms + (t - chosen.conn_start_ms)

    def span(self, start_s: float, end_s: float) -> tuple[int, int]:
        """(start_ms, duration_ms) on the user's timeline, rounded once.

        A span is clamped to the audio actually sent on this connection: the
        vendor cannot have heard more, and clamping keeps the spans of two
        connections from overlapping even if the vendor's times overshoot.
        """
        low, high = self.offset_ms, self.user_end_ms
        start = min(max(self.to_user_ms(start_s), low), high)
        stop = min(max(self.to_user_ms(max(start_s, end_s), end=True), start), high)
        start_ms = round_ms(start)
        return start_ms, max(0, round_ms(stop) - start_ms)
