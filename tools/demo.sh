#!/usr/bin/env bash
# The main job: set up what is missing, then answer the bundled spoken question with text and speech
# (examples/question.wav -> the text on stdout, the speech in answer.wav, the timing on stderr).
# Extra arguments go to `funaudiochat chat` (e.g. --model FOLDER, --stream, --mode s2t).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup.sh"
exec "$ROOT/.venv/bin/funaudiochat" chat "$ROOT/examples/question.wav" --out answer.wav "$@"
