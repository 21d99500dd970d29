#!/usr/bin/env bash
# Regenerates examples/speech.wav: synthetic speech (espeak-ng), 16 kHz mono 16-bit.
# The project's own audio, not corpus audio. Needs: apt install espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")"
espeak-ng -v en-us -s 150 -w /tmp/edgeser-speech.wav \
  "I can't believe you did that again! This is the third time this week. Please, just listen to me."
sox /tmp/edgeser-speech.wav -r 16000 -c 1 -b 16 speech.wav
rm /tmp/edgeser-speech.wav
