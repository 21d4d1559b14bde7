"""Build the demo model end to end with the project's own stages (resumable): see
``funaudiochat.training.demo.build``.

    python tools/train_demo.py [--out runs/demo] [--stage NAME ...] [--seed 0] [--force] [--jobs N]

``--jobs 2`` runs independent stages (the vocoders beside the LLM chain) at once, each in its own process
with its log in ``<out>/logs/<stage>.log``.
"""

import sys

from funaudiochat.training.demo.build import main

if __name__ == "__main__":
    sys.exit(main())
