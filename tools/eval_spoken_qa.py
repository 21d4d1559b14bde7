"""Evaluate the demo model on held-out spoken questions (S2T, S2S heard by pocketsphinx, ASR, tools, text
knowledge, timing): see ``funaudiochat.chat.demo_eval``.

    python tools/eval_spoken_qa.py --model runs/demo/package --run runs/demo \\
        [--limit N] [--out eval.json] [--card]
"""

import sys

from funaudiochat.chat.demo_eval import main

if __name__ == "__main__":
    sys.exit(main())
