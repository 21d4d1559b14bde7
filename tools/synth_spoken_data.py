"""Spoken Q/A training data from text pairs (espeak-ng, official sharegpt format): see
``funaudiochat.training.data.synth`` (also installed as ``funaudiochat-synth``).

    python tools/synth_spoken_data.py pairs.jsonl --out data/spoken [--voices ...] [--speeds ...]
"""

import sys

from funaudiochat.training.data.synth import main

if __name__ == "__main__":
    sys.exit(main())
