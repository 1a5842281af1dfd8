"""What goes into the session core and what comes out of it: events and actions.

The core (session_core.py) does no I/O. Everything that happens to a session
reaches it as an *event* with the time it happened (`now`, seconds on the
session's clock); everything it decides comes out as a list of *actions*
that the driver (session.py) carries out and whose outcome it feeds back as
events. Connections are named by their generation number; a timer by a key
the core chose.

Events from the user: Start, AudioPushed, FinalizeAsked, SettingsChanged,
StopAsked. Events from a connection: Opened, OpenFailed, Received, Closed,
SendCompleted, ProbeAnswered. From the driver's timers: TimerFired, and
DeferredDue for an outcome the core wanted delivered on a later loop turn.

Actions on connections: Open, Send, SendEndOfAudio, SendFinalize, Close, Abort, Probe. On
time: SetTimer (replaces a timer with the same key), CancelTimer. Towards the
listener: Notify (a `SessionListener` method and its arguments), Defer.

Events and actions are values: nothing changes one once it is made. They are not
frozen dataclasses only because a frozen one costs twice as much to make, and a
live stream makes two events and two actions per 10 ms frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .protocol import Failure, ServerEvent
from .session_types import FinalizeOutcome, SessionSettings

TimerKey = tuple[str, Any]


# ---------------------------------------------------------------- events: the user


@dataclass(slots=True)
class Start:
    now: float


@dataclass(slots=True)
class AudioPushed:
    now: float
    chunk: bytes


@dataclass(slots=True)
class FinalizeAsked:
    now: float
    finalize_id: str


@dataclass(slots=True)
class SettingsChanged:
    now: float
    settings: SessionSettings


@dataclass(slots=True)
class StopAsked:
    now: float


# ---------------------------------------------------------------- events: connections


@dataclass(slots=True)
class Opened:
    """The connection is up and the vendor said it is ready (transcript.created)."""

    now: float
    generation: int
    vendor_session: str | None = None  # the vendor's id of the session, if it gave one


@dataclass(slots=True)
class OpenFailed:
    now: float
    generation: int
    failure: Failure


@dataclass(slots=True)
class Received:
    now: float
    generation: int
    event: ServerEvent


@dataclass(slots=True)
class CloseInfo:
    """How a socket ended: the close frame received (None: none, e.g. a TCP reset), the
    one this client sent, if any, and a failure of the reading side itself (a bug)."""

    code: int | None = None
    reason: str | None = None
    sent_code: int | None = None
    sent_reason: str | None = None
    failure: Failure | None = None


@dataclass(slots=True)
class Closed:
    """The connection's socket is gone; no event of it follows."""

    now: float
    generation: int
    close: CloseInfo


@dataclass(slots=True)
class SendCompleted:
    """The Send or SendEndOfAudio in flight on `generation` was written (ok) or the socket
    refused it (not ok: the connection is gone, its Closed says how)."""

    now: float
    generation: int
    ok: bool


@dataclass(slots=True)
class ProbeAnswered:
    """The answer to a Probe: True (a pong in time), False (none: dead), None (the
    connection closed meanwhile; its Closed says how)."""

    now: float
    generation: int
    alive: bool | None


# ---------------------------------------------------------------- events: time


@dataclass(slots=True)
class TimerFired:
    now: float
    key: TimerKey


@dataclass(slots=True)
class DeferredDue:
    now: float
    generation: int
    outcome: FinalizeOutcome


Event = (
    Start
    | AudioPushed
    | FinalizeAsked
    | SettingsChanged
    | StopAsked
    | Opened
    | OpenFailed
    | Received
    | Closed
    | SendCompleted
    | ProbeAnswered
    | TimerFired
    | DeferredDue
)


# ---------------------------------------------------------------- actions


@dataclass(slots=True)
class Open:
    """Open connection `generation` with `settings`; answer Opened or OpenFailed (all of
    the opening, vendor's ready event included, within connect_timeout_s)."""

    generation: int
    settings: SessionSettings
    connect_timeout_s: float


@dataclass(slots=True)
class Send:
    """Write audio on `generation`; answer SendCompleted. Never two in flight on one."""

    generation: int
    data: bytes


@dataclass(slots=True)
class SendEndOfAudio:
    """Tell the vendor the turn's audio is complete (xAI: audio.done); SendCompleted."""

    generation: int


@dataclass(slots=True)
class SendFinalize:
    """End the current utterance now and keep the connection (xAI: finalize);
    SendCompleted."""

    generation: int


@dataclass(slots=True)
class Close:
    """A polite close, bounded by timeout_s (None: the connection's default)."""

    generation: int
    reason: str
    timeout_s: float | None = None


@dataclass(slots=True)
class Abort:
    """Drop the connection now (or cancel its opening)."""

    generation: int


@dataclass(slots=True)
class Probe:
    """Prove the connection alive (a ping); answer ProbeAnswered within timeout_s."""

    generation: int
    timeout_s: float


@dataclass(slots=True)
class SetTimer:
    """Fire TimerFired(key) at `at` (session clock); replaces a timer with the same key."""

    key: TimerKey
    at: float


@dataclass(slots=True)
class CancelTimer:
    key: TimerKey


@dataclass(slots=True)
class Notify:
    """Call the listener: `method` is a SessionListener method name."""

    method: str
    args: tuple[Any, ...]


@dataclass(slots=True)
class Defer:
    """Feed DeferredDue(generation, outcome) back on a later loop turn (so the caller of
    finalize() is not called back from inside it)."""

    generation: int
    outcome: FinalizeOutcome


Action = (
    Open
    | Send
    | SendEndOfAudio
    | SendFinalize
    | Close
    | Abort
    | Probe
    | SetTimer
    | CancelTimer
    | Notify
    | Defer
)


class SessionHost(Protocol):
    """What each part of the core (supervisor.py, sender.py, watch.py, turns.py,
    repairs.py) reads of the session and how it acts; `SessionCore` implements it.

    `act` appends to the actions of the event being handled (in order); `now` is that
    event's time. Both are read on every audio frame, so the core keeps them as plain
    attributes (a bound `list.append` and a float), not as methods of its own."""

    @property
    def now(self) -> float: ...
    @property
    def settings(self) -> SessionSettings: ...
    @property
    def stopped(self) -> bool: ...
    def act(self, action: Action) -> None: ...
