"""protocol.py with plain data: URL and headers, event parsing, what a close or refusal means."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from xai_asr_python.protocol import (
    AUDIO_DONE_MESSAGE,
    ConnectionPhase,
    ConnectionTracker,
    Failure,
    IgnoredFrame,
    PlannedClose,
    TranscriptCreated,
    TranscriptDone,
    TranscriptPartial,
    VendorError,
    auth_headers,
    build_query,
    build_url,
    classify_handshake_rejection,
    handshake_timeout,
    parse_event,
    parse_retry_after,
    url_for_log,
)

QUERY_DEFAULTS = dict(
    sample_rate=16000,
    encoding="pcm",
    interim_results=True,
    endpointing_ms=300,
    language="en",
    diarize=False,
    multichannel=False,
    channels=1,
)


def test_query_uses_lowercase_booleans_and_omits_channels_in_mono() -> None:
    query = build_query(**QUERY_DEFAULTS)
    assert query == {
        "sample_rate": "16000",
        "encoding": "pcm",
        "interim_results": "true",
        "diarize": "false",
        "multichannel": "false",
        "endpointing": "300",
        "language": "en",
    }


def test_query_multichannel_sends_channels_and_optional_fields_can_be_absent() -> None:
    query = build_query(
        **{**QUERY_DEFAULTS, "multichannel": True, "channels": 3},
    )
    assert query["multichannel"] == "true" and query["channels"] == "3"
    bare = build_query(**{**QUERY_DEFAULTS, "endpointing_ms": None, "language": None})
    assert "endpointing" not in bare and "language" not in bare


def test_build_url_merges_with_an_existing_query_and_ours_wins() -> None:
    url = build_url("wss://api.x.ai/v1/stt?foo=1&sample_rate=8000", {"sample_rate": "16000"})
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "api.x.ai", "/v1/stt")
    assert parse_qs(parts.query) == {"foo": ["1"], "sample_rate": ["16000"]}


def test_key_goes_in_a_header_never_in_the_url() -> None:
    key = "xai-secret-123"
    assert auth_headers(key) == [("Authorization", f"Bearer {key}")]
    assert auth_headers("") == []
    url = build_url("wss://api.x.ai/v1/stt", build_query(**QUERY_DEFAULTS))
    assert key not in url


def test_url_for_log_drops_query_and_userinfo() -> None:
    assert url_for_log("wss://user:pw@api.x.ai:443/v1/stt?a=b") == "wss://api.x.ai:443/v1/stt"


def test_audio_done_message() -> None:
    assert json.loads(AUDIO_DONE_MESSAGE) == {"type": "audio.done"}


# ----------------------------------------------------------------- parsing


def test_parse_created_partial_done_error() -> None:
    assert parse_event('{"type":"transcript.created"}') == TranscriptCreated()
    partial = parse_event(
        json.dumps(
            {
                "type": "transcript.partial",
                "text": " hello world ",
                "words": [
                    {"text": "hello", "start": 0.5, "end": 0.9},
                    {"text": "world", "start": 1.0, "end": 1.4},
                ],
                "is_final": True,
                "speech_final": False,
                "start": 0.5,
                "duration": 0.9,
                "channel_index": 1,
            }
        )
    )
    assert isinstance(partial, TranscriptPartial)
    assert partial.text == "hello world"
    assert [w.text for w in partial.words] == ["hello", "world"]
    assert partial.words[1].start_s == 1.0 and partial.words[1].end_s == 1.4
    assert partial.is_final and not partial.speech_final
    assert (partial.start_s, partial.duration_s, partial.channel) == (0.5, 0.9, 1)
    assert partial.defaulted == ()

    done = parse_event('{"type":"transcript.done","text":"hi","duration":2.5,"channel_index":0}')
    assert done == TranscriptDone(text="hi", duration_s=2.5, channel=0)

    error = parse_event('{"type":"error","message":"Cannot continue request","code":503}')
    assert error == VendorError(message="Cannot continue request", code="503")
    assert parse_event('{"type":"error","message":"x"}') == VendorError(message="x", code=None)


def test_missing_fields_get_defaults_and_are_named() -> None:
    partial = parse_event('{"type":"transcript.partial"}')
    assert isinstance(partial, TranscriptPartial)
    assert partial.text == "" and partial.words == ()
    assert not partial.is_final and not partial.speech_final
    assert (partial.start_s, partial.duration_s, partial.channel) == (0.0, 0.0, None)
    assert set(partial.defaulted) == {"text", "is_final", "speech_final", "start", "duration"}

    # Times missing but words present: the span comes from the words.
    from_words = parse_event(
        '{"type":"transcript.partial","text":"a b","is_final":false,"speech_final":false,'
        '"words":[{"text":"a","start":1.0,"end":1.2},{"text":"b","start":1.3,"end":1.5}]}'
    )
    assert isinstance(from_words, TranscriptPartial)
    assert from_words.start_s == 1.0 and from_words.duration_s == pytest.approx(0.5)

    done = parse_event('{"type":"transcript.done"}')
    assert isinstance(done, TranscriptDone)
    assert done.text == "" and done.duration_s is None and "duration" in done.defaulted


def test_wrong_types_fall_back_to_defaults() -> None:
    event = parse_event(
        '{"type":"transcript.partial","text":5,"is_final":"yes","start":-1,"duration":"x",'
        '"channel_index":"0","words":[{"text":"ok","start":"a"},"junk",{"start":1}]}'
    )
    assert isinstance(event, TranscriptPartial)
    assert event.text == "" and not event.is_final
    assert event.start_s == 0.0 and event.channel is None
    assert [w.text for w in event.words] == ["ok"]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("this is not JSON {", "not JSON"),
        (b"\x00\x01binary", "binary frame"),
        ("[1,2]", "JSON that is not an object"),
        ('{"text":"no type"}', "event without a type"),
        ('{"type":"transcript.unexpected"}', "unknown event type 'transcript.unexpected'"),
    ],
)
def test_junk_frames_are_survived(frame: str | bytes, reason: str) -> None:
    event = parse_event(frame)
    assert isinstance(event, IgnoredFrame)
    assert event.reason == reason
    assert event.preview


def test_preview_of_a_huge_frame_is_bounded() -> None:
    event = parse_event("x" * 100_000)
    assert isinstance(event, IgnoredFrame) and len(event.preview) < 200


# ----------------------------------------------------------------- handshake verdicts

NOW = 1_700_000_000.0


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_fatal(status: int) -> None:
    failure = classify_handshake_rejection(
        status, {}, b"Invalid or missing API key.\n", now_epoch_s=NOW
    )
    assert failure.fatal and failure.kind == "handshake_refused"
    assert failure.vendor_code == str(status)
    assert failure.vendor_message == "Invalid or missing API key."


def test_bad_request_is_fatal_and_carries_the_body() -> None:
    failure = classify_handshake_rejection(400, {}, b"sample_rate: must be one of", now_epoch_s=NOW)
    assert failure.fatal and "configuration" in failure.message
    assert failure.vendor_message == "sample_rate: must be one of"


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_overload_is_transient(status: int) -> None:
    failure = classify_handshake_rejection(status, {}, b"", now_epoch_s=NOW)
    assert not failure.fatal and failure.retry_after_s is None
    assert failure.vendor_message is None


def test_retry_after_in_seconds_and_as_a_date() -> None:
    failure = classify_handshake_rejection(429, {"Retry-After": "7"}, b"", now_epoch_s=NOW)
    assert failure.retry_after_s == 7.0 and not failure.fatal
    date = format_datetime(datetime.fromtimestamp(NOW + 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(date, now_epoch_s=NOW) == pytest.approx(30.0)
    assert parse_retry_after("garbage", now_epoch_s=NOW) is None
    assert parse_retry_after(None, now_epoch_s=NOW) is None
    past = format_datetime(datetime.fromtimestamp(NOW - 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(past, now_epoch_s=NOW) == 0.0


def test_handshake_timeout_distinguishes_a_missing_created() -> None:
    assert handshake_timeout(0.5, opened=False).kind == "handshake_timeout"
    assert handshake_timeout(0.5, opened=True).kind == "no_created"


# ----------------------------------------------------------------- close verdicts


def test_close_after_done_is_planned_whatever_the_code() -> None:
    for code in (1000, 1001, None):
        tracker = ConnectionTracker()
        tracker.receive(TranscriptCreated())
        tracker.audio_done_sent()
        assert tracker.phase is ConnectionPhase.DRAINING
        tracker.receive(TranscriptDone("x", 1.0, 0))
        assert tracker.phase is ConnectionPhase.DONE
        assert tracker.closed(code, "") == PlannedClose("done")


@pytest.mark.parametrize(
    ("code", "vendor_code"),
    [(1000, "1000"), (1001, "1001"), (1011, "1011"), (1006, "1006"), (None, "1006")],
)
def test_close_without_done_is_a_failure(code: int | None, vendor_code: str) -> None:
    tracker = ConnectionTracker()
    tracker.receive(TranscriptCreated())
    verdict = tracker.closed(code, "going away")
    assert isinstance(verdict, Failure)
    assert verdict.kind == "abnormal_close" and not verdict.fatal
    assert verdict.vendor_code == vendor_code


def test_a_close_the_client_library_sent_is_reported_as_such_not_as_lost() -> None:
    """websockets fails a connection itself with 1009 when a server message is over
    the client's limit; no close frame may come back. That is not a lost connection."""
    for rcvd in (None, 1009):  # the server may echo the code, or just go
        tracker = ConnectionTracker()
        tracker.receive(TranscriptCreated())
        verdict = tracker.closed(rcvd, None, sent_code=1009, sent_reason="over size limit")
        assert isinstance(verdict, Failure) and verdict.kind == "abnormal_close"
        assert "lost without a close frame" not in verdict.message
        assert "client closed the connection (1009)" in verdict.message
        assert "larger than the client's limit (4 MiB)" in verdict.message
        assert verdict.vendor_code is None  # nothing the vendor said
    tracker = ConnectionTracker()
    tracker.receive(TranscriptCreated())
    verdict = tracker.closed(None, None, sent_code=1011, sent_reason="keepalive ping timeout")
    assert isinstance(verdict, Failure)
    assert verdict.message.endswith(
        "(1011): the client failed the connection [keepalive ping timeout]"
    )
    # Our own normal close is not a failure of ours to explain.
    tracker = ConnectionTracker()
    tracker.receive(TranscriptCreated())
    tracker.close_planned("idle")
    assert tracker.closed(None, None, sent_code=1000) == PlannedClose("idle")


def test_our_planned_close_is_planned() -> None:
    tracker = ConnectionTracker()
    tracker.receive(TranscriptCreated())
    tracker.close_planned("idle")
    assert tracker.closed(1000, "") == PlannedClose("idle")


def test_vendor_error_wins_over_the_close_that_follows() -> None:
    tracker = ConnectionTracker()
    tracker.receive(TranscriptCreated())
    tracker.receive(VendorError("Cannot continue request", "503"))
    tracker.close_planned("failed")  # our polite close after the error stays a failure
    verdict = tracker.closed(1011, "Cannot continue request")
    assert isinstance(verdict, Failure)
    assert verdict.kind == "vendor_error"
    assert verdict.vendor_code == "503" and verdict.vendor_message == "Cannot continue request"


def test_multichannel_needs_a_done_per_channel() -> None:
    tracker = ConnectionTracker(expected_dones=2)
    tracker.receive(TranscriptCreated())
    tracker.audio_done_sent()
    tracker.receive(TranscriptDone("a", 1.0, 0))
    tracker.receive(TranscriptDone("a", 1.0, 0))  # a repeat does not count twice
    assert not tracker.done
    tracker.receive(TranscriptDone("b", 1.0, 1))
    assert tracker.done
    assert tracker.closed(1000, "") == PlannedClose("done")


def test_first_failure_wins() -> None:
    tracker = ConnectionTracker()
    tracker.fail(Failure(kind="stall", message="stalled"))
    tracker.fail(Failure(kind="send_failed", message="later"))
    verdict = tracker.closed(None, None)
    assert isinstance(verdict, Failure) and verdict.kind == "stall"


def test_the_live_fields_are_read_and_reach_the_transcript() -> None:
    """transcript.created's session id, word confidence and speaker, the partial's
    end_of_turn_confidence and the done's words (shared/docs/xai-stt-protocol.md)."""
    from xai_asr_python.connection_state import Role, new_conn, to_transcript
    from xai_asr_python.protocol import ConnectionTracker, TranscriptDone
    from xai_asr_python.timeline import TICKS_PER_MS, AudioFormat
    from xai_asr_python.utterances import ResultAssembler

    assert parse_event('{"type": "transcript.created", "id": "abc-1"}') == TranscriptCreated(
        "abc-1"
    )
    partial = parse_event(
        '{"type": "transcript.partial", "text": "hi there", "is_final": true,'
        ' "speech_final": true, "start": 0.0, "duration": 1.0, "end_of_turn_confidence": 0.9,'
        ' "words": [{"text": "hi", "start": 0.1, "end": 0.3, "confidence": 0.75, "speaker": 1},'
        ' {"text": "there", "start": 0.3, "end": 0.6, "confidence": "high"}]}'
    )
    assert isinstance(partial, TranscriptPartial)
    assert partial.end_of_turn_confidence == 0.9
    assert [(w.confidence, w.speaker) for w in partial.words] == [(0.75, 1), (None, None)]
    done = parse_event(
        '{"type": "transcript.done", "text": "", "duration": 1.0,'
        ' "words": [{"text": "hi", "start": 0.1, "end": 0.3}]}'
    )
    assert isinstance(done, TranscriptDone) and [w.text for w in done.words] == ["hi"]
    conn = new_conn(
        1, Role.CURRENT, ConnectionTracker(), ResultAssembler(), AudioFormat(16000, "pcm", 1), 0
    )
    conn.timeline.record_sent(0, 1000 * TICKS_PER_MS)
    result = conn.assembler.on_partial(partial)
    assert result is not None
    t = to_transcript(conn, result)
    assert t is not None and t.end_of_turn_confidence == 0.9
    assert [w.confidence for w in t.words] == [0.75, None]
