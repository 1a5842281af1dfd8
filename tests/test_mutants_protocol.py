"""Checks that kill what the sampled mutation run (bench/mutation.py --sample 10) found
surviving in protocol.py: behaviour the engine's tests did not pin.

Survivor left as equivalent:
- `_number`: `format(Decimal(...), "f")` -> `"F"`: Decimal formats both the same way,
  exponent-free digits, infinity and NaN included ("Infinity", "NaN"; which config.py
  refuses anyway for `smart_turn` and `vad_threshold`, the two fields written with it).
"""

from __future__ import annotations

from xai_asr_python.protocol import classify_handshake_rejection

NOW = 1_700_000_000.0


def test_a_long_vendor_text_is_cut_to_300_characters_and_marked_as_cut() -> None:
    """A proxy's HTML error page answered the upgrade: the error carries its first 300
    characters, then "...", so the reader knows there was more."""
    page = "<html><body>" + "Service Unavailable. " * 30 + "</body></html>"
    failure = classify_handshake_rejection(503, {}, page.encode(), now_epoch_s=NOW)
    assert failure.vendor_message == page[:300] + "..."
    short = classify_handshake_rejection(503, {}, b"busy", now_epoch_s=NOW)
    assert short.vendor_message == "busy"
