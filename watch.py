"""The watch: is the connection that has our audio still alive?

`Watch` arms the current connection's ("watch", gen) timer and acts on what
liveness.py's rules find there (a stall, a silence that wants a probe, idleness,
a keepalive), pings a connection (`probe`: the current one when speech starts
after a quiet spell or at a finalize, a draining one when its turn is committed
to it) and takes the answer: a dead connection fails like any other (its
`tracker` says so, it is aborted, and the sender's pump hands the current one's
end to the supervisor; a draining one's turn goes to a repair on its close).

    opened / first speech / timer --> watch(g) --> SetTimer(watch g) | Probe(g) | Abort(g)
    Probe(g) --ProbeAnswered(alive)--> alive_at = now
             --ProbeAnswered(dead)---> fail, Abort(g), pump

The rules (when, how long) are liveness.py's; which connection is current is the
supervisor's (`WatchedLine`), the sender is nudged through `WatchedSender`. No I/O.
"""

from __future__ import annotations

import logging
from typing import Protocol

from . import engine_io as io
from . import liveness
from .books import ConnectionBooks
from .connection_state import Conn, Role


class WatchedLine(Protocol):
    """What the watch reads of the connection supervisor (supervisor.py)."""

    @property
    def current(self) -> Conn | None: ...


class WatchedSender(Protocol):
    """What the watch asks of the sender (sender.py)."""

    def pump(self) -> None: ...
    def audio_waiting(self) -> bool: ...


class Watch:
    """Stall, idle and keepalive checks of the current connection; probes."""

    def __init__(
        self,
        host: io.SessionHost,
        line: WatchedLine,
        books: ConnectionBooks,
        sender: WatchedSender,
        log: logging.Logger,
    ) -> None:
        self._host = host
        self._act = host.act
        self._line = line
        self._conns = books.conns
        self._sender = sender
        self._log = log

    def watch(self, conn: Conn) -> None:
        """Stall, idle and keepalive checks of the current connection; arms the next."""
        if self._line.current is not conn or conn.ended or conn.tracker.failure is not None:
            return
        host = self._host
        verdict = liveness.watch(
            conn, host.settings, host.now, quiet=not self._sender.audio_waiting()
        )
        if verdict.failure is not None:
            self._log.warning("gen %d: %s", conn.generation, verdict.failure.message)
            # Dropped at once: a stalled socket may not even take a close frame.
            conn.tracker.fail(verdict.failure)
            self._act(io.Abort(conn.generation))
            self._sender.pump()
            return
        if verdict.probe:
            self.probe(conn)  # a silence: prove it alive
        self._act(io.SetTimer(("watch", conn.generation), verdict.next_check_at))
        if verdict.go_idle:
            conn.idle = True
            self._sender.pump()

    def timer(self, generation: int) -> None:
        conn = self._conns.get(generation)
        if conn is not None:
            self.watch(conn)

    def probe_if_due(self, conn: Conn) -> None:
        """Speech is committed to `conn`: if it has been quiet, prove it alive (its audio
        stays in the replay window meanwhile)."""
        if liveness.probe_due_on_speech(conn, self._host.settings, self._host.now):
            self.probe(conn)

    def probe(self, conn: Conn) -> None:
        """Ping `conn`, unless a ping is already on its way. No pong in time and it is
        dead, and fails like any other (replay to the next connection, or a repair when
        draining). The ping waits behind the audio the vendor has not heard yet: the
        timeout allows for it, at real time from the vendor's latest event."""
        if conn.probing:
            return
        now = self._host.now
        conn.probing = True
        conn.probe_timeout_s = liveness.probe_timeout_s(conn, self._host.settings, now)
        conn.probe_quiet_s = now - conn.alive_at
        self._act(io.Probe(conn.generation, conn.probe_timeout_s))

    def probe_answered(self, event: io.ProbeAnswered) -> None:
        conn = self._conns.get(event.generation)
        if conn is None or self._host.stopped:
            return
        conn.probing = False
        if event.alive is None or conn.role not in (Role.CURRENT, Role.DRAINING):
            return  # closed meanwhile (its Closed says how)
        if event.alive:
            conn.alive_at = self._host.now
            return
        if conn.ended or conn.turn_finished or conn.repairing:
            return
        failure = liveness.dead(conn)
        self._log.warning("gen %d: %s", conn.generation, failure.message)
        conn.tracker.fail(failure)
        self._act(io.Abort(conn.generation))
        self._sender.pump()
