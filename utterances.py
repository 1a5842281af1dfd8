"""One connection's results, utterance by utterance: one final per utterance. No I/O.

xAI speaks in three kinds of partial (shared/docs/xai-stt-protocol.md, "How
the live service really speaks"):

- an interim (`is_final=false`): text after the locked point, still moving;
- a chunk final (`is_final=true, speech_final=false`): a chunk is *locked*:
  the vendor will not transcribe its audio again. It is progress, not a
  final: the live service restates it in the utterance final;
- an utterance final (`speech_final=true`): the utterance is over. The live
  service restates every word of the utterance in it, often re-punctuated;
  older deployments (and this project's first model of xAI) sent only the
  words after the last chunk.

`ResultAssembler` turns them into results that a listener can trust: one
final per utterance, every word once, finals that never overlap in time.

- Interim results carry the utterance so far: the locked chunks and the
  newest interim.
- The final of an utterance is its utterance final. Restatement is told from
  a tail by time, not by comparing punctuated text: a locked chunk whose
  middle lies after the start of the utterance final is restated by it
  (`_restated`); the chunks before that start stay, and the final is them
  and the utterance final's words. So both a restating vendor and a
  tail-only one give every word exactly once.
- `transcript.done` adds only what no final carried: it may be empty (the
  live service), repeat the whole connection's text, or hold the pending
  tail. With word times it is read by time; without, by words compared
  without case or punctuation.
- A connection that ends without its done (`salvage`): the locked chunks are
  the best transcript there will ever be of their audio (which is not sent
  again: they acknowledged it), and the newest interim's words before the
  replayed audio join them, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .protocol import TranscriptDone, TranscriptPartial, WordTiming


@dataclass(frozen=True)
class VendorResult:
    """A result on the connection's own timeline (seconds); the session maps it."""

    text: str
    final: bool
    speech_final: bool
    start_s: float
    end_s: float
    words: tuple[WordTiming, ...]
    channel: int | None
    # The vendor's confidence that the speaker's turn is over (smart_turn), if given.
    end_of_turn_confidence: float | None = None


@dataclass(frozen=True)
class _Chunk:
    """Text the vendor locked and the audio it covers (connection seconds)."""

    text: str
    words: tuple[WordTiming, ...]
    start_s: float
    end_s: float

    @property
    def middle_s(self) -> float:
        if self.words:
            return (self.words[0].start_s + self.words[-1].end_s) / 2
        return (self.start_s + self.end_s) / 2


@dataclass
class _Channel:
    """One channel's utterance in progress and what it already delivered as final."""

    delivered: list[str] = field(default_factory=list)  # comparable tokens of every final
    final_end_s: float = 0.0  # end of the latest final: no final starts before it
    locked: list[_Chunk] = field(default_factory=list)  # chunk finals not yet delivered
    locked_end_s: float = 0.0  # end of the audio the vendor locked
    pending: TranscriptPartial | None = None  # the newest interim since the last lock


def comparable(text: str) -> list[str]:
    """Words as a restatement may rewrite them: no case, no punctuation around them."""
    out: list[str] = []
    for token in text.split():
        word = "".join(ch for ch in token.lower() if ch.isalnum() or ch == "'").strip("'")
        if word:
            out.append(word)
    return out


def _clip_words(words: tuple[WordTiming, ...], floor_s: float) -> tuple[WordTiming, ...]:
    return tuple(
        w if w.start_s >= floor_s else WordTiming(w.text, floor_s, max(floor_s, w.end_s))
        for w in words
    )


def _join(*texts: str) -> str:
    return " ".join(t for t in texts if t)


def _restated(locked: list[_Chunk], start_s: float) -> int:
    """How many locked chunks stand before a final that starts at `start_s`: the
    rest lie after it and are restated by it."""
    kept = 0
    for chunk in locked:
        if chunk.middle_s >= start_s:
            break
        kept += 1
    return kept


class ResultAssembler:
    """Partials and done events of one connection -> results: one final per utterance."""

    def __init__(self, *, multichannel: bool = False) -> None:
        self._multichannel = multichannel
        self._channels: dict[int | None, _Channel] = {}

    def _channel(self, channel: int | None) -> tuple[int | None, _Channel]:
        # Mono: the done event says channel 0 while partials say nothing; one channel.
        key = channel if self._multichannel else None
        state = self._channels.get(key)
        if state is None:
            state = self._channels[key] = _Channel()
        return key, state

    @property
    def holds_text(self) -> bool:
        """Some text was locked or heard that no final has delivered yet."""
        return any(c.locked or (c.pending is not None) for c in self._channels.values())

    # ---------------------------------------------------------------- partials

    def on_partial(self, p: TranscriptPartial) -> VendorResult | None:
        key, ch = self._channel(p.channel)
        end_s = p.start_s + p.duration_s
        if not p.is_final:
            if not p.text:
                # Noise: the vendor hears nothing (and no longer what it heard before).
                ch.pending = None
                return None
            ch.pending = p
            return self._interim(key, ch, p)
        if not p.speech_final:
            return self._lock(key, ch, p, end_s)
        return self._utterance_final(key, ch, p, end_s)

    def _utterance_start_s(self, ch: _Channel, fallback_s: float) -> float:
        start = ch.locked[0].start_s if ch.locked else fallback_s
        return max(start, ch.final_end_s)

    def _interim(self, key: int | None, ch: _Channel, p: TranscriptPartial) -> VendorResult:
        locked = ch.locked[: _restated(ch.locked, p.words[0].start_s)] if p.words else ch.locked
        start = self._utterance_start_s(ch, p.start_s)
        end = max(start, p.start_s + p.duration_s, ch.locked_end_s)
        words = tuple(w for c in locked for w in c.words) + p.words
        text = _join(*(c.text for c in locked), p.text)
        return VendorResult(
            text, False, False, start, end, _clip_words(words, ch.final_end_s), key,
            p.end_of_turn_confidence,
        )  # fmt: skip

    def _lock(
        self, key: int | None, ch: _Channel, p: TranscriptPartial, end_s: float
    ) -> VendorResult | None:
        # A live chunk final starts where the utterance does; its own audio begins where
        # the previous lock ended.
        start = max(p.start_s, ch.locked_end_s, ch.final_end_s)
        end = max(start, end_s)
        ch.pending = None
        ch.locked_end_s = max(ch.locked_end_s, end)
        if not p.text:
            return None  # noise locked: nothing to show
        ch.locked.append(_Chunk(p.text, _clip_words(p.words, ch.final_end_s), start, end))
        # Progress: the utterance so far, as an interim.
        words = tuple(w for c in ch.locked for w in c.words)
        text = _join(*(c.text for c in ch.locked))
        first = self._utterance_start_s(ch, start)
        return VendorResult(
            text, False, False, first, max(first, ch.locked_end_s), words, key,
            p.end_of_turn_confidence,
        )  # fmt: skip

    def _utterance_final(
        self, key: int | None, ch: _Channel, p: TranscriptPartial, end_s: float
    ) -> VendorResult | None:
        first_s = p.words[0].start_s if p.words else p.start_s
        kept = ch.locked[: _restated(ch.locked, first_s)] if p.text else ch.locked
        text = _join(*(c.text for c in kept), p.text)
        words = tuple(w for c in kept for w in c.words) + (p.words if p.text else ())
        start = min([c.start_s for c in kept[:1]] + [p.start_s])
        return self._deliver(
            key, ch, text, words, start, max(end_s, ch.locked_end_s), p.end_of_turn_confidence
        )

    def _deliver(
        self,
        key: int | None,
        ch: _Channel,
        text: str,
        words: tuple[WordTiming, ...],
        start_s: float,
        end_s: float,
        end_of_turn_confidence: float | None = None,
        *,
        speech_final: bool = True,
    ) -> VendorResult | None:
        """The utterance is over: its one final (None when it said nothing)."""
        ch.locked = []
        ch.pending = None
        if not text:
            return None
        start = max(start_s, ch.final_end_s)
        end = max(start, end_s)
        ch.final_end_s = end
        ch.locked_end_s = max(ch.locked_end_s, end)
        ch.delivered.extend(comparable(text))
        return VendorResult(
            text, True, speech_final, start, end, _clip_words(words, start), key,
            end_of_turn_confidence,
        )  # fmt: skip

    # ---------------------------------------------------------------- done

    def on_done(self, d: TranscriptDone) -> VendorResult | None:
        """The answer to audio.done: only what no final carried becomes the last final."""
        key, ch = self._channel(d.channel)
        pending = ch.pending
        locked = ch.locked
        start = min([c.start_s for c in locked[:1]] + ([pending.start_s] if pending else []),
                    default=ch.final_end_s)  # fmt: skip
        end = max([ch.locked_end_s] + ([pending.start_s + pending.duration_s] if pending else []))
        if d.duration_s is not None:
            end = max(end, d.duration_s)
        fresh = [w for w in d.words if (w.start_s + w.end_s) / 2 > ch.final_end_s]
        if d.words:
            # Timed: the done's words after the latest final are the news; locked chunks
            # before them stay.
            if not fresh:
                return self._leftovers(key, ch, start, end)
            kept = locked[: _restated(locked, fresh[0].start_s)]
            text = _join(*(c.text for c in kept), " ".join(w.text for w in fresh))
            words = tuple(w for c in kept for w in c.words) + tuple(fresh)
            return self._deliver(key, ch, text, words, start, end)
        news = self._untimed_news(ch, d.text)
        if not news:
            return self._leftovers(key, ch, start, end)
        locked_words = comparable(_join(*(c.text for c in locked)))
        news_words = comparable(news)
        if news_words[: len(locked_words)] == locked_words:
            text, kept = news, []  # it restates the locked chunks
        elif locked_words[: len(news_words)] == news_words:
            return self._leftovers(key, ch, start, end)  # it only repeats locked text
        else:
            text, kept = _join(*(c.text for c in locked), news), locked
        words = tuple(w for c in locked for w in c.words)
        after_locked = news_words[len(locked_words) :] if not kept else news_words
        pending_words = comparable(" ".join(w.text for w in pending.words)) if pending else []
        if (
            pending is not None
            and pending_words
            and after_locked[: len(pending_words)] == pending_words
        ):
            # The interim's word times are exact for the words it shares with the news.
            words += pending.words
        return self._deliver(key, ch, text, words, start, end)

    def _untimed_news(self, ch: _Channel, text: str) -> str:
        """The part of an untimed done text that no final carried."""
        raw = text.split()
        done_words = comparable(text)
        if not done_words:
            return ""
        delivered = ch.delivered
        if done_words[: len(delivered)] == delivered:
            # The whole connection's text: what follows the delivered words is new.
            skip = len(delivered)
            for index, token in enumerate(raw):
                if skip == 0:
                    return " ".join(raw[index:])
                skip -= len(comparable(token))
            return ""
        if delivered[: len(done_words)] == done_words or _ends_with(delivered, done_words):
            return ""  # it only repeats what was delivered
        return text  # the pending part alone

    def _leftovers(
        self, key: int | None, ch: _Channel, start: float, end: float
    ) -> VendorResult | None:
        """The done says nothing new: the locked chunks and the newest interim are all
        there is of the utterance's end."""
        pending = ch.pending
        text = _join(*(c.text for c in ch.locked), pending.text if pending else "")
        words = tuple(w for c in ch.locked for w in c.words) + (pending.words if pending else ())
        return self._deliver(key, ch, text, words, start, end)

    # ---------------------------------------------------------------- a dead connection

    def salvage(self, is_before: Callable[[float], bool] | None = None) -> list[VendorResult]:
        """The connection died before its utterance ended: per channel, its locked chunks
        and the newest interim become final, once (they will not be heard again).

        With `is_before` (a vendor time -> whether it lies before the audio that will be
        sent again to the next connection), only the interim words that end before that
        audio join them; the rest is dropped, since it will be transcribed again.
        """
        results: list[VendorResult] = []
        for key, ch in self._channels.items():
            pending = ch.pending
            texts = [c.text for c in ch.locked]
            words = tuple(w for c in ch.locked for w in c.words)
            start = ch.locked[0].start_s if ch.locked else None
            end = ch.locked_end_s if ch.locked else 0.0
            if pending is not None and pending.text:
                p_words = pending.words
                p_text = pending.text
                p_end = pending.start_s + pending.duration_s
                if is_before is not None and not is_before(p_end):
                    p_words = tuple(w for w in p_words if is_before(w.end_s))
                    p_text = " ".join(w.text for w in p_words)
                    p_end = p_words[-1].end_s if p_words else p_end
                if p_text:
                    texts.append(p_text)
                    words += p_words
                    start = pending.start_s if start is None else start
                    end = max(end, p_end)
            if start is None:
                ch.pending = None
                continue
            result = self._deliver(key, ch, _join(*texts), words, start, end, speech_final=False)
            if result is not None:
                results.append(result)
        return results


def _ends_with(words: list[str], tail: list[str]) -> bool:
    return len(tail) <= len(words) and words[len(words) - len(tail) :] == tail
