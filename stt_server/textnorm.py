"""Text as spoken words, for comparing recognisers that format differently.

Whisper (like xAI) writes "Hello world, the weather is nice today." and
"1, 2, 3."; pocketsphinx writes "hello world the weather is nice today" and
"one two three". Tests and benchmarks compare `spoken_words` of both.
"""

from __future__ import annotations

import re

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(value: int) -> list[str]:
    """0..9999 as English words ("1998" -> one thousand nine hundred ninety eight)."""
    if value < 20:
        return [_ONES[value]]
    if value < 100:
        tens, ones = divmod(value, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    thousands, rest = divmod(value, 1000)
    return number_words(thousands) + ["thousand"] + (number_words(rest) if rest else [])


def spoken_words(text: str) -> list[str]:
    """Lower-case words without punctuation; whole numbers below 10000 spelled out."""
    words: list[str] = []
    for token in re.findall(r"[a-z0-9']+", text.lower().replace(",000", "000")):
        token = token.strip("'")
        if not token:
            continue
        if token.isdigit() and len(token) <= 4:
            words += number_words(int(token))
        else:
            words.append(token)
    return words


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate (jiwer) on spoken words."""
    import jiwer

    ref = " ".join(spoken_words(reference))
    hyp = " ".join(spoken_words(hypothesis))
    if not ref:
        return float(bool(hyp))
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0
