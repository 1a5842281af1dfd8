#!/bin/sh
# Regenerates the speech clips in this folder with the Festival TTS
# (Debian: apt-get install festival festvox-kallpc16k). Tests and the demo
# only read the committed WAV files, so they never need Festival.
#
# Every clip is 16 kHz, mono, signed 16-bit PCM WAV. Sentences (the words
# pocketsphinx 5.1.1 returns for each are listed in stt_server/README.md and
# asserted in stt_server/tests/test_recognition.py):
#
#   hello_world.wav    "hello world, the weather is nice today"
#   numbers.wav        "one two three four five six seven eight nine ten"
#   two_sentences.wav  "please open the door." <1.5 s of digital silence>
#                      "thank you very much."
#   demo.wav           "good morning, how are you doing today."
#                      <1.2 s of digital silence>
#                      "i would like to book a flight from boston to new york."
#
# two_sentences.wav exists for speech_final (endpointing) tests; demo.wav is
# the project's bundled demo sample.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python=${PYTHON:-python3}

say() { # say OUT.wav "text"
    printf '%s\n' "$2" | text2wave -F 16000 -otype riff -o "$1"
}

say "$tmp/hello.wav" "hello world, the weather is nice today"
say "$tmp/numbers.wav" "one two three four five six seven eight nine ten"
say "$tmp/door.wav" "please open the door."
say "$tmp/thanks.wav" "thank you very much."
say "$tmp/morning.wav" "good morning, how are you doing today."
say "$tmp/flight.wav" "i would like to book a flight from boston to new york."

# join IN1 SILENCE_S IN2 ... OUT: concatenate WAVs with digital silence between.
"$python" - "$tmp" "$here" <<'EOF'
import sys
import wave

tmp, here = sys.argv[1], sys.argv[2]
RATE = 16000


def read(name: str) -> bytes:
    with wave.open(f"{tmp}/{name}", "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return w.readframes(w.getnframes())


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(RATE * seconds)


def write(name: str, pcm: bytes) -> None:
    with wave.open(f"{here}/{name}", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


write("hello_world.wav", read("hello.wav"))
write("numbers.wav", read("numbers.wav"))
write("two_sentences.wav", read("door.wav") + silence(1.5) + read("thanks.wav"))
write("demo.wav", read("morning.wav") + silence(1.2) + read("flight.wav"))
EOF
ls -l "$here"/*.wav
