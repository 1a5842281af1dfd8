"""What the extension sends: engine objects as the payloads of TEN data messages.

Plain functions, no state and no I/O: each turns what the engine reports (a
Transcript, a SessionError, a status change, the session's stats) into the dict
one TEN message carries (shared/docs/ten-asr-interface.md). The extension decides
when a message goes out and with which metadata; the outbox sends it.
"""

from __future__ import annotations

import uuid
from typing import Any

from .config import VENDOR, XAIASRConfig
from .redaction import redact
from .session_types import ConnState, SessionError, SessionStats, Transcript

MODULE = "asr"
FATAL_ERROR = -1000
NON_FATAL_ERROR = 1000


def asr_result(
    t: Transcript,
    result_id: str,
    language: str,
    metadata: dict[str, Any],
    **asr_info_extra: Any,
) -> dict[str, Any]:
    """An asr_result for `t`, with the vendor's extras in metadata.asr_info."""
    asr_info: dict[str, Any] = {
        "vendor": VENDOR,
        "locked": t.final,
        "speech_final": t.speech_final,
        **asr_info_extra,
    }
    if t.channel is not None:
        asr_info["channel"] = t.channel
    # TEN's words have no room for the vendor's confidences: asr_info carries them.
    if t.end_of_turn_confidence is not None:
        asr_info["end_of_turn_confidence"] = t.end_of_turn_confidence
    if any(w.confidence is not None for w in t.words):
        asr_info["word_confidence"] = [w.confidence for w in t.words]
    return {
        "id": result_id,
        "text": t.text,
        "final": t.final,
        "start_ms": int(t.start_ms),
        "duration_ms": int(t.duration_ms),
        "language": language,
        "words": [
            {
                "word": w.text,
                "start_ms": int(w.start_ms),
                "duration_ms": int(w.duration_ms),
                "stable": w.stable,
            }
            for w in t.words
        ],
        "metadata": {**metadata, "asr_info": asr_info},
    }


def closing_final(start_ms: int, position_ms: int | None) -> Transcript:
    """An empty final that closes a turn: it spans the audio after the turn's last
    result up to where the finalize cut the stream (the tail that held no more words).
    TEN's guarder timestamp test wants every final to last at least 1 ms and no two
    to overlap; a turn with no audio left gets that 1 ms."""
    return Transcript(
        text="",
        final=True,
        start_ms=start_ms,
        duration_ms=max(1, (position_ms or 0) - start_ms),
        words=(),
        channel=None,
        speech_final=True,
        generation=0,  # no connection's: the extension's own
    )


def finalize_end(finalize_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"finalize_id": finalize_id, "metadata": metadata}


def error(
    *,
    fatal: bool,
    message: str,
    vendor_code: str,
    vendor_message: str,
    metadata: dict[str, Any],
    api_key: str | None,
    dropped_ms: float | None = None,
) -> dict[str, Any]:
    """An error: FATAL (the module gave up) or NON_FATAL; the key never in its text."""
    metadata = dict(metadata)
    if dropped_ms is not None:
        # Audio lost in this episode, for a graph to count without parsing the message.
        metadata["dropped_audio_ms"] = round(dropped_ms)
    return {
        "id": uuid.uuid4().hex,
        "module": MODULE,
        "code": FATAL_ERROR if fatal else NON_FATAL_ERROR,
        "message": redact(message, api_key),
        "vendor_info": {
            "vendor": VENDOR,
            "code": redact(vendor_code, api_key),
            "message": redact(vendor_message, api_key),
        },
        "metadata": metadata,
    }


def session_error(e: SessionError, metadata: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    return error(
        fatal=e.fatal,
        message=e.message,
        vendor_code=e.vendor_code or "",
        vendor_message=e.vendor_message or "",
        metadata=metadata,
        api_key=api_key,
        dropped_ms=e.dropped_ms,
    )


def connection_status(
    current: ConnState,
    last: ConnState,
    code: int,
    message: str,
    *,
    url: str,
    metadata: dict[str, Any],
    api_key: str | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "module": MODULE,
        "vendor_info": {"vendor": VENDOR},
        "current": current.value,
        "last": last.value,
        "code": int(code),
        "message": redact(message, api_key),
        "metadata": {**metadata, "vendor_metadata": {"url": url}},
    }


def metrics(values: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "module": MODULE,
        "vendor": VENDOR,
        "metrics": values,
        "metadata": dict(metadata),
    }


def send_metrics(
    config: XAIASRConfig, bytes_sent: int, bytes_delta: int, stats: SessionStats
) -> dict[str, Any]:
    """The audio sent to the vendor (ms, in total and since the last report) and the
    session's reconnect and loss totals."""
    params = config.params
    bytes_per_ms = params.sample_rate * params.bytes_per_sample * params.audio_channels / 1000
    return {
        "actual_send": round(bytes_sent / bytes_per_ms),
        "actual_send_delta": round(bytes_delta / bytes_per_ms),
        "vendor_metrics": {
            "planned_reconnects": stats.planned_reconnects,
            "failure_reconnects": stats.failure_reconnects,
            "last_reconnect_gap_ms": stats.last_reconnect_gap_ms,
            "dropped_audio_ms": round(stats.dropped_ms),
            "drop_episodes": stats.drop_episodes,
            "replayed_audio_ms": round(stats.replayed_ms),
            "connections_opened": stats.connections_opened,
        },
    }
