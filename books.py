"""The books of connections: every connection the core still has a say on.

`ConnectionBooks` numbers connections (each new one takes the next generation,
the order results go out in), opens them with the settings of the moment (and
remembers which version of them: new settings reach the next connection), closes
them politely, and forgets them. Which of them is current, and what their roles
mean, is the connection supervisor's (supervisor.py); what one connection is
known to be is connection_state.py's `Conn`. No I/O: it acts through `SessionHost`.
"""

from __future__ import annotations

from . import engine_io as io
from .connection_state import FAILURE_CLOSE_TIMEOUT_S, Conn, Role, new_conn
from .session_types import SessionSettings
from .vendor import Vendor


class ConnectionBooks:
    """Connections by generation; opening, closing, forgetting."""

    def __init__(self, host: io.SessionHost, vendor: Vendor) -> None:
        self._host = host
        self._act = host.act
        self._vendor = vendor
        # Read by the sender on every send completed: the dict is never replaced.
        self.conns: dict[int, Conn] = {}
        self.generation = 0
        # New settings apply from the next connection: with finalize on an open
        # connection there is none, so a turn on a connection opened with older settings
        # ends with audio.done (each connection keeps the version it was opened with).
        self.settings_version = 0

    @property
    def next_generation(self) -> int:
        """Where an outcome with no connection of its own takes its place in the order."""
        return self.generation + 1

    def settings_changed(self, old: SessionSettings, settings: SessionSettings) -> None:
        if settings.connect_url() != old.connect_url() or settings.api_key != old.api_key:
            self.settings_version += 1  # what a connection is opened with changed

    def new_conn(self, role: Role, connect_timeout_s: float, base_user: int = 0) -> Conn:
        """A connection with the next generation number and the current settings."""
        settings = self._host.settings
        self.generation += 1
        conn = new_conn(
            self.generation,
            role,
            self._vendor.tracker(settings),
            self._vendor.assembler(settings),
            settings.audio_format,
            settings.replay_max_ms if role is not Role.REPAIR else 0,
            base_user,
        )
        conn.opened_at = conn.last_audio_at = self._host.now
        conn.settings_version = self.settings_version
        self.conns[conn.generation] = conn
        self._act(io.Open(conn.generation, settings, connect_timeout_s))
        return conn

    def forget(self, generation: int) -> Conn | None:
        return self.conns.pop(generation, None)

    def clear(self) -> None:
        self.conns.clear()

    def close(self, conn: Conn, reason: str, timeout_s: float | None = None) -> None:
        """A polite close, once: a close after a failure stays that failure."""
        if conn.ended or conn.closing:
            return
        conn.closing = True
        conn.tracker.close_planned(reason)
        self._act(io.Close(conn.generation, reason, timeout_s))

    def close_failed(self, conn: Conn) -> None:
        """A dead session: close politely (the server reads what we sent), bounded."""
        self.close(conn, "failed", FAILURE_CLOSE_TIMEOUT_S)

    def open_turns(self) -> list[Conn]:
        """The connections whose turn is not over: draining ones and repairs."""
        return [
            conn
            for conn in self.conns.values()
            if (conn.role is Role.DRAINING and not conn.turn_finished)
            or (conn.role is Role.REPAIR and not conn.repair_ended)
        ]
