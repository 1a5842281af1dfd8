"""A local xAI-compatible streaming speech-to-text WebSocket server.

See stt_server/README.md for the command line and the in-process API.
"""

from stt_server.faults import Close, ErrorEvent, Fault, Malformed, Outage, Partition
from stt_server.marker import MarkerFrame
from stt_server.protocol import QueryError, SessionConfig, Word
from stt_server.records import ConnectionRecord
from stt_server.server import STTServer
from stt_server.wire import WireOptions

__all__ = [
    "Close",
    "ConnectionRecord",
    "ErrorEvent",
    "Fault",
    "Malformed",
    "MarkerFrame",
    "Outage",
    "Partition",
    "QueryError",
    "STTServer",
    "SessionConfig",
    "WireOptions",
    "Word",
]
