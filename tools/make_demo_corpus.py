"""The demo speech assistant's question -> answer text corpus: see ``funaudiochat.training.demo.corpus``.

python tools/make_demo_corpus.py --out data/demo_corpus [--seed 0]
"""

import sys

from funaudiochat.training.demo.corpus import main

if __name__ == "__main__":
    sys.exit(main())
