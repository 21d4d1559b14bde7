#!/usr/bin/env bash
# The main job: set up what is missing, then ask the shipped demo model the bundled spoken questions
# (examples/questions/*.wav, voices it never heard in training): each answer's text on stdout with its
# timing, the first answer's speech in answer.wav, every answer's in answers/<question>.wav.
# Extra arguments go to every `funaudiochat chat` call (e.g. --model FOLDER, --stream, --mode s2t).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup.sh"
mkdir -p answers
first=""
for question in "$ROOT"/examples/questions/*.wav; do
  name=$(basename "$question" .wav)
  echo "Q ($name): $("$ROOT/.venv/bin/python" -c 'import json, sys
for line in open(sys.argv[1]):
    item = json.loads(line)
    if item["audio"] == sys.argv[2]:
        print(item["question"])' "$ROOT/examples/questions/questions.jsonl" "$name.wav")"
  printf "A: "
  "$ROOT/.venv/bin/funaudiochat" chat "$question" --out "answers/$name.wav" "$@"
  first=${first:-answers/$name.wav}
done
cp "$first" answer.wav
echo "wrote answer.wav (the first answer) and answers/*.wav"
