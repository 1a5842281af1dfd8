"""Prints what an ASR node says, for a person watching or for a script.

Human mode: interim text updates in place (on a terminal), each final gets a
line with its start time, reconnects and errors get a line, and a summary
closes the run. `json: true` prints one JSON object per asr_result instead.
When the finalize sent at the end of the input is answered (or a fatal error
arrives) the printer stops the graph.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ten_runtime import (
    AsyncExtension,
    AsyncTenEnv,
    Cmd,
    CmdResult,
    Data,
    Loc,
    StatusCode,
    StopGraphCmd,
)

FATAL_ERROR = -1000


def _stdout() -> Any:
    """The process's own stdout: a host that silences stdout for a while (the main
    job does, while the runtime announces the addons it loads) must not swallow
    results that arrive meanwhile."""
    return sys.__stdout__ or sys.stdout


class TranscriptPrinter(AsyncExtension):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._json = False
        self._interim = True
        self._stop_on_finalize_end = True
        self._summary_path = ""
        self._tty = sys.stdout.isatty()
        self._interim_shown = False
        self._finals: list[str] = []
        self._errors: list[dict[str, Any]] = []
        self._fatal = False
        self._metrics: dict[str, Any] = {}
        self._connects = 0
        self._error_since_connect = False
        self._audio_ms = 0
        self._dropped_ms = 0  # audio the ASR node reported lost
        self._stopping = False

    async def on_init(self, ten_env: AsyncTenEnv) -> None:
        for name in ("json", "interim", "stop_on_finalize_end"):
            value, err = await ten_env.get_property_bool(name)
            if err is None:
                setattr(self, f"_{name}", value)
        path, err = await ten_env.get_property_string("summary_path")
        self._summary_path = path if err is None and path else ""

    async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
        await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd))

    async def on_data(self, ten_env: AsyncTenEnv, data: Data) -> None:
        text, err = data.get_property_to_json(None)
        payload: dict[str, Any] = json.loads(text) if err is None and text else {}
        name = data.get_name()
        if name == "asr_result":
            self._on_result(payload)
        elif name == "error":
            self._on_error(payload)
            if payload.get("code") == FATAL_ERROR:
                self._fatal = True
                await self._finish(ten_env)
        elif name == "source_error":
            self._line(f"error: {payload.get('message', '')}")
            self._errors.append(payload)
            self._fatal = True
            await self._finish(ten_env)
        elif name == "metrics":
            self._on_metrics(payload.get("metrics", {}))
        elif name == "connection_status_changed":
            self._on_status(payload)
        elif name == "asr_finalize_end":
            audio_ms = (payload.get("metadata") or {}).get("audio_ms")
            if isinstance(audio_ms, int):
                self._audio_ms = max(self._audio_ms, audio_ms)
            if self._stop_on_finalize_end:
                await self._finish(ten_env)

    def _on_result(self, r: dict[str, Any]) -> None:
        if self._json:
            print(json.dumps(r, ensure_ascii=False), file=_stdout(), flush=True)
            # An empty final only closes a turn whose text was already final.
            if r.get("final") and r.get("text"):
                self._finals.append(r.get("text", ""))
            return
        text = str(r.get("text", "")).strip()
        if r.get("final"):
            if text:
                self._finals.append(text)
                start_s = int(r.get("start_ms", 0)) / 1000
                self._line(f"[{start_s:7.2f}s] {text}")
            self._audio_ms = max(
                self._audio_ms, int(r.get("start_ms", 0)) + int(r.get("duration_ms", 0))
            )
        elif self._interim and self._tty and text:
            _stdout().write(f"\r\x1b[K  ... {text}")
            _stdout().flush()
            self._interim_shown = True

    def _on_error(self, e: dict[str, Any]) -> None:
        self._errors.append(e)
        self._error_since_connect = True
        dropped = (e.get("metadata") or {}).get("dropped_audio_ms")
        if isinstance(dropped, (int, float)):
            self._dropped_ms += int(dropped)
        # The message says what happens next ("retrying in 1.2 s" when a retry is).
        kind = "fatal error" if e.get("code") == FATAL_ERROR else "error"
        vendor = e.get("vendor_info") or {}
        detail = (
            f" [vendor {vendor.get('code')}: {vendor.get('message')}]" if vendor.get("code") else ""
        )
        self._line(f"{kind}: {e.get('message', '')}{detail}", stream=sys.stderr)

    def _on_metrics(self, metrics: dict[str, Any]) -> None:
        for key in ("ttfw", "ttlw"):
            if key in metrics and key not in self._metrics:
                self._metrics[key] = metrics[key]
        if "actual_send" in metrics:
            self._metrics["actual_send"] = metrics["actual_send"]
        if "vendor_metrics" in metrics:
            self._metrics["vendor_metrics"] = metrics["vendor_metrics"]
            dropped = metrics["vendor_metrics"].get("dropped_audio_ms")
            if isinstance(dropped, (int, float)):
                self._dropped_ms = max(self._dropped_ms, int(dropped))

    def _on_status(self, s: dict[str, Any]) -> None:
        if s.get("current") == "connected":
            self._connects += 1
            # A new connection after each finalize is xAI's normal rhythm; only a
            # reconnect that follows an error is news to the person watching.
            if self._error_since_connect and not self._json:
                self._line("reconnected to the recognizer", stream=sys.stderr)
            self._error_since_connect = False
        elif (
            s.get("current") == "disconnected"
            and s.get("code") not in (None, 0, 1000)
            and (not self._json)
        ):
            self._line(f"disconnected: {s.get('message', '')}", stream=sys.stderr)

    def _line(self, text: str, stream: Any = None) -> None:
        if self._interim_shown:
            _stdout().write("\r\x1b[K")
            _stdout().flush()
            self._interim_shown = False
        print(text, file=stream or _stdout(), flush=True)

    def summary(self) -> dict[str, Any]:
        return {
            "finals": len(self._finals),
            "text": " ".join(self._finals),
            "audio_ms": max(self._audio_ms, self._metrics.get("actual_send", 0)),
            "ttfw_ms": self._metrics.get("ttfw"),
            "ttlw_ms": self._metrics.get("ttlw"),
            "connections": self._connects,
            "errors": len(self._errors),
            "dropped_ms": self._dropped_ms,
            "fatal": self._fatal,
        }

    async def _finish(self, ten_env: AsyncTenEnv) -> None:
        if self._stopping:
            return
        self._stopping = True
        summary = self.summary()
        if not self._json:

            def ms(v: Any) -> str:
                return "-" if v is None else f"{v} ms"

            self._line(
                f"-- {summary['audio_ms'] / 1000:.1f} s of audio, {summary['finals']} final(s), "
                f"ttfw {ms(summary['ttfw_ms'])}, ttlw {ms(summary['ttlw_ms'])}, "
                f"{summary['connections']} connection(s), {summary['errors']} error(s)"
                + (
                    f", {summary['dropped_ms'] / 1000:.1f} s of audio dropped"
                    if summary["dropped_ms"]
                    else ""
                )
            )
        if self._summary_path:
            await asyncio.to_thread(_write_json, self._summary_path, summary)
        # Ask the app to stop this graph: the run is over.
        stop = StopGraphCmd.create()
        stop.set_dests([Loc("")])
        await ten_env.send_cmd(stop)


def _write_json(path: str, value: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)
