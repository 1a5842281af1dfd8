"""Helpers for the integration suites (no tests here).

Everything a test touches on the extension side goes through the
`ten_runtime` contract API (via tests/asr_harness.py); the local server is
observed through its in-process records. This module adds what the shared
harness does not have:

- `ItTester`: an `AsrTester` that remembers every audio byte it sent, when
  each finalize went out, and when it asked the runtime to stop;
- `run_it(...)`: runs one tester and checks that the graph stops promptly;
- marker bookkeeping: what was sent, what each server connection received,
  and the checks built on them (exactly once, at least once, exact times).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from asr_harness import ADDON, AsrTester, ServerThread, load_config

from stt_server.marker import decode, generate
from ten_runtime import TenError, TenErrorCode

SESSION_ID = "it-session-7"
METADATA = {"session_id": SESSION_ID}
FRAME_BYTES = 320  # one 10 ms marker frame at 16 kHz, 16-bit mono
FRAME_MS = 10
FATAL = -1000
NON_FATAL = 1000
# run() must return this soon after stop_test() (teardown of the graph).
STOP_BOUND_S = 3.0
AUDIO_DIR = Path(__file__).resolve().parent.parent / "stt_server" / "audio"

ItScript = Callable[["ItTester"], Awaitable[None]]

# The fast-fault settings every marker test runs with, and the promise the
# extension makes: asr_finalize_end within finalize_timeout_ms + 1 s.
FAST_CONFIG = load_config("fast_faults")
FINALIZE_BOUND_S = FAST_CONFIG["finalize_timeout_ms"] / 1000 + 1.0


# ---------------------------------------------------------------------- servers


def marker_server(**kwargs: Any) -> ServerThread:
    """A marker-recogniser server on its own loop thread (use as a context manager).

    No keepalive pings: nothing on the wire but what the test provokes."""
    kwargs.setdefault("recognizer", "marker")
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("close_timeout", 0.5)
    return ServerThread(**kwargs)


def fast_props(url: str, **overrides: Any) -> dict[str, Any]:
    """tests/configs/property_fast_faults.json pointed at `url`."""
    params = {"base_url": url, **overrides.pop("params", {})}
    return load_config("fast_faults", params=params, **overrides)


def snapshot(srv: ServerThread) -> list[Any]:
    """The server's connection records (read on the server's loop)."""
    return srv.connections


def wait_all_ended(srv: ServerThread, timeout: float = 5.0) -> list[Any]:
    """Nothing is left behind: the server saw every connection end, and (where
    the kernel's socket table is readable) no TCP socket on the server's port
    is open any more, on either side. A connection the server stopped reading
    for good is judged by the socket table alone."""
    records = snapshot(srv)
    for record in records:
        fault = record.fault
        if fault is not None and fault.stop_reading_after_bytes is not None:
            if fault.stop_reading_for_ms is None and record.end is None:
                # The server never reads this socket again (permanent back-pressure), so
                # it cannot see the client go: only the kernel's socket table can.
                continue
        try:
            srv.call(record.wait_ended(timeout=timeout), timeout=timeout + 1)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(
                f"server connection {record.number} still open {timeout} s after the run "
                f"(opened={record.opened}, end={record.end}, "
                f"sent {[e.get('type', e.get('_malformed')) for e in record.events_sent]}, "
                f"sockets {tcp_sockets(srv.server.port)}; server tasks: {server_tasks(srv)})"
            ) from None
    assert srv.server is not None
    port = srv.server.port
    deadline = time.monotonic() + timeout
    while True:
        open_sockets = [s for s in tcp_sockets(port) if s[0] not in _GONE_STATES]
        if not open_sockets:
            return snapshot(srv)
        if time.monotonic() > deadline:
            raise AssertionError(f"TCP sockets still open on port {port}: {open_sockets}")
        time.sleep(0.02)


def server_tasks(srv: ServerThread) -> list[str]:
    """Where the server's tasks are (for a failure message)."""

    async def collect() -> list[str]:
        out = []
        for task in asyncio.all_tasks():
            stack = task.get_stack(limit=8)
            where = " < ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(stack))
            out.append(f"{task.get_name()}: {where}")
        return out

    return srv.call(collect())


# ---------------------------------------------------------------------- marker audio


def marker(pattern: list[tuple[bool, int]], start_index: int = 0) -> bytes:
    return generate(pattern, sample_rate=16000, start_index=start_index)


def turn_audio(start_index: int, speech: int = 60, silence: int = 10) -> bytes:
    """One turn: `speech` speech frames then `silence` silence frames."""
    return marker([(True, speech), (False, silence)], start_index)


def speech_indices_of(pcm: bytes) -> list[int]:
    return [f.index for f in decode(pcm) if f.ok and f.is_speech and f.index is not None]


def indices_of(pcm: bytes) -> list[int]:
    return [f.index for f in decode(pcm) if f.ok and f.index is not None]


def positions_ms(sent: bytes) -> dict[int, int]:
    """Marker index -> where that frame starts in the audio sent (ms)."""
    frames = decode(sent)
    assert all(f.ok for f in frames), "the tester sent malformed marker audio"
    return {f.index: f.byte_offset // 32 for f in frames if f.index is not None}


def received_per_connection(records: Iterable[Any]) -> list[list[int]]:
    return [list(r.marker_indices) for r in records]


def assert_exactly_once(sent_indices: list[int], records: list[Any]) -> None:
    got = [i for per in received_per_connection(records) for i in per]
    if got != sent_indices:
        missing = sorted(set(sent_indices) - set(got))
        extra = [i for i in got if i not in set(sent_indices)]
        dups = sorted({i for i in got if got.count(i) > 1})
        raise AssertionError(
            f"server received {len(got)} frames, sent {len(sent_indices)}: "
            f"missing {missing[:20]}, unexpected {extra[:20]}, duplicated {dups[:20]}; "
            f"per connection: {[(p[:1], p[-1:], len(p)) for p in received_per_connection(records)]}"
        )
    assert all(r.marker_errors == 0 for r in records), [r.marker_errors for r in records]


# ---------------------------------------------------------------------- results


def finals(tester: AsrTester) -> list[dict[str, Any]]:
    """The final results that carry text (the transcript); empty finals only close a
    finalized turn whose text was already final."""
    return [m for m in tester.messages("asr_result") if m.get("final") and m.get("text")]


def all_finals(tester: AsrTester) -> list[dict[str, Any]]:
    """Every final result, the empty ones that close a turn included."""
    return [m for m in tester.messages("asr_result") if m.get("final")]


def final_indices(results: Iterable[dict[str, Any]]) -> list[int]:
    return [int(w) for r in results for w in r["text"].split()]


def assert_word_times(results: Iterable[dict[str, Any]], sent: bytes) -> None:
    """Each marker word starts within one 10 ms frame of where its frame is in
    the audio sent, and lasts about one frame."""
    where = positions_ms(sent)
    for result in results:
        for word in result["words"]:
            index = int(word["word"])
            assert index in where, f"word {index} was never sent"
            expected = where[index]
            assert abs(word["start_ms"] - expected) <= FRAME_MS, (
                f"word {index}: start_ms {word['start_ms']}, its frame is at {expected} ms"
            )
            assert 0 <= word["duration_ms"] <= 2 * FRAME_MS, word


def assert_finals_ordered(results: list[dict[str, Any]]) -> None:
    """Ints, start_ms >= 0, duration_ms > 0, and finals never overlap."""
    spans = []
    for r in results:
        assert isinstance(r["start_ms"], int) and isinstance(r["duration_ms"], int), r
        assert r["start_ms"] >= 0 and r["duration_ms"] > 0, r
        spans.append((r["start_ms"], r["start_ms"] + r["duration_ms"]))
    spans.sort()
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        assert e1 <= s2, f"finals overlap: [{s1}, {e1}) and [{s2}, {e2})"


STATES = ("connecting", "connected", "disconnected")


def legal(last: str, current: str) -> bool:
    if last == current:
        return False
    if current == "disconnected":
        return True
    if current == "connecting":
        return last in ("disconnected", "connected")
    return last == "connecting"


def assert_status_chain(statuses: list[dict[str, Any]], secrets: Iterable[str] = ()) -> None:
    """connection_status_changed: a chain from disconnected, every step legal,
    vendor xai, and no secret in the URL or message."""
    last = "disconnected"
    for s in statuses:
        assert s["module"] == "asr" and s["vendor_info"]["vendor"] == "xai", s
        assert s["current"] in STATES and s["last"] in STATES, s
        assert s["last"] == last, f"status chain broken: {s['last']!r} after {last!r}"
        assert legal(s["last"], s["current"]), f"illegal {s['last']} -> {s['current']}"
        url = s["metadata"]["vendor_metadata"]["url"]
        assert isinstance(url, str) and url, s
        for secret in secrets:
            assert secret not in url and secret not in s["message"], s
        assert "api_key" not in url and "authorization" not in url.lower(), url
        last = s["current"]


# ---------------------------------------------------------------------- the tester


class ItTester(AsrTester):
    """AsrTester that records what it sent and when it asked to stop."""

    def __init__(self, script: ItScript, script_timeout_s: float) -> None:
        super().__init__(script, script_timeout_s)  # type: ignore[arg-type]
        self.sent_audio = bytearray()
        self.finalize_sent_at: dict[str, float] = {}
        self.stop_requested_at: float | None = None
        self.failure: str | None = None

    async def _run_script(self) -> None:
        assert self.env is not None
        failure: str | None = None
        try:
            await asyncio.wait_for(self.script(self), self.script_timeout_s)
        except AssertionError as exc:
            failure = f"assertion failed: {exc}\n{traceback.format_exc()}"
        except asyncio.TimeoutError:
            failure = f"script timed out after {self.script_timeout_s} s; {self.summary()}"
        except Exception as exc:
            failure = f"script raised {exc!r}\n{traceback.format_exc()}"
        self.failure = failure
        self.stop_requested_at = time.monotonic()
        if failure is None:
            self.env.stop_test()
        else:
            self.env.stop_test(TenError.create(TenErrorCode.ErrorCodeGeneric, failure))

    async def send_audio(  # type: ignore[override]
        self,
        pcm: bytes,
        *,
        chunk_bytes: int = 3200,
        metadata: dict[str, Any] | None = None,
        pace_s: float = 0.0,
        sample_rate: int = 16000,
    ) -> None:
        await super().send_audio(
            pcm,
            chunk_bytes=chunk_bytes,
            metadata=metadata or METADATA,
            pace_s=pace_s,
            sample_rate=sample_rate,
        )
        self.sent_audio.extend(pcm)

    async def finalize(
        self,
        finalize_id: str,
        *,
        bound_s: float,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send asr_finalize and wait for its asr_finalize_end, which must come
        within `bound_s` of the send and, unless the extension gave up (a FATAL
        error), after a final result: the turn's last text, or an empty final
        when its text was already final (TEN's ASR extensions do the same)."""
        start = self.mark()
        sent_at = time.monotonic()
        self.finalize_sent_at[finalize_id] = sent_at
        await self.send_finalize(finalize_id, metadata or METADATA)
        end = await self.wait_for(
            "asr_finalize_end",
            lambda p: p.get("finalize_id") == finalize_id,
            timeout=bound_s + 2,
            start=start,
        )
        at = self.arrival_of("asr_finalize_end", finalize_id)
        assert at - sent_at <= bound_s, (
            f"asr_finalize_end {finalize_id!r} came {at - sent_at:.2f} s after the finalize "
            f"(bound {bound_s} s)"
        )
        end_at = next(
            i
            for i, m in enumerate(self.received[start:], start)
            if m.name == "asr_finalize_end" and m.payload.get("finalize_id") == finalize_id
        )
        gave_up = any(
            m.name == "error" and m.payload.get("code") == FATAL for m in self.received[:end_at]
        )
        if not gave_up:
            between = self.received[start:end_at]
            assert any(m.name == "asr_result" and m.payload.get("final") for m in between), (
                f"no final asr_result between asr_finalize {finalize_id!r} and its end"
            )
        return end

    def arrival_of(self, name: str, finalize_id: str) -> float:
        for m in self.received:
            if m.name == name and m.payload.get("finalize_id") == finalize_id:
                return m.at
        raise AssertionError(f"no {name} for {finalize_id!r}")

    def position(self, name: str, predicate: Callable[[dict[str, Any]], bool]) -> int:
        for i, m in enumerate(self.received):
            if m.name == name and predicate(m.payload):
                return i
        raise AssertionError(f"no {name} matching")

    def errors(self) -> list[dict[str, Any]]:
        return self.messages("error")

    def statuses(self) -> list[dict[str, Any]]:
        return self.messages("connection_status_changed")


def run_it(
    properties: dict[str, Any],
    script: ItScript,
    *,
    timeout_s: float = 30.0,
    stop_bound_s: float = STOP_BOUND_S,
) -> ItTester:
    """Run the extension under the tester with `script`; fail with the script's
    message; then check that run() returned within `stop_bound_s` of stop_test."""
    tester = ItTester(script, timeout_s)
    tester.set_test_mode_single(ADDON, json.dumps(properties))
    tester.set_timeout(int((timeout_s + 15) * 1_000_000))
    err = tester.run()
    returned_at = time.monotonic()
    if err is not None:
        raise AssertionError(err.error_message())
    assert tester.stop_requested_at is not None, "the script never asked to stop"
    took = returned_at - tester.stop_requested_at
    assert took < stop_bound_s, (
        f"run() returned {took:.2f} s after stop_test (bound {stop_bound_s})"
    )
    return tester


# ---------------------------------------------------------------------- sockets

_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


_GONE_STATES = ("LISTEN", "TIME_WAIT", "CLOSE")


def tcp_sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, local port, remote port) of every TCP socket on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, state = parts[1], parts[2], parts[3]
            lport, rport = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
            if port in (lport, rport):
                found.append((_TCP_STATES.get(state, state), lport, rport))
    return found
