#!/usr/bin/env bash
# Regenerates the example audio: synthetic speech (espeak-ng), 16 kHz mono 16-bit. The
# project's own audio, not corpus audio. Two files, so that the distillation quick start
# (configs/example.toml) has a file to hold out. Needs: apt install espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")"

say() {
    # say FILE VOICE WORDS_PER_MINUTE TEXT
    espeak-ng -v "$2" -s "$3" -w /tmp/edgeser-speech.wav "$4"
    sox /tmp/edgeser-speech.wav -r 16000 -c 1 -b 16 "$1"
    rm /tmp/edgeser-speech.wav
}

say speech.wav en-us 150 \
  "I can't believe you did that again! This is the third time this week. Please, just listen to me."
say speech2.wav en-gb 130 \
  "Thank you, that sounds lovely. Let's sit down for a while and talk about it quietly."
