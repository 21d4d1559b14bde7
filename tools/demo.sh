#!/usr/bin/env bash
# The main job: set up what is missing, then run the demo on the bundled spoken question.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup.sh"
exec "$ROOT/.venv/bin/funaudiochat" tokenize "$ROOT/examples/question.wav" "$@"
