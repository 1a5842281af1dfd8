"""The extension's own parts, without a graph: the payloads it sends (ten_messages.py),
the order they go out in (ten_outbox.py) and its bookkeeping of turns (ten_turns.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ten_schemas import REPO_ROOT

from xai_asr_python import ten_messages as msg
from xai_asr_python import ten_outbox
from xai_asr_python.config import parse_config
from xai_asr_python.session_types import (
    ConnState,
    SessionError,
    SessionStats,
    Transcript,
    Word,
)
from xai_asr_python.ten_turns import PendingFinalize, PendingFinalizes, TurnTracker

SECRET = "sk-test-DO-NOT-LEAK-0b7e5c21"
META = {"session_id": "s-1"}


def _declared(name: str) -> dict[str, Any]:
    manifest = json.loads((REPO_ROOT / "manifest.json").read_text())
    for message in manifest["api"]["data_out"]:
        if message["name"] == name:
            return message["property"]
    raise AssertionError(f"{name} is not declared in data_out")


def _check_declared(name: str, payload: dict[str, Any]) -> None:
    """Every key is declared in manifest.json, every required one is there."""
    declared = _declared(name)
    assert set(payload) <= set(declared["properties"]), payload
    assert set(declared.get("required", [])) <= set(payload), payload
    json.dumps(payload)  # the outbox sends it as JSON


def _transcript(**fields: Any) -> Transcript:
    base: dict[str, Any] = dict(
        text="hello there",
        final=True,
        start_ms=100,
        duration_ms=900,
        words=(
            Word("hello", 100, 400, True, confidence=0.9),
            Word("there", 600, 400, False),
        ),
        channel=None,
        speech_final=True,
        generation=3,
    )
    return Transcript(**{**base, **fields})


def test_asr_result() -> None:
    t = _transcript(end_of_turn_confidence=0.7)
    payload = msg.asr_result(t, "r1", "en-US", META, finalize_id="f1")
    assert payload == {
        "id": "r1",
        "text": "hello there",
        "final": True,
        "start_ms": 100,
        "duration_ms": 900,
        "language": "en-US",
        "words": [
            {"word": "hello", "start_ms": 100, "duration_ms": 400, "stable": True},
            {"word": "there", "start_ms": 600, "duration_ms": 400, "stable": False},
        ],
        "metadata": {
            "session_id": "s-1",
            "asr_info": {
                "vendor": "xai",
                "locked": True,
                "speech_final": True,
                "finalize_id": "f1",
                "end_of_turn_confidence": 0.7,
                "word_confidence": [0.9, None],
            },
        },
    }
    _check_declared("asr_result", payload)
    interim = msg.asr_result(
        _transcript(final=False, speech_final=False, words=(), channel=1), "r2", "en-US", {}
    )
    assert interim["metadata"] == {
        "asr_info": {"vendor": "xai", "locked": False, "speech_final": False, "channel": 1}
    }


def test_closing_final_lasts_at_least_1_ms() -> None:
    closing = msg.closing_final(1200, 1500)
    assert (closing.text, closing.final, closing.start_ms, closing.duration_ms) == (
        "",
        True,
        1200,
        300,
    )
    assert closing.speech_final and closing.generation == 0 and closing.channel is None
    assert msg.closing_final(1200, 1000).duration_ms == 1
    assert msg.closing_final(1200, None).duration_ms == 1


def test_finalize_end() -> None:
    payload = msg.finalize_end("f1", META)
    assert payload == {"finalize_id": "f1", "metadata": META}
    _check_declared("asr_finalize_end", payload)


def test_errors_are_redacted_and_carry_the_audio_they_lost() -> None:
    e = SessionError(
        fatal=False,
        kind="audio_dropped",
        message=f"lost audio with key {SECRET}",
        vendor_code=None,
        vendor_message=None,
        attempt=0,
        retry_in_s=None,
        dropped_ms=1234.4,
    )
    payload = msg.session_error(e, META, SECRET)
    assert SECRET not in json.dumps(payload)
    assert payload["code"] == msg.NON_FATAL_ERROR and payload["module"] == "asr"
    assert payload["vendor_info"] == {"vendor": "xai", "code": "", "message": ""}
    assert payload["metadata"] == {"session_id": "s-1", "dropped_audio_ms": 1234}
    assert META == {"session_id": "s-1"}  # the caller's metadata is not touched
    _check_declared("error", payload)
    fatal = msg.error(
        fatal=True,
        message="bad config",
        vendor_code="401",
        vendor_message=f"Bearer {SECRET}",
        metadata={},
        api_key=SECRET,
    )
    assert fatal["code"] == msg.FATAL_ERROR and fatal["metadata"] == {}
    assert fatal["vendor_info"]["code"] == "401" and SECRET not in json.dumps(fatal)
    assert list(fatal) == ["id", "module", "code", "message", "vendor_info", "metadata"]


def test_connection_status() -> None:
    payload = msg.connection_status(
        ConnState.CONNECTED,
        ConnState.CONNECTING,
        0,
        f"key {SECRET}",
        url="wss://api.x.ai/v1/stt",
        metadata=META,
        api_key=SECRET,
    )
    assert payload["current"] == "connected" and payload["last"] == "connecting"
    assert SECRET not in payload["message"]
    assert payload["metadata"] == {
        "session_id": "s-1",
        "vendor_metadata": {"url": "wss://api.x.ai/v1/stt"},
    }
    _check_declared("connection_status_changed", payload)


def test_metrics_and_send_metrics() -> None:
    config = parse_config(json.dumps({"params": {"api_key": SECRET, "sample_rate": 16000}}))
    stats = SessionStats(
        bytes_sent=64000,
        audio_ms_sent=2000.0,
        planned_reconnects=2,
        failure_reconnects=1,
        last_reconnect_gap_ms=12.5,
        dropped_ms=40.4,
        connections_opened=4,
        current_state=ConnState.CONNECTED,
        generation=4,
        replayed_ms=100.6,
        drop_episodes=1,
    )
    values = msg.send_metrics(config, 64000, 32000, stats)
    assert values == {
        "actual_send": 2000,
        "actual_send_delta": 1000,
        "vendor_metrics": {
            "planned_reconnects": 2,
            "failure_reconnects": 1,
            "last_reconnect_gap_ms": 12.5,
            "dropped_audio_ms": 40,
            "drop_episodes": 1,
            "replayed_audio_ms": 101,
            "connections_opened": 4,
        },
    }
    payload = msg.metrics(values, META)
    assert payload["metrics"] is values and payload["metadata"] == META
    assert payload["metadata"] is not META
    _check_declared("metrics", payload)


def test_turn_ids_per_channel_and_ttfw_once_per_turn() -> None:
    turn = TurnTracker()
    assert turn.ttfw_ms(0.0) is None  # no audio sent yet
    turn.audio_sent()
    first_audio = turn.first_audio_at
    assert first_audio is not None
    turn.audio_sent()
    assert turn.first_audio_at == first_audio
    assert turn.ttfw_ms(first_audio + 0.25) == 250
    assert turn.ttfw_ms(first_audio + 0.5) is None
    left, right = _transcript(final=False, channel=0), _transcript(final=False, channel=1)
    left_id, right_id = turn.result_id(left), turn.result_id(right)
    assert left_id != right_id and turn.result_id(left) == left_id
    turn.result_sent(left)  # an interim: the turn goes on
    assert turn.result_id(left) == left_id
    turn.result_sent(_transcript(channel=0))  # channel 0's final
    assert turn.result_id(left) != left_id and turn.result_id(right) == right_id
    assert turn.ttfw_reported  # channel 1's turn is still in progress
    turn.result_sent(_transcript(channel=0))
    turn.result_sent(_transcript(channel=1))
    assert turn.first_audio_at is None and not turn.ttfw_reported
    assert turn.results_end_ms == 1000


def test_pending_finalizes_in_arrival_order() -> None:
    finalizes = PendingFinalizes()
    a, b, c = (
        PendingFinalize("same", {}, 0.0),
        PendingFinalize("same", {}, 1.0),
        PendingFinalize("c", {}, 2.0),
    )
    keys = [finalizes.add(p) for p in (a, b, c)]
    assert keys == ["1:same", "2:same", "3:c"]
    assert finalizes.get("2:same") is b and finalizes.get("4:x") is None
    assert finalizes.oldest_unanswered() is a
    b.answered = True
    finalizes.forget_answered()  # b waits behind a
    assert finalizes.all() == [a, b, c]
    a.answered = True
    assert finalizes.oldest_unanswered() is c
    finalizes.forget_answered()
    assert finalizes.all() == [c]
    c.answered = True
    assert finalizes.oldest_unanswered() is None


class _RecordingEnv:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_data(self, data: Any) -> None:
        payload, _ = data.get_property_to_json(None)
        self.sent.append((data.get_name(), json.loads(payload)))


async def test_outbox_sends_messages_in_order_and_other_metrics_when_none_waits() -> None:
    outbox = ten_outbox.Outbox()
    outbox.put("metrics", {"n": 1}, ten_outbox.METRICS)
    outbox.put("asr_result", {"n": 2})
    outbox.put("metrics", {"n": 3}, ten_outbox.MESSAGES)
    outbox.put("asr_finalize_end", {"n": 4})
    outbox.close()
    outbox.put("error", {"n": 5})
    env = _RecordingEnv()
    warnings: list[str] = []
    await asyncio.wait_for(outbox.run(env, warnings.append), timeout=5)  # type: ignore[arg-type]
    assert env.sent == [
        ("asr_result", {"n": 2}),
        ("metrics", {"n": 3}),
        ("asr_finalize_end", {"n": 4}),
        ("error", {"n": 5}),
        ("metrics", {"n": 1}),
    ]
    assert warnings == []


def _result(turn: str, text: str, *, final: bool, channel: int | None = None) -> dict[str, Any]:
    asr_info: dict[str, Any] = {} if channel is None else {"channel": channel}
    return {"id": turn, "text": text, "final": final, "metadata": {"asr_info": asr_info}}


async def test_an_interim_still_queued_is_superseded_by_a_newer_result_of_its_turn() -> None:
    """A burst of partials (seconds of replayed audio heard at once) reaches the graph as
    the newest interim of each turn: every interim carries the utterance so far."""
    outbox = ten_outbox.Outbox()
    outbox.put("asr_result", _result("t1", "a", final=False))
    outbox.put("asr_result", _result("t1", "a b", final=False))
    outbox.put("asr_result", _result("t2", "x", final=False, channel=1))  # another turn
    outbox.put("asr_result", _result("t1", "a b c", final=False))
    outbox.put("asr_result", _result("t1", "a b c d", final=True))
    outbox.put("asr_finalize_end", {"n": 1})
    outbox.close()
    env = _RecordingEnv()
    await asyncio.wait_for(outbox.run(env, [].append), timeout=5)  # type: ignore[arg-type]
    assert [(name, p.get("text")) for name, p in env.sent] == [
        ("asr_result", "x"),
        ("asr_result", "a b c d"),
        ("asr_finalize_end", None),
    ]
    assert outbox.coalesced == 3


async def test_an_interim_already_sent_is_not_held_back() -> None:
    class _SignallingEnv(_RecordingEnv):
        def __init__(self) -> None:
            super().__init__()
            self.sent_one = asyncio.Event()

        async def send_data(self, data: Any) -> None:
            await super().send_data(data)
            self.sent_one.set()

    outbox = ten_outbox.Outbox()
    env = _SignallingEnv()
    runner = asyncio.ensure_future(outbox.run(env, [].append))  # type: ignore[arg-type]
    outbox.put("asr_result", _result("t1", "a", final=False))
    await asyncio.wait_for(env.sent_one.wait(), timeout=5)
    outbox.put("asr_result", _result("t1", "a b", final=False))
    outbox.close()
    await asyncio.wait_for(runner, timeout=5)
    assert [p["text"] for _, p in env.sent] == ["a", "a b"]
