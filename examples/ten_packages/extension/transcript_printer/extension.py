"""Prints what an ASR node says, for a person watching or for a script.

Human mode: interim text updates in place (on a terminal), each final gets a
line with its start time, reconnects and errors get a line, and a summary
closes the run. `json: true` prints one JSON object per asr_result instead,
then one summary record. When the finalize sent at the end of the input is
answered (or a fatal error arrives) the printer stops the graph.

With `progress_total_ms` (the input's length) and stderr a terminal, a
progress bar (tqdm) on stderr shows the audio transcribed and sent against
that length, the interim text at its end; every line is printed above it.
Whether a stream is a terminal is asked of the process's own streams
(sys.__stdout__, sys.__stderr__): a host that redirects sys.stdout for a
while (the main job does, while the runtime loads the addons) must not make
the answer "no" for the whole run.
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


# The interim text shown at the end of the progress bar: its last characters.
BAR_TEXT_CHARS = 40


def _stdout() -> Any:
    """The process's own stdout: a host that silences stdout for a while (the main
    job does, while the runtime announces the addons it loads) must not swallow
    results that arrive meanwhile."""
    return sys.__stdout__ or sys.stdout


def _stderr() -> Any:
    return sys.__stderr__ or sys.stderr


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real stream
        return False


class TranscriptPrinter(AsyncExtension):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._json = False
        self._interim = True
        self._stop_on_finalize_end = True
        self._summary_path = ""
        self._tty = False  # stdout is a terminal (decided in on_init)
        self._interim_shown = False
        self._progress_total_ms = 0
        self._bar: Any = None  # the tqdm progress bar, while it is shown
        self._sent_ms = 0  # audio sent to the recognizer (its actual_send metric)
        self._heard_ms = 0  # the end of the latest result: audio transcribed
        self._live_text = ""  # the interim text shown at the end of the bar
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
        total, err = await ten_env.get_property_int("progress_total_ms")
        self._progress_total_ms = total if err is None and total > 0 else 0
        self._tty = _is_terminal(_stdout())
        if self._progress_total_ms and _is_terminal(_stderr()):
            self._bar = _progress_bar(self._progress_total_ms)

    async def on_stop(self, ten_env: AsyncTenEnv) -> None:
        self._close_bar()  # a run stopped from outside (Ctrl-C, a time limit)

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
        end_ms = int(r.get("start_ms", 0) or 0) + int(r.get("duration_ms", 0) or 0)
        self._heard_ms = max(self._heard_ms, end_ms)
        if self._json:
            self._line(json.dumps(r, ensure_ascii=False))
            # An empty final only closes a turn whose text was already final.
            if r.get("final") and r.get("text"):
                self._finals.append(r.get("text", ""))
            self._progress()
            return
        text = str(r.get("text", "")).strip()
        if r.get("final"):
            self._progress(heard_text="")  # the final replaces the interim text
            if text:
                self._finals.append(text)
                start_s = int(r.get("start_ms", 0)) / 1000
                self._line(f"[{start_s:7.2f}s] {text}")
            self._audio_ms = max(
                self._audio_ms, int(r.get("start_ms", 0)) + int(r.get("duration_ms", 0))
            )
        elif self._interim and text and self._bar is not None:
            self._progress(heard_text=text)  # the bar's line is the live one
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
            if isinstance(metrics["actual_send"], (int, float)):
                self._sent_ms = max(self._sent_ms, int(metrics["actual_send"]))
                self._progress()
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
        if self._bar is not None:
            # Above the bar: clear it, print, draw it again below the new line.
            self._bar.clear()
            print(text, file=stream or _stdout(), flush=True)
            self._bar.refresh()
            return
        print(text, file=stream or _stdout(), flush=True)

    def _progress(self, heard_text: str | None = None) -> None:
        """Move the bar: audio transcribed (the end of the latest result) and sent."""
        bar = self._bar
        if bar is None:
            return
        total_s = self._progress_total_ms / 1000
        heard_s = min(self._heard_ms / 1000, total_s)
        if heard_text is not None:
            self._live_text = heard_text
        tail = self._live_text
        if len(tail) > BAR_TEXT_CHARS:
            tail = "..." + tail[-BAR_TEXT_CHARS:]
        # Audio transcribed was sent, whatever the latest (periodic) metric says.
        sent_s = min(max(self._sent_ms / 1000, heard_s), total_s)
        bar.set_postfix_str(f"sent {sent_s:.1f} s" + (f"  {tail}" if tail else ""), refresh=False)
        bar.update(heard_s - bar.n)  # redrawn at most every bar.mininterval
        if heard_text is not None:
            bar.refresh()  # live text shows at once

    def _close_bar(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()  # leave=False: the bar's line is erased

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
        self._close_bar()
        summary = self.summary()
        if self._json:
            self._line(json.dumps({"summary": summary}, ensure_ascii=False))
        else:

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


def _progress_bar(total_ms: int) -> Any:
    """A tqdm bar on the process's stderr, or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=round(total_ms / 1000, 3),
        file=_stderr(),
        bar_format="{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s transcribed "
        "[{elapsed}<{remaining}]{postfix}",
        dynamic_ncols=True,
        leave=False,
        mininterval=0.2,
    )


def _write_json(path: str, value: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)
