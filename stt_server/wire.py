"""How the server speaks: the live xAI wire by default, older behaviours as options.

The live service (shared/docs/xai-stt-protocol.md, "How the live service
really speaks") restates each utterance in its utterance final, answers
`audio.done` with an empty `transcript.done`, sends empty partials in noise
and answers `finalize`. Older deployments (and this server before it learnt
the live wire) differ in each of these; every difference is one option here,
so a test can draw them one by one. A preset names a whole set:

- "live" (the default): restate, done_text "empty", finalize "answer",
  empty partials, the open utterance flushed at audio.done;
- "legacy": what this server spoke before: tail utterance finals with
  chunk-start times, done_text "whole", finalize refused with a parse error,
  no empty partials, nothing flushed at audio.done.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

WIRES = ("live", "legacy")
UTTERANCE_FINALS = ("restate", "tail")
DONE_TEXT_MODES = ("empty", "whole", "pending")
FINALIZE_MODES = ("answer", "refuse", "ignore")


@dataclass(frozen=True)
class WireOptions:
    """One connection's wire behaviour (see stt_server/README.md).

    utterance_final: "restate" (the utterance final carries every word of the
        utterance again, after a chunk final of its tail; interims and chunk
        finals are timed from the utterance start) or "tail" (it carries only
        the words after the last locked chunk; every partial is timed from its
        chunk's start).
    done_text: transcript.done text: "empty", "whole" (every word of the
        connection) or "pending" (the words no speech_final carried).
    finalize: a {"type": "finalize"} message is "answer"ed (the utterance ends
        now), "refuse"d (a parse-error event, the connection stays open) or
        "ignore"d (never answered).
    empty_partials: with interim_results, empty transcript.partial events
        every 500 ms of non-speech audio between utterances.
    flush_on_done: at audio.done the open utterance ends with its finals (as
        at endpointing) before transcript.done; False: its words only reach
        the done text (lost with done_text "empty").
    """

    utterance_final: str = "restate"
    done_text: str = "empty"
    finalize: str = "answer"
    empty_partials: bool = True
    flush_on_done: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (
            ("utterance_final", UTTERANCE_FINALS),
            ("done_text", DONE_TEXT_MODES),
            ("finalize", FINALIZE_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for name in ("empty_partials", "flush_on_done"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False")

    def replace(self, **overrides: Any) -> WireOptions:
        """A copy with the given options changed; None leaves one as it is."""
        given = {name: value for name, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **given) if given else self


OPTION_NAMES = tuple(field.name for field in dataclasses.fields(WireOptions))

PRESETS: dict[str, WireOptions] = {
    "live": WireOptions(),
    "legacy": WireOptions(
        utterance_final="tail",
        done_text="whole",
        finalize="refuse",
        empty_partials=False,
        flush_on_done=False,
    ),
}


def preset(name: str) -> WireOptions:
    """The options of a named wire ("live" or "legacy")."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"wire must be one of {WIRES}, not {name!r}") from None
