"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in protocol.py: behaviour the engine's tests did not pin.

Survivor left as equivalent:
- `_number`: `format(Decimal(...), "f")` -> `"F"`: Decimal formats both the same way,
  exponent-free digits, infinity and NaN included ("Infinity", "NaN"; which config.py
  refuses anyway for `smart_turn` and `vad_threshold`, the two fields written with it).
- `_vendor_text`: `decode("utf-8", ...)` -> `decode("UTF-8", ...)` (sample seed 1):
  Python looks codec names up case-insensitively; both name the same codec.
"""

from __future__ import annotations

import socket

from test_engine_support import Recorder, fast_settings

from xai_asr_python.protocol import classify_handshake_rejection
from xai_asr_python.session import StreamingSession

NOW = 1_700_000_000.0


def test_a_long_vendor_text_is_cut_to_300_characters_and_marked_as_cut() -> None:
    """A proxy's HTML error page answered the upgrade: the error carries its first 300
    characters, then "...", so the reader knows there was more."""
    page = "<html><body>" + "Service Unavailable. " * 30 + "</body></html>"
    failure = classify_handshake_rejection(503, {}, page.encode(), now_epoch_s=NOW)
    assert failure.vendor_message == page[:300] + "..."
    short = classify_handshake_rejection(503, {}, b"busy", now_epoch_s=NOW)
    assert short.vendor_message == "busy"


async def test_a_refused_connection_is_reported_saying_it_could_not_connect() -> None:
    """Nothing listens at the URL (the port is held, so nothing else can take it):
    the session's error is a non-fatal handshake_failed whose message says the engine
    could not connect, and why."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        port = held.getsockname()[1]
        recorder = Recorder()
        session = StreamingSession(fast_settings(f"ws://127.0.0.1:{port}/v1/stt"), recorder)
        session.start()
        await recorder.wait_for(lambda: bool(recorder.errors), 3, "the refused connect")
        await session.stop()
    error = recorder.errors[0]
    assert (error.kind, error.fatal) == ("handshake_failed", False)
    assert error.message.startswith("could not connect: ConnectionRefusedError")
